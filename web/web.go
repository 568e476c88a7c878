// Package web serves REWIND's browser client: a single page (static/index.html)
// with its script and style sheet, embedded in the binary. There is no build
// step: the files under static/ are what the browser runs.
//
// index.html is served at "/" with Cache-Control no-cache and an ETag, so a
// browser always revalidates it; the assets are served under
// /assets/<version>/, where version is a hash of every asset, with a
// one-year immutable Cache-Control, so a new binary's assets never meet an
// old cached copy. Every answer carries the same Content-Security-Policy
// (nothing but the page's own origin, and https: images for profile
// pictures) and X-Content-Type-Options: nosniff.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"
)

//go:embed static
var files embed.FS

// AssetsPrefix is the path under which the assets are served.
const AssetsPrefix = "/assets/"

// ContentSecurityPolicy allows scripts, styles, connections (the API and
// /ws: 'self' covers ws: and wss: of the same host) and forms of the
// page's own origin only, and images from it or any https: URL (profile
// pictures are URLs a person chose; http: ones are not shown).
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' https:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// versionMark in index.html is replaced by the assets' version.
const versionMark = "/assets/VERSION/"

type file struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves "/", /favicon.ico and AssetsPrefix.
type Handler struct {
	version string
	index   file
	assets  map[string]file // by name, e.g. "app.js"
}

// New reads the embedded files.
func New() *Handler {
	h := &Handler{assets: map[string]file{}}
	var names []string
	err := fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "static/index.html" {
			return err
		}
		names = append(names, strings.TrimPrefix(p, "static/"))
		return nil
	})
	if err != nil {
		panic(err)
	}
	sort.Strings(names)
	all := sha256.New()
	for _, n := range names {
		b, err := files.ReadFile("static/" + n)
		if err != nil {
			panic(err)
		}
		all.Write([]byte(n))
		all.Write([]byte{0})
		all.Write(b)
		h.assets[n] = newFile(n, b)
	}
	h.version = hex.EncodeToString(all.Sum(nil))[:16]
	index, err := files.ReadFile("static/index.html")
	if err != nil {
		panic(err)
	}
	index = bytes.ReplaceAll(index, []byte(versionMark), []byte(AssetsPrefix+h.version+"/"))
	h.index = newFile("index.html", index)
	return h
}

func newFile(name string, b []byte) file {
	ctype := mime.TypeByExtension(path.Ext(name))
	switch path.Ext(name) { // not left to the system's mime table
	case ".js":
		ctype = "text/javascript; charset=utf-8"
	case ".css":
		ctype = "text/css; charset=utf-8"
	case ".html":
		ctype = "text/html; charset=utf-8"
	case ".svg":
		ctype = "image/svg+xml"
	}
	sum := sha256.Sum256(b)
	return file{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:])[:20] + `"`}
}

// Version is the assets' version, the path element after AssetsPrefix.
func (h *Handler) Version() string { return h.version }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/" {
		hd.Set("Cache-Control", "no-cache")
		h.serve(w, r, h.index)
		return
	}
	if r.URL.Path == "/favicon.ico" { // asked for by pages without an icon link (the verification page)
		hd.Set("Cache-Control", "public, max-age=86400")
		h.serve(w, r, h.assets["icon.svg"])
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, AssetsPrefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	version, name, _ := strings.Cut(rest, "/")
	f, found := h.assets[name]
	if !found || version != h.version {
		// Another version's asset is not this one: never cache it.
		hd.Set("Cache-Control", "no-store")
		http.NotFound(w, r)
		return
	}
	hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.serve(w, r, f)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, f file) {
	w.Header().Set("Content-Type", f.ctype)
	w.Header().Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
