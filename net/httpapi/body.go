package httpapi

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
)

var errBodyTooLarge = errors.New("httpapi: body too large")

// fields reads a form-encoded or JSON object body, capped at limit bytes.
// A JSON value that is not a string is kept out, so it reads as missing.
func fields(w http.ResponseWriter, r *http.Request, limit int64) (map[string]string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	out := map[string]string{}
	if ct == "application/json" {
		var raw map[string]any
		if err := json.NewDecoder(r.Body).Decode(&raw); err != nil {
			return nil, tooLarge(err)
		}
		for k, v := range raw {
			if s, ok := v.(string); ok {
				out[k] = s
			}
		}
		return out, nil
	}
	if err := r.ParseForm(); err != nil {
		return nil, tooLarge(err)
	}
	for k := range r.PostForm {
		out[k] = r.PostForm.Get(k)
	}
	return out, nil
}

func tooLarge(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errBodyTooLarge
	}
	return err
}

// writeBodyError answers a body that fields could not read.
func writeBodyError(w http.ResponseWriter, err error) {
	if errors.Is(err, errBodyTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, msgBodyTooLarge)
		return
	}
	writeError(w, http.StatusBadRequest, msgBadBody)
}
