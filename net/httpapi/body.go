package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/rewind-chat/rewind/auth"
)

var (
	errBodyTooLarge = errors.New("httpapi: body too large")
	errBodyTimeout  = errors.New("httpapi: body did not arrive in time")
	errBadBody      = errors.New("httpapi: body could not be read")
)

// fieldError is a field the API refuses before any rule reads it: text
// that is not valid UTF-8 or holds U+0000 (no store keeps either).
type fieldError struct{ field string }

func (e *fieldError) Error() string { return auth.TextError(e.field) }

// fields reads a form-encoded or JSON object body, capped at MaxBodyBytes
// and due within Limits.BodyTimeout, and returns the named fields that it
// holds as strings. A JSON value that is not a string is left out, so it
// reads as missing; so is every field of a body of another content type.
// A named field that is not valid UTF-8 or holds U+0000 is a *fieldError;
// a JSON body with anything after its object is errBadBody.
func (a *API) fields(w http.ResponseWriter, r *http.Request, names ...string) (map[string]string, error) {
	// ServeHTTP set a deadline in the past, for handlers that take no
	// body; this one reads it, within its own deadline.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(a.cfg.Limits.BodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes))
	if err != nil {
		return nil, bodyError(err)
	}
	out := map[string]string{}
	switch ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct {
	case "application/json":
		var raw map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&raw); err != nil || raw == nil {
			return nil, errBadBody
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, errBadBody // trailing data after the object
		}
		for _, name := range names {
			v, ok := raw[name]
			if !ok || len(v) == 0 || v[0] != '"' {
				continue
			}
			// encoding/json would turn invalid UTF-8 into U+FFFD
			// silently: check the bytes as sent.
			var s string
			if !utf8.Valid(v) || json.Unmarshal(v, &s) != nil {
				return nil, &fieldError{name}
			}
			out[name] = s
		}
	case "application/x-www-form-urlencoded":
		values, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, errBadBody
		}
		for _, name := range names {
			if vs, ok := values[name]; ok {
				out[name] = vs[0]
			}
		}
	}
	for _, name := range names {
		if v, ok := out[name]; ok && !auth.ValidText(v) {
			return nil, &fieldError{name}
		}
	}
	return out, nil
}

// bodyError classifies an error reading a body.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		return errBodyTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		return errBodyTimeout
	}
	return errBadBody
}

// writeBodyError answers a body that fields refused.
func writeBodyError(w http.ResponseWriter, err error) {
	var fe *fieldError
	switch {
	case errors.Is(err, errBodyTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, msgBodyTooLarge)
	case errors.Is(err, errBodyTimeout):
		// What is left of the body would be read as the next request.
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestTimeout, msgBodyTimeout)
	case errors.As(err, &fe):
		writeError(w, http.StatusBadRequest, fe.Error())
	default:
		writeError(w, http.StatusBadRequest, msgBadBody)
	}
}
