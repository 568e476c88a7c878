package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/setting"
)

// readFail expects the server to fail the connection with code and reason,
// having answered nothing before (no pong, no text), and the peer to be
// told cause; it returns what the peer was told.
func (c *client) readFail(p *testPeer, code ws.StatusCode, reason string, cause Cause) *Disconnect {
	c.t.Helper()
	c.readClose(code, reason)
	c.nc.Close() // the server drains until the client hangs up
	d := p.reason(c.t)
	require.Equal(c.t, cause, d.Cause)
	require.Equal(c.t, uint16(code), d.Code)
	return d
}

// TestInvalidUTF8Closes1007: a text message that is not valid UTF-8, also
// inside what would be a JSON string, fails the connection with 1007
// "Invalid UTF-8." (RFC 6455 §8.1, protocol.md §2.1), and fails it as soon
// as the bytes that make it invalid arrive: where a case's message is not
// complete (the fragment or the bytes after the invalid ones), the rest is
// never sent, and the close comes anyway.
func TestInvalidUTF8Closes1007(t *testing.T) {
	const reason = "Invalid UTF-8."
	for _, tc := range []struct {
		name  string
		parts [][]byte // raw writes
	}{
		{name: "inside a JSON string", parts: [][]byte{masked(ws.NewTextFrame([]byte(`{"type":"heartbeat","payload":"` + "\xff" + `"}`)))}},
		{name: "a surrogate", parts: [][]byte{masked(ws.NewTextFrame([]byte("a\xed\xa0\x80b")))}},
		{name: "ends inside a rune", parts: [][]byte{masked(ws.NewTextFrame([]byte("a\xe2\x82")))}},
		{name: "invalid fragment", parts: [][]byte{
			masked(ws.NewFrame(ws.OpText, false, []byte("κόσμε"))),
			masked(ws.NewFrame(ws.OpContinuation, false, []byte("\xf4\x90\x80\x80"))),
		}},
		{name: "invalid byte completing a fragment's rune", parts: [][]byte{
			masked(ws.NewFrame(ws.OpText, false, []byte("κόσμε\xf4"))),
			masked(ws.NewFrame(ws.OpContinuation, false, []byte("\x90"))),
		}},
		{name: "invalid chop of one frame", parts: func() [][]byte {
			f := masked(ws.NewTextFrame([]byte("κόσμε\xf4\x90\x80\x80edited")))
			hdr := len(f) - len("κόσμε\xf4\x90\x80\x80edited")
			return [][]byte{f[:hdr+len("κόσμε")], f[hdr+len("κόσμε") : hdr+len("κόσμε")+4]}
		}()},
		{name: "the last fragment ends inside a rune", parts: [][]byte{
			masked(ws.NewFrame(ws.OpText, false, []byte("ok"))),
			masked(ws.NewFrame(ws.OpContinuation, true, []byte("\xc3"))),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{})
			c := dial(t, s.url)
			p := s.peer(t)
			for _, part := range tc.parts {
				_, err := c.nc.Write(part)
				require.NoError(t, err)
			}
			d := c.readFail(p, ws.StatusInvalidFramePayloadData, reason, CauseInvalidUTF8)
			require.ErrorIs(t, d, ErrInvalidUTF8)
			require.Zero(t, p.texts.Load(), "nothing reached the peer")
		})
	}
	t.Run("valid across fragments and chops", func(t *testing.T) {
		s := startServer(t, Config{})
		c := dial(t, s.url)
		s.peer(t)
		msg := []byte("Hello-µ@ßöäüàá-UTF-8!! 𝄞 κόσμε")
		for i := range msg { // a fragment per byte: fragments end inside runes
			op := ws.OpContinuation
			if i == 0 {
				op = ws.OpText
			}
			c.write(op, i == len(msg)-1, msg[i:i+1])
		}
		require.Equal(t, string(msg), c.readText())
		f := masked(ws.NewTextFrame(msg))
		for i := range f { // a write per byte of one frame
			_, err := c.nc.Write(f[i : i+1])
			require.NoError(t, err)
		}
		require.Equal(t, string(msg), c.readText())
	})
}

// TestCheckUTF8 checks the incremental check against utf8.Valid: fed in
// any two pieces, a text is accepted exactly when it is valid UTF-8, and
// refused no later than the piece that makes it invalid.
func TestCheckUTF8(t *testing.T) {
	texts := []string{"", "a", "κόσμε", "\U0010ffff", "\xf4\x8f\xbf\xbf", "\xef\xbf\xbd", "\xed\x9f\xbf", "\xee\x80\x80",
		"\xf4\x90\x80\x80", "\xed\xa0\x80", "\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf8\x88\x80\x80\x80", "\xfe", "\x80",
		"\xc2", "\xe0\xa0", "\xf0\x90\x80", "a\xc2\x80b", "\xf0\x90\x80\x80z", "ab\xe2\x82\xac\xe2\x82"}
	for _, s := range texts {
		b := []byte(s)
		for cut := 0; cut <= len(b); cut++ {
			v, ok := checkUTF8(b[:cut], 0)
			if ok {
				v, ok = checkUTF8(b, v)
			}
			got := ok && v == len(b)
			require.Equal(t, utf8.Valid(b), got, "%q cut at %d", s, cut)
			if _, okPrefix := checkUTF8(b[:cut], 0); !okPrefix {
				require.False(t, utf8.Valid(b), "%q refused at %d but valid", s, cut)
			}
		}
	}
}

func FuzzCheckUTF8(f *testing.F) {
	f.Add([]byte("κόσμε\xf4\x90\x80\x80"), 3)
	f.Add([]byte("a\xe2\x82\xac"), 2)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		if cut < 0 || cut > len(b) {
			return
		}
		v, ok := checkUTF8(b[:cut], 0)
		if !ok {
			if utf8.Valid(b) {
				t.Fatalf("%q refused at %d but valid", b, cut)
			}
			return
		}
		if !utf8.Valid(b[:v]) {
			t.Fatalf("%q: prefix %d accepted but invalid", b, v)
		}
		v, ok = checkUTF8(b, v)
		if got := ok && v == len(b); got != utf8.Valid(b) {
			t.Fatalf("%q cut at %d: %v, utf8.Valid %v", b, cut, got, utf8.Valid(b))
		}
	})
}

// TestLengthTopBitCloses1002: a 64-bit frame length with its most
// significant bit set is a protocol error (RFC 6455 §5.2), answered with a
// close frame 1002, never a silent drop (nor a 1009), also as a fragment of
// a message already past MaxFrame.
func TestLengthTopBitCloses1002(t *testing.T) {
	for name, first := range map[string][]byte{
		"alone":                          nil,
		"inside a message past MaxFrame": masked(ws.NewFrame(ws.OpText, false, make([]byte, 2000))),
	} {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, Config{MaxFrame: 1024})
			c := dial(t, s.url)
			p := s.peer(t)
			op := byte(0x81)
			if first != nil {
				op = 0x80 // a continuation, its last fragment
			}
			_, err := c.nc.Write(append(first, op, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4))
			require.NoError(t, err)
			f := c.read()
			require.Equal(t, ws.OpClose, f.Header.OpCode)
			code, _ := ws.ParseCloseFrameData(f.Payload)
			require.Equal(t, ws.StatusProtocolError, code)
			c.nc.Close()
			d := p.reason(t)
			require.Equal(t, CauseProtocolError, d.Cause)
			require.Equal(t, uint16(1002), d.Code)
			require.Zero(t, p.tooLarge.Load())
		})
	}
}

// TestPingAsksThePeer: every ping is put to the Peer (the session counts
// it against the rate limit) and one it refuses gets no pong.
func TestPingAsksThePeer(t *testing.T) {
	s := startServer(t, Config{})
	c := dial(t, s.url)
	p := s.peer(t)
	c.write(ws.OpPing, true, []byte("one"))
	f := c.read()
	require.Equal(t, ws.OpPong, f.Header.OpCode)
	require.Equal(t, "one", string(f.Payload))
	p.refusePings.Store(true)
	c.write(ws.OpPing, true, []byte("refused"))
	require.Eventually(t, func() bool { return p.pings.Load() == 2 }, wait, time.Millisecond)
	p.refusePings.Store(false)
	c.write(ws.OpPing, true, []byte("three"))
	f = c.read()
	require.Equal(t, ws.OpPong, f.Header.OpCode)
	require.Equal(t, "three", string(f.Payload), "no pong for the refused ping")
	require.Equal(t, int32(3), p.pings.Load())
}

// TestSendBytesBound: the outbound queue is bounded in bytes as well as in
// frames; a frame larger than the bound alone still goes into an empty
// queue.
func TestSendBytesBound(t *testing.T) {
	s := startServer(t, Config{SendQueue: 1000, SendBytes: 1 << 20})
	s.h.closeWait = 50 * time.Millisecond
	c := dial(t, s.url) // does not read until the end
	p := s.peer(t)
	// The first frame goes to the writer, which blocks in it; the next
	// ones queue until their bytes pass SendBytes.
	require.True(t, p.conn.Send(bigFrame))
	require.Eventually(t, func() bool {
		p.conn.mu.Lock()
		defer p.conn.mu.Unlock()
		return p.conn.writer == writerRunning && p.conn.queue.len() == 0
	}, wait, time.Millisecond)
	frame := make([]byte, 100<<10)
	n := 0
	for p.conn.Send(frame) {
		n++
		require.Less(t, n, 1000)
	}
	require.Equal(t, 10, n, "1 MiB of 100 KiB frames")
	p.conn.mu.Lock()
	queued := int(p.conn.queue.bytes)
	p.conn.mu.Unlock()
	require.LessOrEqual(t, queued, 1<<20)
	go func() { _, _ = io.Copy(io.Discard, c.nc) }() // let it shut down

	s2 := startServer(t, Config{SendBytes: 1 << 10})
	c2 := dial(t, s2.url)
	p2 := s2.peer(t)
	require.True(t, p2.conn.Send(make([]byte, 4<<10)), "a frame larger than SendBytes into an empty queue")
	require.Len(t, c2.read().Payload, 4<<10)
}

// upgrade dials url and returns the HTTP status of a refused upgrade, 101
// for an accepted one (its socket closed with the test).
func upgrade(t *testing.T, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	nc, _, _, err := ws.Dial(ctx, url)
	if err == nil {
		t.Cleanup(func() { nc.Close() })
		return http.StatusSwitchingProtocols
	}
	var se ws.StatusError
	require.ErrorAs(t, err, &se)
	return int(se)
}

// TestUnauthenticatedPerAddress: an address holds at most
// MaxUnauthenticatedPerIP connections that have not authenticated; the
// next upgrade is refused 429 before the handshake, and the count goes
// down when one authenticates or ends.
func TestUnauthenticatedPerAddress(t *testing.T) {
	s := startServer(t, Config{MaxUnauthenticatedPerIP: 2})
	dial(t, s.url)
	p1 := s.peer(t)
	c2 := dial(t, s.url)
	s.peer(t)
	require.Equal(t, http.StatusTooManyRequests, upgrade(t, s.url))
	p1.conn.Authenticated()
	p1.conn.Authenticated() // once only
	require.Equal(t, http.StatusSwitchingProtocols, upgrade(t, s.url))
	s.peer(t)
	require.Equal(t, http.StatusTooManyRequests, upgrade(t, s.url))
	c2.close(ws.StatusNormalClosure, "")
	c2.readClose(ws.StatusNormalClosure, "")
	c2.readEOF() // counted out before its socket closed
	require.Equal(t, http.StatusSwitchingProtocols, upgrade(t, s.url))
	require.Equal(t, 2.0, count(t, s.h.metrics.refusals.WithLabelValues("429")))
}

func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":               "192.0.2.7",
		"::ffff:192.0.2.7":        "192.0.2.7",
		"2001:db8:1:2:3:4:5:6":    "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1%e0": "2001:db8:1:2::/64",
		"not an address":          "not an address",
	} {
		require.Equal(t, want, addrKey(in), in)
	}
}

// TestMaxConnections: past MaxConnections upgrades are refused 503 at
// once, and the refused request's socket is not kept alive.
func TestMaxConnections(t *testing.T) {
	s := startServer(t, Config{MaxConnections: 2, MaxUnauthenticatedPerIP: setting.Off})
	dial(t, s.url)
	s.peer(t)
	c2 := dial(t, s.url)
	s.peer(t)
	require.Equal(t, http.StatusServiceUnavailable, upgrade(t, s.url))

	// A raw upgrade: the 503 closes its connection.
	nc, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(s.url, "ws://"), "/ws"))
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.Write([]byte("GET /ws HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	require.NoError(t, err)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(wait)))
	res, err := io.ReadAll(nc)
	require.NoError(t, err, "the server closes the refused connection")
	require.True(t, strings.HasPrefix(string(res), "HTTP/1.1 503"), "%s", res)
	require.Contains(t, string(res), "Connection: close")

	c2.close(ws.StatusNormalClosure, "")
	c2.readClose(ws.StatusNormalClosure, "")
	c2.readEOF()
	require.Eventually(t, func() bool { return s.h.Open() == 1 }, wait, time.Millisecond)
	require.Equal(t, http.StatusSwitchingProtocols, upgrade(t, s.url))
}

func TestDefaultMaxConnections(t *testing.T) {
	n := openFilesLimit()
	if n == 0 {
		require.Zero(t, DefaultMaxConnections())
		return
	}
	require.Equal(t, n-min(512, n/2), DefaultMaxConnections())
	require.Positive(t, DefaultMaxConnections())
}

// TestSendAllQueuesAnAnswerWhole: the frames of one answer (a 500-frame
// catch-up page) go into a queue bounded at 4 frames, because they count
// against SendBytes only, and they all arrive in order; an answer whose
// bytes would pass SendBytes behind what is queued is refused whole.
func TestSendAllQueuesAnAnswerWhole(t *testing.T) {
	s := startServer(t, Config{SendQueue: 4, SendBytes: 64 << 10})
	c := dial(t, s.url)
	p := s.peer(t)
	page := make([][]byte, 500)
	for i := range page {
		page[i] = []byte(strconv.Itoa(i))
	}
	require.True(t, p.conn.SendAll(page))
	for i := range page {
		require.Equal(t, strconv.Itoa(i), string(c.read().Payload))
	}

	// A reader that has stopped: the writer blocks on one big frame, then
	// 40 KiB queue; 30 KiB more would pass 64 KiB, and none of it queues.
	require.True(t, p.conn.Send(bigFrame))
	require.Eventually(t, func() bool {
		p.conn.mu.Lock()
		defer p.conn.mu.Unlock()
		return p.conn.writer == writerRunning && p.conn.queue.len() == 0
	}, wait, time.Millisecond)
	require.True(t, p.conn.SendAll([][]byte{make([]byte, 20<<10), make([]byte, 20<<10)}))
	require.False(t, p.conn.SendAll([][]byte{make([]byte, 10<<10), make([]byte, 10<<10), make([]byte, 10<<10)}))
	p.conn.mu.Lock()
	queued := p.conn.queue.len()
	p.conn.mu.Unlock()
	require.Equal(t, 2, queued, "the refused answer queued nothing")
	go func() { _, _ = io.Copy(io.Discard, c.nc) }() // let it shut down
}
