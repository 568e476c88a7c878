package protocol

import (
	"bytes"
	"encoding/json"
)

// Request is one decoded client frame.
type Request struct {
	Type    string
	Payload json.RawMessage // nil when absent
	Nonce   string
}

// MaxNonce is the longest nonce accepted, in bytes.
const MaxNonce = 64

// DecodeRequest decodes one text frame. A frame that is not a JSON object
// is ErrNotJSON; one that holds the escape \u0000 anywhere (protocol.md
// §2.1: no stored string may hold U+0000, and keys or payloads are not
// worth telling apart), one without a string type, or with a nonce that is
// not a string of at most MaxNonce bytes, is ErrInvalid.
//
// data must be valid UTF-8: the gateway closes a connection with 1007 on a
// text message that is not, before any of it reaches a session. Raw U+0000
// cannot pass json.Valid, so with the escape check no decoded string holds
// it.
func DecodeRequest(data []byte) (Request, *Error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(data) {
		return Request{}, ErrNotJSON
	}
	if hasNULEscape(data) {
		return Request{}, ErrInvalid
	}
	var v [3][]byte
	fields(data, requestKeys, v[:])
	var r Request
	var ok bool
	if r.Type, ok = String(v[0]); !ok || r.Type == "" {
		return Request{}, ErrInvalid
	}
	if !isNull(v[2]) {
		if r.Nonce, ok = String(v[2]); !ok || len(r.Nonce) > MaxNonce {
			return Request{}, ErrInvalid
		}
	}
	if !isNull(v[1]) {
		r.Payload = v[1]
	}
	return r, nil
}

var requestKeys = []string{"type", "payload", "nonce"}

// isNull reports whether a raw value is absent or JSON null.
func isNull(raw []byte) bool { return raw == nil || string(raw) == "null" }

// ParseID reads a snowflake sent as a decimal string or a JSON number; ok
// is false for anything else, zero or negative. Only the canonical spelling
// is an id: digits, no sign, no leading zero ("+5", "05" and " 5" are
// refused), so every id has exactly one form on the wire.
func ParseID(raw json.RawMessage) (id int64, ok bool) {
	s := raw
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	if len(s) == 0 || len(s) > 19 || s[0] < '1' || s[0] > '9' {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		if id > (1<<63-1-int64(c-'0'))/10 {
			return 0, false // past int64
		}
		id = id*10 + int64(c-'0')
	}
	return id, true
}
