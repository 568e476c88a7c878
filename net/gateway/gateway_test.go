package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rewind-chat/rewind/logtest"
)

// wait bounds every wait of the tests: they wait on conditions, never sleep.
const wait = 5 * time.Second

// testPeer echoes every text message, answers a message too large with
// tooLargeAnswer, and records what it is told.
type testPeer struct {
	conn        *Conn
	version     int
	texts       atomic.Int32
	binary      atomic.Int32
	tooLarge    atomic.Int32
	pings       atomic.Int32
	refusePings atomic.Bool
	closes      atomic.Int32
	closed      chan error
}

func (p *testPeer) Text(data []byte) {
	p.texts.Add(1)
	p.conn.Send(data)
}
func (p *testPeer) Binary() { p.binary.Add(1) }

// tooLargeAnswer is testPeer's answer to a message too large: its place
// among the echoes shows TooLarge's among the Text calls.
const tooLargeAnswer = "too large"

func (p *testPeer) TooLarge() {
	p.tooLarge.Add(1)
	p.conn.Send([]byte(tooLargeAnswer))
}
func (p *testPeer) Ping() bool {
	p.pings.Add(1)
	return !p.refusePings.Load()
}
func (p *testPeer) Closed(reason error) {
	p.closes.Add(1)
	p.closed <- reason
}

// reason waits for Closed and returns its Disconnect.
func (p *testPeer) reason(t *testing.T) *Disconnect {
	t.Helper()
	select {
	case err := <-p.closed:
		var d *Disconnect
		require.ErrorAs(t, err, &d)
		return d
	case <-time.After(wait):
		t.Fatal("Peer.Closed not called")
		return nil
	}
}

type testServer struct {
	h     *Handler
	url   string // ws://host:port/ws
	peers chan *testPeer
	reg   *prometheus.Registry
	logs  *logtest.Buffer
	stop  func() // shuts the Handler down and closes the server; idempotent
}

func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	s := &testServer{peers: make(chan *testPeer, 16), reg: prometheus.NewRegistry(), logs: new(logtest.Buffer)}
	cfg.Registerer = s.reg
	cfg.Logger = zerolog.New(s.logs)
	s.h = New(cfg, func(c *Conn, version int) Peer {
		p := &testPeer{conn: c, version: version, closed: make(chan error, 2)}
		s.peers <- p
		return p
	})
	srv := httptest.NewServer(s.h)
	s.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	s.stop = sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		require.NoError(t, s.h.Shutdown(ctx))
		srv.Close()
	})
	t.Cleanup(s.stop)
	return s
}

// peer returns the Peer of the next connection.
func (s *testServer) peer(t *testing.T) *testPeer {
	t.Helper()
	select {
	case p := <-s.peers:
		return p
	case <-time.After(wait):
		t.Fatal("no connection opened")
		return nil
	}
}

// client is the client side of one connection: a real gobwas client.
type client struct {
	t  *testing.T
	nc net.Conn
	r  io.Reader
}

func dial(t *testing.T, url string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	c := &client{t: t, nc: nc, r: nc}
	if br != nil {
		c.r = br // the server's first frames came with the handshake
	}
	return c
}

// write sends one masked frame, as clients must.
func (c *client) write(op ws.OpCode, fin bool, p []byte) {
	c.t.Helper()
	require.NoError(c.t, ws.WriteFrame(c.nc, ws.MaskFrame(ws.NewFrame(op, fin, p))))
}

func (c *client) text(s string) { c.write(ws.OpText, true, []byte(s)) }

// read returns the next frame from the server.
func (c *client) read() ws.Frame {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(wait)))
	h, err := ws.ReadHeader(c.r)
	require.NoError(c.t, err)
	require.False(c.t, h.Masked, "server frames are unmasked")
	p := make([]byte, h.Length)
	_, err = io.ReadFull(c.r, p)
	require.NoError(c.t, err)
	return ws.Frame{Header: h, Payload: p}
}

func (c *client) readText() string {
	c.t.Helper()
	f := c.read()
	require.Equal(c.t, ws.OpText, f.Header.OpCode)
	return string(f.Payload)
}

// readClose expects a close frame with code and reason.
func (c *client) readClose(code ws.StatusCode, reason string) {
	c.t.Helper()
	f := c.read()
	require.Equal(c.t, ws.OpClose, f.Header.OpCode)
	gotCode, gotReason := ws.ParseCloseFrameData(f.Payload)
	require.Equal(c.t, code, gotCode)
	require.Equal(c.t, reason, gotReason)
}

// close answers a close of the server's, or starts one.
func (c *client) close(code ws.StatusCode, reason string) {
	c.write(ws.OpClose, true, ws.NewCloseFrameBody(code, reason))
}

// readEOF expects the server to close the socket.
func (c *client) readEOF() {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(wait)))
	_, err := c.r.Read(make([]byte, 1))
	require.ErrorIs(c.t, err, io.EOF)
}

// readClosed expects the server to close the socket while bytes the
// client sent after its close frame may still be unread there: the
// kernel then resets the connection instead of ending it.
func (c *client) readClosed() {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(wait)))
	_, err := c.r.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		require.ErrorIs(c.t, err, io.EOF)
	}
}

func TestTextRoundTrip(t *testing.T) {
	s := startServer(t, Config{})
	c := dial(t, s.url)
	s.peer(t)
	for _, msg := range []string{"hello", `{"type":"heartbeat","payload":{"count":3}}`, "héllo 세계", "", "\U0010ffff \x7f \u0000"} {
		c.text(msg)
		require.Equal(t, msg, c.readText())
	}
}

func TestVersion(t *testing.T) {
	s := startServer(t, Config{})
	for _, tc := range []struct {
		query   string
		version int
	}{
		{query: "", version: 1},
		{query: "?v=1", version: 1},
		{query: "?v=2", version: 2},
		{query: "?v=3", version: 0},
		{query: "?v=", version: 0},
		{query: "?v=two", version: 0},
	} {
		t.Run(tc.query, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			nc, _, _, err := ws.Dial(ctx, s.url+tc.query)
			if tc.version == 0 {
				require.Equal(t, ws.StatusError(400), err)
				return
			}
			require.NoError(t, err)
			defer nc.Close()
			require.Equal(t, tc.version, s.peer(t).version)
		})
	}
}

func TestBinary(t *testing.T) {
	s := startServer(t, Config{})
	c := dial(t, s.url)
	p := s.peer(t)
	c.write(ws.OpBinary, true, []byte{1, 2, 3})
	c.text("still open")
	require.Equal(t, "still open", c.readText())
	require.Equal(t, int32(1), p.binary.Load())
}

func TestFragmentedJoined(t *testing.T) {
	s := startServer(t, Config{})
	c := dial(t, s.url)
	s.peer(t)
	c.write(ws.OpText, false, []byte("frag"))
	c.write(ws.OpPing, true, []byte("between")) // RFC 6455 §5.4: control frames may interleave
	c.write(ws.OpContinuation, false, []byte("men"))
	c.write(ws.OpContinuation, true, []byte("ted"))
	pong := c.read()
	require.Equal(t, ws.OpPong, pong.Header.OpCode)
	require.Equal(t, "between", string(pong.Payload))
	require.Equal(t, "fragmented", c.readText())
}

// TestMaxFrame: a text message past MaxFrame, in one frame or in
// fragments with a ping among them, is read and dropped, never handed to
// Text, and reported by TooLarge once, in its place between the messages
// around it; the connection goes on (protocol.md §2.1).
func TestMaxFrame(t *testing.T) {
	const maxFrame = 1024
	for _, tc := range []struct {
		name  string
		sizes []int // the fragments of one text message
		ok    bool
	}{
		{name: "exactly MaxFrame", sizes: []int{maxFrame}, ok: true},
		{name: "MaxFrame+1", sizes: []int{maxFrame + 1}},
		{name: "fragments of exactly MaxFrame", sizes: []int{500, 500, maxFrame - 1000}, ok: true},
		{name: "fragments of MaxFrame+1", sizes: []int{500, 500, maxFrame - 999}},
		{name: "fragments past MaxFrame from the first", sizes: []int{maxFrame + 1, 500, 500}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{MaxFrame: maxFrame})
			c := dial(t, s.url)
			p := s.peer(t)
			c.text("before")
			var want strings.Builder
			for i, n := range tc.sizes {
				op := ws.OpContinuation
				if i == 0 {
					op = ws.OpText
				}
				part := strings.Repeat(string(rune('a'+i)), n)
				want.WriteString(part)
				c.write(op, i == len(tc.sizes)-1, []byte(part))
				if i == 0 && len(tc.sizes) > 1 {
					c.write(ws.OpPing, true, []byte("between")) // RFC 6455 §5.4
				}
			}
			c.text("after")
			answer, texts := tooLargeAnswer, int32(2)
			if tc.ok {
				answer, texts = want.String(), 3
			}
			got, pongs := c.readTexts(3)
			require.Equal(t, []string{"before", answer, "after"}, got)
			require.Equal(t, min(len(tc.sizes)-1, 1), pongs)
			require.Equal(t, texts, p.texts.Load(), "no Text for a message past MaxFrame")
			require.Equal(t, 3-texts, p.tooLarge.Load())
		})
	}
	t.Run("closed inside", func(t *testing.T) {
		// A close frame among the fragments of a message past MaxFrame
		// ends it: the message is not reported.
		s := startServer(t, Config{MaxFrame: maxFrame})
		c := dial(t, s.url)
		p := s.peer(t)
		c.write(ws.OpText, false, make([]byte, maxFrame+1))
		c.close(ws.StatusNormalClosure, "")
		// After the close frame: the server reads no further, and may
		// have closed the socket already (then this write fails).
		_ = ws.WriteFrame(c.nc, ws.MaskFrame(ws.NewFrame(ws.OpContinuation, true, []byte("late"))))
		c.readClose(ws.StatusNormalClosure, "")
		c.readClosed()
		require.Equal(t, CauseClientClose, p.reason(t).Cause)
		require.Zero(t, p.tooLarge.Load())
	})
}

// readTexts reads frames until n texts have come and returns them, with
// the number of pongs among them (the writer sends a pong before the texts
// queued).
func (c *client) readTexts(n int) (texts []string, pongs int) {
	c.t.Helper()
	for len(texts) < n {
		f := c.read()
		switch f.Header.OpCode {
		case ws.OpPong:
			pongs++
		case ws.OpText:
			texts = append(texts, string(f.Payload))
		default:
			c.t.Fatalf("frame %v %.80q", f.Header.OpCode, f.Payload)
		}
	}
	return texts, pongs
}

// TestMaxMessage: a message past MaxMessage, all fragments together, is
// refused from the header that takes it past, with close 1009; up to
// MaxMessage it is one past MaxFrame.
func TestMaxMessage(t *testing.T) {
	const maxFrame, maxMessage = 1024, 4096
	for _, tc := range []struct {
		name  string
		sizes []int // the fragments of one text message
		ok    bool
	}{
		{name: "exactly MaxMessage", sizes: []int{maxMessage}, ok: true},
		{name: "MaxMessage+1", sizes: []int{maxMessage + 1}},
		{name: "fragments of exactly MaxMessage", sizes: []int{500, 2000, maxMessage - 2500}, ok: true},
		{name: "fragments of MaxMessage+1", sizes: []int{500, 2000, maxMessage - 2499}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{MaxFrame: maxFrame, MaxMessage: maxMessage})
			c := dial(t, s.url)
			p := s.peer(t)
			for i, n := range tc.sizes {
				op := ws.OpContinuation
				if i == 0 {
					op = ws.OpText
				}
				c.write(op, i == len(tc.sizes)-1, make([]byte, n))
			}
			if tc.ok {
				require.Equal(t, tooLargeAnswer, c.readText())
				c.text("after")
				require.Equal(t, "after", c.readText())
				return
			}
			c.close(ws.StatusMessageTooBig, "") // the server skipped the payload to read this
			c.readTooBig(p)
			c.readEOF()
			require.Zero(t, p.tooLarge.Load())
		})
	}
	for _, tc := range []struct {
		name                 string
		cfg                  Config
		maxFrame, maxMessage int // resolved
	}{
		{name: "declared, not sent", cfg: Config{MaxFrame: maxFrame, MaxMessage: maxMessage}, maxFrame: maxFrame, maxMessage: maxMessage},
		{name: "by default", maxFrame: 64 << 10, maxMessage: 1 << 20},
		{name: "MaxMessage above 1 MiB", cfg: Config{MaxMessage: 1 << 30}, maxFrame: DefaultMaxFrame, maxMessage: DefaultMaxMessage},
		{name: "MaxFrame above MaxMessage", cfg: Config{MaxFrame: 1 << 30, MaxMessage: maxMessage}, maxFrame: maxMessage, maxMessage: maxMessage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.cfg)
			require.Equal(t, tc.maxFrame, s.h.cfg.MaxFrame)
			require.Equal(t, tc.maxMessage, s.h.cfg.MaxMessage)
			// A fragment declares one byte more than MaxMessage and no
			// payload follows: the server decides from the header alone,
			// before reading or allocating.
			s.h.closeWait = 50 * time.Millisecond
			c := dial(t, s.url)
			p := s.peer(t)
			c.write(ws.OpText, false, nil)
			hdr := ws.Header{Fin: true, OpCode: ws.OpContinuation, Masked: true, Length: int64(tc.maxMessage) + 1}
			require.NoError(t, ws.WriteHeader(c.nc, hdr))
			c.readTooBig(p) // no answer can get past the declared payload: dropped after closeWait
			c.readEOF()
		})
	}
}

// readTooBig expects the server to close with 1009 and tell the peer why.
func (c *client) readTooBig(p *testPeer) {
	c.t.Helper()
	c.readClose(ws.StatusMessageTooBig, "message too big")
	d := p.reason(c.t)
	require.Equal(c.t, CauseTooLarge, d.Cause)
	require.ErrorIs(c.t, d, ErrTooLarge)
}

func TestPingPong(t *testing.T) {
	s := startServer(t, Config{})
	c := dial(t, s.url)
	s.peer(t)
	for _, payload := range []string{"ping payload", "", strings.Repeat("x", 125)} {
		c.write(ws.OpPing, true, []byte(payload))
		f := c.read()
		require.Equal(t, ws.OpPong, f.Header.OpCode)
		require.Equal(t, payload, string(f.Payload))
	}
	c.write(ws.OpPong, true, []byte("unsolicited")) // ignored
	c.text("after")
	require.Equal(t, "after", c.readText())
}

func TestClientCloseEchoed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   []byte
		echo   []byte // the server's close payload
		cause  Cause
		code   uint16
		reason string
	}{
		{name: "code and reason", body: ws.NewCloseFrameBody(4321, "bye"), echo: []byte{0x10, 0xe1}, cause: CauseClientClose, code: 4321, reason: "bye"},
		{name: "normal", body: ws.NewCloseFrameBody(ws.StatusNormalClosure, ""), echo: []byte{0x03, 0xe8}, cause: CauseClientClose, code: 1000},
		{name: "no code", body: nil, echo: []byte{}, cause: CauseClientClose, code: 1005},
		{name: "reserved code", body: ws.NewCloseFrameBody(ws.StatusNoStatusRcvd, ""), cause: CauseProtocolError, code: 1002},
		{name: "one byte", body: []byte{3}, cause: CauseProtocolError, code: 1002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{})
			c := dial(t, s.url)
			p := s.peer(t)
			c.write(ws.OpClose, true, tc.body)
			f := c.read()
			require.Equal(t, ws.OpClose, f.Header.OpCode)
			if tc.echo != nil {
				require.Equal(t, tc.echo, f.Payload)
			} else {
				code, _ := ws.ParseCloseFrameData(f.Payload)
				require.Equal(t, ws.StatusProtocolError, code)
			}
			c.readEOF() // the handshake is complete: the server closes first
			d := p.reason(t)
			require.Equal(t, tc.cause, d.Cause)
			require.Equal(t, tc.code, d.Code)
			require.Equal(t, tc.reason, d.Reason)

			require.Eventually(t, func() bool { return s.h.Open() == 0 }, wait, time.Millisecond)
			require.Equal(t, int32(1), p.closes.Load())
			require.False(t, p.conn.Send([]byte("late")))
			require.Equal(t, 1.0, count(t, s.h.metrics.closes.WithLabelValues(itoa(tc.code))))
			require.Eventually(t, func() bool {
				return strings.Contains(s.logs.String(), `"cause":"`+string(tc.cause)+`","code":`+itoa(tc.code))
			}, wait, time.Millisecond, "the close log line names the cause")
		})
	}
}

func itoa(n uint16) string { return strconv.Itoa(int(n)) }

func count(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

func TestProtocolErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte // raw bytes from the client
	}{
		{name: "ping over 125 bytes", frame: masked(ws.NewPingFrame(make([]byte, 126)))},
		{name: "fragmented ping", frame: masked(ws.NewFrame(ws.OpPing, false, nil))},
		{name: "unmasked frame", frame: ws.MustCompileFrame(ws.NewTextFrame([]byte("hi")))},
		{name: "reserved opcode", frame: masked(ws.NewFrame(0x3, true, nil))},
		{name: "continuation first", frame: masked(ws.NewFrame(ws.OpContinuation, true, []byte("x")))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{})
			c := dial(t, s.url)
			p := s.peer(t)
			_, err := c.nc.Write(tc.frame)
			require.NoError(t, err)
			f := c.read()
			require.Equal(t, ws.OpClose, f.Header.OpCode)
			code, _ := ws.ParseCloseFrameData(f.Payload)
			require.Equal(t, ws.StatusProtocolError, code)
			c.nc.Close() // the server drains until the client hangs up
			d := p.reason(t)
			require.Equal(t, CauseProtocolError, d.Cause)
			require.Equal(t, uint16(1002), d.Code)
		})
	}
}

func masked(f ws.Frame) []byte { return ws.MustCompileFrame(ws.MaskFrame(f)) }

func TestCloseFlushesQueue(t *testing.T) {
	s := startServer(t, Config{})
	c := dial(t, s.url)
	p := s.peer(t)
	for _, m := range []string{"one", "two", "three"} {
		require.True(t, p.conn.Send([]byte(m)))
	}
	p.conn.Close(4003, "Heartbeat missing. Websocket session closed.")
	require.False(t, p.conn.Send([]byte("four")), "Send after Close")
	p.conn.Close(1000, "") // only the first Close counts
	for _, m := range []string{"one", "two", "three"} {
		require.Equal(t, m, c.readText())
	}
	c.readClose(4003, "Heartbeat missing. Websocket session closed.")
	c.text("read while closing: discarded")
	c.close(4003, "")
	d := p.reason(t)
	require.Equal(t, CauseServerClose, d.Cause)
	require.Equal(t, uint16(4003), d.Code)
	require.Zero(t, p.texts.Load())
	c.readEOF()
}

func TestCloseWaitBounded(t *testing.T) {
	s := startServer(t, Config{})
	s.h.closeWait = 50 * time.Millisecond
	c := dial(t, s.url)
	p := s.peer(t)
	p.conn.Close(4003, "bye")
	c.readClose(4003, "bye")
	// The client does not answer: the server drops the socket by itself.
	c.readEOF()
	require.Equal(t, CauseServerClose, p.reason(t).Cause)
}

// bigFrame is larger than the loopback socket buffers of a client that does
// not read, so the writer blocks inside the first one.
var bigFrame = make([]byte, 16<<20)

// fill sends bigFrame until Send fails and returns how many it accepted.
func fill(t *testing.T, c *Conn) int {
	t.Helper()
	for n := range 100 {
		if !c.Send(bigFrame) {
			return n
		}
	}
	t.Fatal("Send never failed")
	return 0
}

// readFrames reads the client's frames until a close frame, discarding
// payloads, and returns the number of text frames and the close code.
func (c *client) readFrames() (texts int, code ws.StatusCode) {
	c.t.Helper()
	for {
		require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(wait)))
		h, err := ws.ReadHeader(c.r)
		require.NoError(c.t, err)
		if h.OpCode == ws.OpClose {
			p := make([]byte, h.Length)
			_, err = io.ReadFull(c.r, p)
			require.NoError(c.t, err)
			code, _ = ws.ParseCloseFrameData(p)
			return texts, code
		}
		_, err = io.CopyN(io.Discard, c.r, h.Length)
		require.NoError(c.t, err)
		texts++
	}
}

func TestSendFailsWhenQueueFull(t *testing.T) {
	s := startServer(t, Config{SendQueue: 2, SendBytes: 1 << 30})
	c := dial(t, s.url)
	p := s.peer(t)
	n := fill(t, p.conn)
	require.GreaterOrEqual(t, n, 2)
	require.LessOrEqual(t, n, 3, "the queue, plus the frame the writer is blocked on")
	p.conn.Close(1000, "")
	texts, code := c.readFrames()
	require.Equal(t, n, texts, "Close writes every queued frame")
	require.Equal(t, ws.StatusNormalClosure, code)
	c.close(ws.StatusNormalClosure, "")
	require.Equal(t, CauseServerClose, p.reason(t).Cause)
}

func TestAbortDropsQueue(t *testing.T) {
	s := startServer(t, Config{SendQueue: 2, SendBytes: 1 << 30})
	c := dial(t, s.url)
	p := s.peer(t)
	n := fill(t, p.conn)
	p.conn.Abort(4009, "slow consumer")
	require.False(t, p.conn.Send([]byte("late")))
	texts, code := c.readFrames()
	require.Less(t, texts, n, "the queued frames were dropped")
	require.Equal(t, ws.StatusCode(4009), code)
	c.close(4009, "")
	d := p.reason(t)
	require.Equal(t, CauseServerClose, d.Cause)
	require.Equal(t, uint16(4009), d.Code)
}

// TestWriteTimeoutCloses4009: a client that does not read is a slow
// consumer (protocol.md §2.1), never a silent 1006: the frames still queued
// are dropped (and counted in the close log line), the frame the write was
// in is finished and a close frame 4009 follows, for a client that reads
// again within closeWait; one that never does is dropped, still as 4009.
func TestWriteTimeoutCloses4009(t *testing.T) {
	t.Run("never reads", func(t *testing.T) {
		s := startServer(t, Config{WriteTimeout: 100 * time.Millisecond, SendBytes: 1 << 30})
		s.h.closeWait = 100 * time.Millisecond
		dial(t, s.url) // never reads
		p := s.peer(t)
		require.True(t, p.conn.Send(bigFrame))
		require.True(t, p.conn.Send([]byte("queued behind it")))
		d := p.reason(t)
		require.Equal(t, CauseWriteTimeout, d.Cause)
		require.Equal(t, uint16(CloseSlowConsumer), d.Code)
		require.Equal(t, SlowConsumerReason, d.Reason)
		require.ErrorIs(t, d, os.ErrDeadlineExceeded)
		// Peer.Closed comes before the Handler counts the close.
		require.Eventually(t, func() bool { return s.h.Open() == 0 }, wait, time.Millisecond)
		require.Equal(t, 1.0, count(t, s.h.metrics.closes.WithLabelValues("4009")))
		require.Eventually(t, func() bool {
			return strings.Contains(s.logs.String(), `"code":4009,"reason":"Slow consumer."`) &&
				strings.Contains(s.logs.String(), `"frames_dropped":1`)
		}, wait, time.Millisecond)
	})
	t.Run("reads late", func(t *testing.T) {
		s := startServer(t, Config{WriteTimeout: 100 * time.Millisecond, SendBytes: 1 << 30})
		c := dial(t, s.url)
		p := s.peer(t)
		require.True(t, p.conn.Send(bigFrame))
		require.True(t, p.conn.Send([]byte("dropped")))
		// The write times out while the client is not reading; then it reads.
		require.Eventually(t, func() bool { return p.conn.closing.Load() }, wait, time.Millisecond)
		f := c.read()
		require.Equal(t, ws.OpText, f.Header.OpCode)
		require.Len(t, f.Payload, len(bigFrame), "the frame cut short is finished")
		c.readClose(CloseSlowConsumer, SlowConsumerReason)
		c.close(CloseSlowConsumer, "")
		c.readEOF()
		d := p.reason(t)
		require.Equal(t, CauseWriteTimeout, d.Cause)
		require.Equal(t, uint16(CloseSlowConsumer), d.Code)
	})
}

func TestShutdown(t *testing.T) {
	s := startServer(t, Config{})
	clients := make([]*client, 3)
	peers := make([]*testPeer, 3)
	for i := range clients {
		clients[i] = dial(t, s.url)
		peers[i] = s.peer(t)
	}
	require.Equal(t, 3, s.h.Open())
	done := make(chan error, 1)
	go func() { done <- s.h.Shutdown(context.Background()) }()
	for i, c := range clients {
		c.readClose(ws.StatusGoingAway, "server shutting down")
		c.close(ws.StatusGoingAway, "")
		require.Equal(t, CauseShutdown, peers[i].reason(t).Cause)
	}
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(wait):
		t.Fatal("Shutdown did not return")
	}
	require.Equal(t, 0, s.h.Open())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, _, _, err := ws.Dial(ctx, s.url)
	require.Equal(t, ws.StatusError(503), err)
	require.Equal(t, 3.0, count(t, s.h.metrics.closes.WithLabelValues("1001")))
}

func TestShutdownHonoursContext(t *testing.T) {
	s := startServer(t, Config{})
	s.h.closeWait = time.Second
	c := dial(t, s.url) // reads the close frame but never answers it
	s.peer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.h.Shutdown(ctx), context.DeadlineExceeded)
	c.readClose(ws.StatusGoingAway, "server shutting down")
}

func TestNoGoroutineLeak(t *testing.T) {
	before := goleak.IgnoreCurrent()
	s := startServer(t, Config{})
	s.h.closeWait = 10 * time.Millisecond
	var clients []*client
	var peers []*testPeer
	for range 5 {
		c := dial(t, s.url)
		p := s.peer(t)
		c.text("x")
		require.Equal(t, "x", c.readText())
		clients, peers = append(clients, c), append(peers, p)
	}
	clients[0].close(ws.StatusNormalClosure, "") // client close
	clients[1].nc.Close()                        // client vanishes
	peers[2].conn.Close(4003, "hb")              // server close, never answered
	peers[3].conn.Abort(4009, "slow")            // abort, never answered
	s.stop()                                     // shutdown, never answered
	for _, p := range peers {
		p.reason(t)
		require.Equal(t, int32(1), p.closes.Load())
	}
	goleak.VerifyNone(t, before)
}

// TestFramesWithHandshake: frames sent with the handshake, before its
// answer, sit in the reader that read the request; they come first.
func TestFramesWithHandshake(t *testing.T) {
	s := startServer(t, Config{})
	nc, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(s.url, "ws://"), "/ws"))
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	req := "GET /ws HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	_, err = nc.Write(append([]byte(req), append(masked(ws.NewTextFrame([]byte("early"))), masked(ws.NewTextFrame([]byte("bird")))...)...))
	require.NoError(t, err)
	s.peer(t)
	c := &client{t: t, nc: nc, r: bufio.NewReader(nc)}
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(wait)))
	res, err := http.ReadResponse(c.r.(*bufio.Reader), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, res.StatusCode)
	require.Equal(t, "early", c.readText())
	require.Equal(t, "bird", c.readText())
	c.text("later")
	require.Equal(t, "later", c.readText())
}

// TestSplitFrame: a frame that arrives in pieces keeps its reader until it
// is complete, fragments included.
func TestSplitFrame(t *testing.T) {
	s := startServer(t, Config{})
	c := dial(t, s.url)
	s.peer(t)
	frame := masked(ws.NewTextFrame([]byte("in pieces")))
	for _, part := range [][]byte{frame[:1], frame[1:4], frame[4:9], frame[9:]} {
		_, err := c.nc.Write(part)
		require.NoError(t, err)
	}
	require.Equal(t, "in pieces", c.readText())
	c.write(ws.OpText, false, []byte("frag"))
	c.write(ws.OpContinuation, true, []byte("ments"))
	require.Equal(t, "fragments", c.readText())
}
