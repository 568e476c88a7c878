package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// statusWriter remembers the status code for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the writer beneath.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ServeHTTP routes r and writes one log line and the metrics for it.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.ContentLength != 0 { // a body is announced (-1: chunked)
		// Before it answers, net/http reads what the handler left of the
		// body (up to 256 KiB, to reuse the connection), however slowly
		// it comes. A handler that takes no body must answer at once:
		// with the deadline passed, that read ends at once and the
		// connection is closed after the answer instead. The handlers
		// that read a body move the deadline first (fields).
		_ = http.NewResponseController(w).SetReadDeadline(start)
	}
	id := requestID(r.Header.Get("X-Request-Id"))
	w.Header().Set("X-Request-Id", id)
	log := a.log.With().Str("request_id", id).Logger()
	r = r.WithContext(log.WithContext(r.Context()))
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			log.Error().Interface("panic", p).Msg("handler panicked")
			if sw.status == 0 {
				writeError(sw, http.StatusInternalServerError, msgUnexpected)
			}
		}
		route := routeOf(r)
		elapsed := time.Since(start)
		a.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Inc()
		a.metrics.duration.WithLabelValues(route).Observe(elapsed.Seconds())
		ev := log.Info().Str("method", r.Method).Str("path", route).Int("status", sw.status).
			Int("bytes", sw.bytes).Dur("duration_ms", elapsed).Str("remote", r.RemoteAddr)
		if len(a.cfg.TrustedProxies) > 0 {
			ev = ev.Str("client", a.cfg.TrustedProxies.Key(r))
		}
		ev.Msg("http request")
	}()
	a.mux.ServeHTTP(sw, r)
}

// routeOf is the route pattern that served r, without its method: what the
// log and the metrics name a request by. Never the path itself, which may
// hold a verification key (also when it is malformed and matches no
// route); "other" for a request that no route took.
func routeOf(r *http.Request) string {
	pattern := r.Pattern
	if _, p, ok := strings.Cut(pattern, " "); ok {
		pattern = p
	}
	if pattern == "" || pattern == "/" {
		return "other"
	}
	return pattern
}

// requestID keeps a caller's id when it is short and plain, else makes one.
func requestID(in string) string {
	if in != "" && len(in) <= 64 && strings.IndexFunc(in, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return in
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
