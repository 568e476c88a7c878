package protocol

import (
	"bytes"
	"encoding/json"
)

// The request path reads a few top-level fields of small JSON objects.
// encoding/json does it through reflection and recursion, which on
// short-lived actor goroutines also costs stack growth; these scanners read
// the fields in one flat pass over input that json.Valid has accepted
// (json.Valid is iterative and allocation-free).

// eachField calls f with every top-level member of the object data, raw
// value bytes as they stand. It reports false when data is not an object,
// or when a key holds an escape (the caller then decodes with
// encoding/json, which unescapes keys). data must be valid JSON.
func eachField(data []byte, f func(key, value []byte)) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return true
	}
	for i < len(data) {
		end := stringEnd(data, i) // data[i] is '"': valid JSON
		key := data[i+1 : end-1]
		for _, c := range key {
			if c == '\\' {
				return false
			}
		}
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // past ':'
		start := i
		i = valueEnd(data, i)
		f(key, data[start:i])
		i = skipSpace(data, i)
		if i >= len(data) || data[i] == '}' {
			return true
		}
		i = skipSpace(data, i+1) // past ','
	}
	return true
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string that starts at i.
func stringEnd(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// valueEnd returns the index just past the value that starts at i,
// counting nesting instead of recursing.
func valueEnd(data []byte, i int) int {
	depth := 0
	for i < len(data) {
		switch c := data[i]; c {
		case '"':
			i = stringEnd(data, i)
			if depth == 0 {
				return i
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
			if depth < 0 {
				return i
			}
		case ',':
			if depth == 0 {
				return i
			}
		case ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return i
}

// String decodes a raw JSON value that should be a string; ok is false for
// any other value. Strings without escapes take no detour.
func String(raw []byte) (s string, ok bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	for _, c := range raw[1 : len(raw)-1] {
		if c == '\\' {
			return s, json.Unmarshal(raw, &s) == nil
		}
	}
	return string(raw[1 : len(raw)-1]), true
}

// PayloadFields reads the top-level members of the request's payload
// object named by keys into the matching raw values (nil when absent; the
// last wins when a key repeats, as in encoding/json). A payload that is not
// an object leaves every value nil. The payload is part of a frame that
// DecodeRequest validated, so it is not validated again.
func (r Request) PayloadFields(keys []string, values [][]byte) {
	for i := range values {
		values[i] = nil
	}
	if len(r.Payload) > 0 {
		fields(r.Payload, keys, values)
	}
}

// fields reads the members of data named by keys into values; data must
// be valid JSON (json.Valid accepted it).
func fields(data []byte, keys []string, values [][]byte) {
	set := func(key, value []byte) {
		for i, k := range keys {
			if string(key) == k {
				values[i] = value
			}
		}
	}
	if eachField(data, set) {
		return
	}
	// A key with an escape: let encoding/json unescape the keys.
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) == nil {
		for k, v := range m {
			set([]byte(k), v)
		}
	}
}

// nulEscape is the JSON escape of U+0000.
var nulEscape = []byte(`\u0000`)

// hasNULEscape reports whether the valid JSON text data holds the escape
// \u0000 anywhere, keys included. A backslash only occurs inside strings,
// where it starts an escape unless an escaping backslash precedes it: the
// match is an escape when the run of backslashes ending at it is odd
// (`\\u0000` is a backslash and the text "u0000"). Text without a
// backslash, the common case, is one IndexByte.
func hasNULEscape(data []byte) bool {
	if bytes.IndexByte(data, '\\') < 0 {
		return false
	}
	for i := 0; ; {
		j := bytes.Index(data[i:], nulEscape)
		if j < 0 {
			return false
		}
		j += i
		run := 1
		for k := j - 1; k >= 0 && data[k] == '\\'; k-- {
			run++
		}
		if run%2 == 1 {
			return true
		}
		i = j + len(nulEscape)
	}
}
