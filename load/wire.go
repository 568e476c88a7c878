package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// The WebSocket framing of a load session, written against gobwas/ws's
// low-level header functions: one read buffer per connection, frames
// assembled in the writer's own buffer, no allocation per frame on the
// paths that run at rate (heartbeats, sends, echoes, deliveries).

// headroom is the space a frameBuf keeps in front of the payload for the
// frame header (2..14 bytes for a masked client frame).
const headroom = 14

// maxMessage bounds what a session accepts from the server; the server's own
// frames are far smaller (an auth answer with a long friends list is the
// largest).
const maxMessage = 4 << 20

// frameBuf builds one outgoing frame: the payload is appended after
// headroom bytes, and finish writes the header in front of it and masks it
// in place. Each writing goroutine owns its frameBuf.
type frameBuf struct{ b []byte }

func newFrameBuf(size int) *frameBuf { return &frameBuf{b: make([]byte, headroom, headroom+size)} }

// reset starts a new payload.
func (f *frameBuf) reset() { f.b = f.b[:headroom] }

// finish turns the payload into a masked client frame of op and returns its
// bytes (header and payload), ready for one Write.
func (f *frameBuf) finish(op ws.OpCode) []byte {
	p := f.b[headroom:]
	n := len(p)
	var hs int
	switch {
	case n < 126:
		hs = 2 + 4
	case n <= 0xffff:
		hs = 4 + 4
	default:
		hs = 10 + 4
	}
	h := f.b[headroom-hs : headroom]
	h[0] = 0x80 | byte(op) // FIN
	switch {
	case n < 126:
		h[1] = 0x80 | byte(n)
	case n <= 0xffff:
		h[1] = 0x80 | 126
		binary.BigEndian.PutUint16(h[2:4], uint16(n))
	default:
		h[1] = 0x80 | 127
		binary.BigEndian.PutUint64(h[2:10], uint64(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	copy(h[hs-4:], mask[:])
	ws.Cipher(p, mask, 0)
	return f.b[headroom-hs:]
}

// closeError is how the server ended a connection: Code is the close
// frame's code, 1005 for a close frame without one, 1006 for a connection
// that ended without a close frame (Err says how).
type closeError struct {
	Code   int
	Reason string
	Err    error
}

func (e *closeError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("connection lost (%d): %v", e.Code, e.Err)
	}
	return fmt.Sprintf("closed %d %q", e.Code, e.Reason)
}

// closeKey names a close in the by-code counts: the code, or "lost" for a
// connection that ended without a close frame.
func (e *closeError) key() string {
	if e.Code == 1006 {
		return "lost"
	}
	return strconv.Itoa(e.Code)
}

// reader reads the server's messages from one connection.
type reader struct {
	br   *bufio.Reader
	hdr  [ws.MaxHeaderSize]byte
	buf  []byte // the current message; reused while small
	frag []byte // fragments of a message not finished yet
	// control answers a ping (pong) and the server's close (echoing its
	// code); it is the session's write path.
	control func(op ws.OpCode, payload []byte)
}

// next returns the next text or binary message. Pings are answered;
// a close frame or a failed read ends the connection with a *closeError.
// The returned slice is valid until the next call.
func (r *reader) next() (ws.OpCode, []byte, error) {
	var op ws.OpCode
	r.frag = r.frag[:0]
	for {
		h, err := ws.ReadHeaderBuffer(r.br, r.hdr[:])
		if err != nil {
			return 0, nil, &closeError{Code: 1006, Err: err}
		}
		if h.Length > maxMessage {
			return 0, nil, &closeError{Code: 1006, Err: fmt.Errorf("server frame of %d bytes", h.Length)}
		}
		n := int(h.Length)
		if cap(r.buf) < n {
			r.buf = make([]byte, n, max(n, 256))
		}
		p := r.buf[:n]
		if _, err := io.ReadFull(r.br, p); err != nil {
			return 0, nil, &closeError{Code: 1006, Err: err}
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpPing:
			r.control(ws.OpPong, p)
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			c := int(code)
			if len(p) < 2 {
				c = 1005
			}
			r.control(ws.OpClose, p)
			return 0, nil, &closeError{Code: c, Reason: reason}
		case ws.OpContinuation:
			r.frag = append(r.frag, p...)
		default:
			op = h.OpCode
			if h.Fin {
				return op, r.shrink(p), nil
			}
			r.frag = append(r.frag[:0], p...)
		}
		if h.Fin {
			if len(r.frag) > maxMessage {
				return 0, nil, &closeError{Code: 1006, Err: errors.New("server message too large")}
			}
			return op, r.frag, nil
		}
	}
}

// shrink returns p, and lets go of a large buffer once p is used, so an idle
// session keeps only a small one.
func (r *reader) shrink(p []byte) []byte {
	if cap(r.buf) > 4096 {
		r.buf = nil
	}
	return p
}

// dialer opens the TCP connection of one session from a given loopback
// source address, so that the sessions of a run spread over several
// addresses and are not bounded by one address's ephemeral ports.
func dialer(source string, timeout time.Duration) ws.Dialer {
	nd := &net.Dialer{Timeout: timeout, Control: bindNoPort}
	if source != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(source)}
	}
	return ws.Dialer{
		Timeout:         timeout,
		ReadBufferSize:  1024,
		WriteBufferSize: 1024,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nd.DialContext(ctx, network, addr)
		},
	}
}

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT: with a source
// address bound, the port is chosen at connect time by the full 4-tuple
// (so ports in TIME_WAIT can be reused under tcp_tw_reuse) instead of at
// bind time.
const ipBindAddressNoPort = 24

func bindNoPort(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		// A kernel without the option still works, with bind-time ports.
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
}

// The server writes every frame as {"type":"…","payload":…[,"nonce":"…"]}
// (protocol.AppendFrame), so the fields a load session needs are found by
// position without decoding the JSON; frameType falls back to decoding for
// anything else.

var (
	typePrefix    = []byte(`{"type":"`)
	noncePrefix   = []byte(`,"nonce":"`)
	contentPrefix = []byte(`"content":"`)
	codePrefix    = []byte(`"code":`)
	reasonPrefix  = []byte(`"reason":"`)
	selfIDPrefix  = []byte(`"self_user":{"id":"`)
	chatSendKind  = []byte(`{"type":"chat","payload":{"type":"send"`)
	chatLoadKind  = []byte(`{"type":"chat","payload":{"type":"load"`)
	idPrefix      = []byte(`,"id":"`)
	authorPrefix  = []byte(`,"user_id":"`)
	countPrefix   = []byte(`"count":`)
)

// chatIDs reads a chat frame's message id and author (user_id), which the
// server writes first in the payload (protocol.AppendChat).
func chatIDs(b []byte) (id, author int64, ok bool) {
	v, ok := stringAfter(b, 0, idPrefix)
	if !ok {
		return 0, 0, false
	}
	x, n := parseDigits(v)
	if n == 0 || n != len(v) {
		return 0, 0, false
	}
	a, ok := stringAfter(b, 0, authorPrefix)
	if !ok {
		return 0, 0, false
	}
	y, m := parseDigits(a)
	if m == 0 || m != len(a) {
		return 0, 0, false
	}
	return int64(x), int64(y), true
}

// loadCount reads the count of a history load's end marker.
func loadCount(b []byte) (int, bool) {
	i := bytes.Index(b, countPrefix)
	if i < 0 {
		return 0, false
	}
	v, n := parseDigits(b[i+len(countPrefix):])
	return int(v), n > 0
}

// frameType is the frame's "type".
func frameType(b []byte) string {
	if bytes.HasPrefix(b, typePrefix) {
		if v, ok := stringAfter(b, 0, typePrefix); ok {
			return internType(v)
		}
	}
	var f struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(b, &f) != nil {
		return ""
	}
	return f.Type
}

// internType returns the frame types a session handles without allocating.
func internType(v []byte) string {
	switch string(v) {
	case "heartbeat":
		return "heartbeat"
	case "chat":
		return "chat"
	case "error":
		return "error"
	case "auth":
		return "auth"
	case "ok":
		return "ok"
	case "mutual_users":
		return "mutual_users"
	}
	return string(v)
}

// stringAfter returns the JSON string value that follows the first key
// (which ends with its opening quote) at or after from. The values a load
// session reads back hold no escapes.
func stringAfter(b []byte, from int, key []byte) ([]byte, bool) {
	i := bytes.Index(b[from:], key)
	if i < 0 {
		return nil, false
	}
	start := from + i + len(key)
	end := bytes.IndexByte(b[start:], '"')
	if end < 0 {
		return nil, false
	}
	return b[start : start+end], true
}

// frameNonce is the top-level nonce, which the server writes last.
func frameNonce(b []byte) ([]byte, bool) {
	i := bytes.LastIndex(b, noncePrefix)
	if i < 0 {
		return nil, false
	}
	v, ok := stringAfter(b, i, noncePrefix)
	if !ok || len(b) != i+len(noncePrefix)+len(v)+2 {
		return nil, false
	}
	return v, true
}

// errorCode reads an error frame's code and reason.
func errorCode(b []byte) (int, string) {
	i := bytes.Index(b, codePrefix)
	if i < 0 {
		return 0, ""
	}
	j := i + len(codePrefix)
	code, n := parseDigits(b[j:])
	reason, _ := stringAfter(b, j+n, reasonPrefix)
	return int(code), string(reason)
}

// selfID reads self_user.id from an auth answer (v1 and v2 alike: the
// self_user object is plain JSON in both).
func selfID(b []byte) (int64, bool) {
	v, ok := stringAfter(b, 0, selfIDPrefix)
	if !ok {
		return 0, false
	}
	id, n := parseDigits(v)
	return int64(id), n > 0 && n == len(v)
}

// stamp is what a dm send carries in its nonce and content: a per-author
// sequence number and the send time in nanoseconds since the worker's epoch
// ("<seq>.<nanos>").
func appendStamp(dst []byte, seq uint64, nanos int64) []byte {
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, '.')
	return strconv.AppendInt(dst, nanos, 10)
}

// Stamp kinds. A plain stamp is a dm message; a letter in front marks a
// message counted apart from the dm's figures.
const (
	kindDM    byte = 0
	kindWarm  byte = 'w' // --warm-rooms: the unmeasured message per pair before the run
	kindFirst byte = 'f' // storm --pairs: the message per pair once all are back
)

// crossMark, in front of a stamp's kind, says the message was sent while
// its two sides were connected to different nodes.
const crossMark byte = 'c'

// historyMark starts the nonce of a catch-up's history load.
const historyMark byte = 'h'

// finalMark starts the nonce of a final check's history load.
const finalMark byte = 'e'

// appendKindStamp is appendStamp with the cross mark and kind's letter in
// front.
func appendKindStamp(dst []byte, kind byte, cross bool, seq uint64, nanos int64) []byte {
	if cross {
		dst = append(dst, crossMark)
	}
	if kind != kindDM {
		dst = append(dst, kind)
	}
	return appendStamp(dst, seq, nanos)
}

// parseKindStamp reads a stamp of any kind.
func parseKindStamp(b []byte) (kind byte, cross bool, seq uint64, nanos int64, ok bool) {
	if len(b) > 0 && b[0] == crossMark {
		cross, b = true, b[1:]
	}
	if len(b) > 0 && (b[0] == kindWarm || b[0] == kindFirst) {
		kind, b = b[0], b[1:]
	}
	seq, nanos, ok = parseStamp(b)
	return kind, cross, seq, nanos, ok
}

// parseStamp reads a stamp at the start of b (content may be padded after
// it with non-digits).
func parseStamp(b []byte) (seq uint64, nanos int64, ok bool) {
	seq, n := parseDigits(b)
	if n == 0 || n >= len(b) || b[n] != '.' {
		return 0, 0, false
	}
	v, m := parseDigits(b[n+1:])
	if m == 0 {
		return 0, 0, false
	}
	return seq, int64(v), true
}

// parseDigits reads the decimal number at the start of b and how many
// bytes it took (at most 19 digits).
func parseDigits(b []byte) (uint64, int) {
	var v uint64
	i := 0
	for ; i < len(b) && i < 19 && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + uint64(b[i]-'0')
	}
	return v, i
}
