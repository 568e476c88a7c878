package web_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/web"
)

func get(t *testing.T, h http.Handler, method, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestIndexAndAssetsHeaders(t *testing.T) {
	h := web.New()
	w := get(t, h, http.MethodGet, "/")
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "text/html; charset=utf-8", w.Header().Get("Content-Type"))
	require.Equal(t, "no-cache", w.Header().Get("Cache-Control"))
	require.Equal(t, web.ContentSecurityPolicy, w.Header().Get("Content-Security-Policy"))
	require.Equal(t, "nosniff", w.Header().Get("X-Content-Type-Options"))
	etag := w.Header().Get("ETag")
	require.NotEmpty(t, etag)
	body := w.Body.String()
	require.NotContains(t, body, "/assets/VERSION/", "the version is filled in")
	require.NotContains(t, body, "<script>", "no inline script (the CSP would refuse it)")
	require.NotContains(t, body, "style=", "no inline style (the CSP would refuse it)")

	// Revalidation.
	w = get(t, h, http.MethodGet, "/", "If-None-Match", etag)
	require.Equal(t, http.StatusNotModified, w.Code)

	// Every asset the page names is served, versioned and immutable.
	refs := regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`).FindAllStringSubmatch(body, -1)
	require.Len(t, refs, 3, "icon, style sheet, script")
	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
	for _, ref := range refs {
		p := ref[1]
		require.True(t, strings.HasPrefix(p, web.AssetsPrefix+h.Version()+"/"), p)
		w := get(t, h, http.MethodGet, p)
		require.Equal(t, http.StatusOK, w.Code, p)
		require.Equal(t, "public, max-age=31536000, immutable", w.Header().Get("Cache-Control"), p)
		require.Equal(t, types[p[strings.LastIndex(p, "."):]], w.Header().Get("Content-Type"), p)
		require.Equal(t, web.ContentSecurityPolicy, w.Header().Get("Content-Security-Policy"))
		require.Equal(t, "nosniff", w.Header().Get("X-Content-Type-Options"))
		require.NotEmpty(t, w.Body.Bytes())
	}

	// Another version, an unknown file, another method.
	for _, p := range []string{"/assets/0123456789abcdef/app.js", web.AssetsPrefix + h.Version() + "/nope.js", "/assets/", "/elsewhere"} {
		w := get(t, h, http.MethodGet, p)
		require.Equal(t, http.StatusNotFound, w.Code, p)
		require.NotContains(t, w.Header().Get("Cache-Control"), "immutable", p)
	}
	require.Equal(t, http.StatusMethodNotAllowed, get(t, h, http.MethodPost, "/").Code)
	require.Equal(t, http.StatusOK, get(t, h, http.MethodHead, "/").Code)
}

// The client never hands text to the HTML parser: no innerHTML,
// outerHTML, insertAdjacentHTML or document.write anywhere in it.
func TestClientUsesNoHTMLSinks(t *testing.T) {
	h := web.New()
	js := get(t, h, http.MethodGet, web.AssetsPrefix+h.Version()+"/app.js").Body.String()
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		require.NotContains(t, js, sink)
	}
}
