package load

import (
	"bytes"
	"strconv"
)

// Centrifugo's bidirectional JSON protocol (client protocol v2, Centrifugo
// v4 and later; centrifugal/protocol's client.proto is its schema), for
// --target centrifugo: the same dm load against a Centrifugo node, side by
// side with REWIND.
//
// A client writes Commands, {"id":N,"connect":{}}, {"id":N,"subscribe":
// {"channel":…}}, {"id":N,"publish":{"channel":…,"data":…}}; the server
// answers each with a Reply carrying the same id and a field named after the
// command (or "error"), and sends Replies without an id that hold a push:
// {"push":{"channel":…,"pub":{"data":…}}}. Either side may batch several
// messages into one frame, one JSON object a line. bytes fields such as
// data travel as embedded JSON. An empty {} from the server is a ping,
// answered with an empty {} (an unasked one gets the client disconnected).

// Kinds of a message from a Centrifugo server.
const (
	centOther byte = iota
	centPing       // {}: answer with {}
	centReply      // a reply to a command: id set, maybe an error
	centPush       // an asynchronous push
)

// centMsg is one decoded line of a Centrifugo server frame. content is
// the harness's own "content" field of a publication's data, which aliases
// the frame.
type centMsg struct {
	kind    byte
	id      uint32
	errCode int // a reply's error code, 0 when it has none
	errMsg  string
	pub     bool   // the push is a publication
	content []byte // the publication's data.content, when it has one
}

// centPong answers a ping.
var centPong = []byte(`{}`)

func appendCentConnect(dst []byte, id uint32) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	return append(dst, `,"connect":{}}`...)
}

func appendCentSubscribe(dst []byte, id uint32, channel []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	dst = append(dst, `,"subscribe":{"channel":"`...)
	dst = append(dst, channel...)
	return append(dst, `"}}`...)
}

// appendCentPublishHead starts a publish whose data is the REWIND chat send
// payload, up to the opening quote of its content; centPublishTail ends it.
func appendCentPublishHead(dst []byte, id uint32, channel, chatID []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	dst = append(dst, `,"publish":{"channel":"`...)
	dst = append(dst, channel...)
	dst = append(dst, `","data":{"type":"send","chat_id":"`...)
	dst = append(dst, chatID...)
	return append(dst, `","content":"`...)
}

const centPublishTail = `"}}}`

// centChannel is the personal channel of session i: u<i>.
func centChannel(dst []byte, i int) []byte {
	dst = append(dst, 'u')
	return strconv.AppendInt(dst, int64(i), 10)
}

// eachLine calls f with every non-empty line of a frame.
func eachLine(p []byte, f func(line []byte)) {
	for len(p) > 0 {
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			f(line)
		}
	}
}

// parseCent decodes one line by position, without a JSON decoder: the
// fields read are top-level ones the server writes first (id, error, push)
// and the harness's own content string, which holds no escapes. Spaces
// between tokens are allowed, as in the protocol's documentation.
func parseCent(line []byte) centMsg {
	var m centMsg
	b := skipSpace(line)
	if len(b) == 0 || b[0] != '{' {
		return m
	}
	b = skipSpace(b[1:])
	if len(b) > 0 && b[0] == '}' {
		m.kind = centPing
		return m
	}
	key, rest, ok := jsonKey(b)
	if !ok {
		return m
	}
	switch string(key) {
	case "id":
		id, n := parseDigits(rest)
		if n == 0 || id > 1<<32-1 {
			return m
		}
		m.kind, m.id = centReply, uint32(id)
		rest = skipSpace(rest[n:])
		if len(rest) > 0 && rest[0] == ',' {
			if k, v, ok := jsonKey(skipSpace(rest[1:])); ok && string(k) == "error" {
				m.errCode, m.errMsg = centError(v)
			}
		}
	case "error":
		m.kind = centReply // an error to a command the server could not read
		m.errCode, m.errMsg = centError(rest)
	case "push":
		m.kind = centPush
		if i := bytes.Index(rest, centPubKey); i >= 0 {
			m.pub = true
			if v, ok := stringValue(rest[i:], centContentKey); ok {
				m.content = v
			}
		}
	}
	return m
}

// centError reads {"code":N,"message":"…"}.
func centError(b []byte) (int, string) {
	code := 0
	if i := bytes.Index(b, centCodeKey); i >= 0 {
		if v := afterColon(b[i+len(centCodeKey):]); v != nil {
			c, _ := parseDigits(v)
			code = int(c)
		}
	}
	msg, _ := stringValue(b, centMessageKey)
	if code == 0 {
		code = -1 // an error without a code is still an error
	}
	return code, string(msg)
}

// jsonKey reads "key": at the start of b and returns the key and what
// follows the colon.
func jsonKey(b []byte) (key, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != '"' {
		return nil, nil, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 {
		return nil, nil, false
	}
	key = b[1 : 1+end]
	rest = afterColon(b[2+end:])
	return key, rest, rest != nil
}

// afterColon skips spaces, a colon and spaces; nil when there is no colon.
func afterColon(b []byte) []byte {
	b = skipSpace(b)
	if len(b) == 0 || b[0] != ':' {
		return nil
	}
	return skipSpace(b[1:])
}

var (
	centContentKey = []byte(`"content"`)
	centMessageKey = []byte(`"message"`)
	centCodeKey    = []byte(`"code"`)
	centPubKey     = []byte(`"pub"`)
)

// stringValue returns the string value of the first key q (quotes
// included) in b that has one.
func stringValue(b, q []byte) ([]byte, bool) {
	for from := 0; ; {
		i := bytes.Index(b[from:], q)
		if i < 0 {
			return nil, false
		}
		v := afterColon(b[from+i+len(q):])
		if len(v) > 0 && v[0] == '"' {
			end := bytes.IndexByte(v[1:], '"')
			if end < 0 {
				return nil, false
			}
			return v[1 : 1+end], true
		}
		from += i + len(q)
	}
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}
