package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/server"
	"github.com/rewind-chat/rewind/setting"
)

// The transport's hardening (issue 8, findings 5, 7, 9, 15, 16), each on
// the real server.

// rawWS is a WebSocket whose frames the test writes and reads itself: for
// pings, pongs and close frames, and for a client that does not read.
type rawWS struct {
	t  *testing.T
	nc net.Conn
	r  io.Reader
}

func (n *node) dialFrames() *rawWS {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, "ws://"+n.srv.Addr()+"/ws")
	require.NoError(n.t, err)
	n.t.Cleanup(func() { nc.Close() })
	c := &rawWS{t: n.t, nc: nc, r: nc}
	if br != nil {
		c.r = br
	}
	return c
}

func (c *rawWS) write(op ws.OpCode, payload []byte) {
	c.t.Helper()
	require.NoError(c.t, ws.WriteFrame(c.nc, ws.MaskFrame(ws.NewFrame(op, true, payload))))
}

func (c *rawWS) text(s string) { c.write(ws.OpText, []byte(s)) }

// read returns the next frame, or the error that ended the wait for it.
func (c *rawWS) read(d time.Duration) (ws.Frame, error) {
	require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(d)))
	h, err := ws.ReadHeader(c.r)
	if err != nil {
		return ws.Frame{}, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.r, p); err != nil {
		return ws.Frame{}, err
	}
	return ws.Frame{Header: h, Payload: p}, nil
}

func (c *rawWS) mustRead() ws.Frame {
	c.t.Helper()
	f, err := c.read(wait)
	require.NoError(c.t, err)
	return f
}

// readClose reads frames until a close frame and returns its code and
// reason; the frames before it are counted.
func (c *rawWS) readClose() (code ws.StatusCode, reason string, before int) {
	c.t.Helper()
	for {
		f, err := c.read(wait)
		require.NoError(c.t, err, "no close frame after %d frames", before)
		if f.Header.OpCode == ws.OpClose {
			code, reason = ws.ParseCloseFrameData(f.Payload)
			return code, reason, before
		}
		before++
	}
}

// TestInvalidUTF8ClosesTheConnection (finding 7): raw bytes that are not
// UTF-8, inside a JSON string or not, close the connection with 1007
// "Invalid UTF-8." (RFC 6455 §8.1); nothing of such a message is applied or
// echoed, to its sender or anyone else.
func TestInvalidUTF8ClosesTheConnection(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		a, b := n.newAccount("utf8a"), n.newAccount("utf8b")
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		befriend(t, ca, a, cb, b)
		for _, bad := range []string{
			`{"type":"chat","payload":{"type":"send","chat_id":"` + chatID(a, b) + `","content":"hi ` + "\xff\xfe" + `"}}`,
			`{"type":"chat","payload":{"type":"send","chat_id":"` + chatID(a, b) + `","content":"hi"},"nonce":"` + "\xc0\xaf" + `"}`,
			`{"type":"heartbeat","payload":"` + "\xed\xa0\x80" + `"}`,
			"\xff not JSON either",
		} {
			c, _ := n.connect(a, 2)
			require.NoError(t, c.SendText([]byte(bad)))
			requireClosed(t, c, 1007, "Invalid UTF-8.")
		}
		// Nothing reached b, nothing was stored: b's next frame is the
		// answer to its own request, and the DM's history is empty.
		frames := collect(t, cb, "load", map[string]any{"type": "chat", "load_id": chatID(a, b)})
		require.Len(t, frames, 1, "only the end marker: %v", frames)
		var end struct{ Count int }
		require.NoError(t, frames[0].Decode(&end))
		require.Zero(t, end.Count)
	})
}

// collect sends a request and returns its answers up to the end marker.
func collect(t *testing.T, c *client.Client, typ string, payload any) []client.Frame {
	t.Helper()
	frames, err := c.Collect(ctxWait(t), typ, payload, func(f client.Frame) bool {
		var p struct {
			Type  string `json:"type"`
			Count *int   `json:"count"`
		}
		return json.Unmarshal(f.Payload, &p) == nil && p.Count != nil
	})
	require.NoError(t, err)
	return frames
}

// TestNULEscapeIsInvalid (findings 1, 7): a JSON text holding the escape
// \u0000 anywhere is answered 4000 "Invalid request." at the edge, for
// every request type, and the connection stays open; nothing is stored.
func TestNULEscapeIsInvalid(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		a, b := n.newAccount("nula"), n.newAccount("nulb")
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		befriend(t, ca, a, cb, b)
		id := chatID(a, b)
		sent := call(t, ca, "chat", map[string]string{"type": "send", "chat_id": id, "content": "before"})
		require.Equal(t, "chat", sent.Type, string(sent.Payload))
		require.Equal(t, "chat", next(t, cb).Type)
		var msg struct {
			ID string `json:"id"`
		}
		require.NoError(t, sent.Decode(&msg))
		for _, bad := range []string{
			`{"type":"chat","payload":{"type":"send","chat_id":"` + id + `","content":"a\u0000b"},"nonce":"x1"}`,
			`{"type":"chat","payload":{"type":"send","chat_id":"` + id + `","content":"hi"},"nonce":"n\u0000"}`,
			`{"type":"chat","payload":{"type":"edit","chat_id":"` + id + `","id":"` + msg.ID + `","content":"\u0000"},"nonce":"x2"}`,
			`{"type":"mutual_users","payload":{"type":"request","name":"nulb\u0000"},"nonce":"x3"}`,
			`{"type":"user","payload":{"profile":"https://example.test/\u0000.png"},"nonce":"x4"}`,
			`{"type":"heartbeat","payload":{"\u0000":1},"nonce":"x5"}`,
			`{"type":"heartbeat\u0000","nonce":"x6"}`,
		} {
			require.NoError(t, ca.SendText([]byte(bad)))
			requireError(t, next(t, ca), 4000, "Invalid request.")
		}
		// Open all along; an escaped backslash before "u0000" is text.
		f := call(t, ca, "chat", map[string]string{"type": "send", "chat_id": id, "content": `\u0000`})
		require.Equal(t, "chat", f.Type, string(f.Payload))
		var got struct {
			Content string `json:"content"`
		}
		require.NoError(t, f.Decode(&got))
		require.Equal(t, `\u0000`, got.Content)
		ev := next(t, cb)
		require.Equal(t, "chat", ev.Type)
		require.NoError(t, ev.Decode(&got))
		require.Equal(t, `\u0000`, got.Content, "b saw only the sends that were stored")
		frames := collect(t, cb, "load", map[string]any{"type": "chat", "load_id": id})
		require.Len(t, frames, 3, "two messages and the end marker")
		var contents []string
		for _, f := range frames[:2] {
			require.NoError(t, f.Decode(&got))
			contents = append(contents, got.Content)
		}
		require.Equal(t, []string{"before", `\u0000`}, contents, "stored: the two sends, unedited")
	})
}

// TestChatIDMustBeCanonical (finding 16): "+1979711488" and "01979711488"
// are not ids; the number form stays accepted.
func TestChatIDMustBeCanonical(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		a, b := n.newAccount("ida"), n.newAccount("idb")
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		befriend(t, ca, a, cb, b)
		id := chatID(a, b)
		for _, bad := range []string{"+" + id, "0" + id, " " + id, id + " "} {
			requireError(t, call(t, ca, "chat", map[string]string{"type": "send", "chat_id": bad, "content": "x"}), 4000, "chat_id is not provided.")
		}
		num, err := strconv.ParseInt(id, 10, 64)
		require.NoError(t, err)
		f := call(t, ca, "chat", map[string]any{"type": "send", "chat_id": num, "content": "by number"})
		require.Equal(t, "chat", f.Type, string(f.Payload))
		ev := next(t, cb)
		require.Equal(t, "chat", ev.Type)
		require.Contains(t, string(ev.Payload), "by number", "b got only the send with a canonical id")
	})
}

// TestPingsCountAgainstTheRateLimit (finding 9): a ping takes a token of
// the session's bucket like a request; one over the limit gets no pong,
// and a ping flood closes the session with 4008 after 10 s over it.
func TestPingsCountAgainstTheRateLimit(t *testing.T) {
	t.Parallel() // it waits out the 10 s of protocol.md §2.7
	n := startNode(t, "sqlite:"+filepath.Join(t.TempDir(), "rewind.db"), func(c *server.Config) {
		c.Gateway.Rate, c.Gateway.Burst = 1, 3
	})
	c := n.dialFrames()
	for i := range 3 {
		c.write(ws.OpPing, []byte{byte(i)})
		f := c.mustRead()
		require.Equal(t, ws.OpPong, f.Header.OpCode)
		require.Equal(t, []byte{byte(i)}, f.Payload)
	}
	c.write(ws.OpPing, []byte("over"))
	c.text(`{"type":"heartbeat","payload":1,"nonce":"h"}`)
	f := c.mustRead()
	require.Equal(t, ws.OpText, f.Header.OpCode, "no pong for the ping over the limit")
	require.JSONEq(t, `{"type":"error","payload":{"code":4029,"reason":"rate limited."},"nonce":"h"}`, string(f.Payload),
		"the pings took the tokens")
	// A flood of pings: none answered past the limit but one a second,
	// and after 10 s the session is closed.
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
				if ws.WriteFrame(c.nc, ws.MaskFrame(ws.NewPingFrame([]byte("flood")))) != nil {
					return
				}
			}
		}
	}()
	start := time.Now()
	pongs := 0
	for {
		f, err := c.read(20 * time.Second)
		require.NoError(t, err)
		if f.Header.OpCode == ws.OpPong {
			pongs++
			continue
		}
		require.Equal(t, ws.OpClose, f.Header.OpCode)
		code, _ := ws.ParseCloseFrameData(f.Payload)
		require.Equal(t, ws.StatusCode(4008), code)
		break
	}
	elapsed := time.Since(start)
	require.GreaterOrEqual(t, elapsed, 9*time.Second)
	require.LessOrEqual(t, pongs, int(elapsed/time.Second)+2, "about one pong a second over %v", elapsed)
}

// TestLengthWithTopBitCloses1002 (finding 15): RFC 6455 §5.2's most
// significant bit of a 64-bit length is a protocol error, answered with a
// close frame 1002, not a silent drop.
func TestLengthWithTopBitCloses1002(t *testing.T) {
	n := startNode(t, "sqlite:"+filepath.Join(t.TempDir(), "rewind.db"))
	c := n.dialFrames()
	_, err := c.nc.Write([]byte{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4})
	require.NoError(t, err)
	f := c.mustRead()
	require.Equal(t, ws.OpClose, f.Header.OpCode)
	code, _ := ws.ParseCloseFrameData(f.Payload)
	require.Equal(t, ws.StatusProtocolError, code)
}

// stuff sends count heartbeats of size bytes each without reading, so that
// their answers fill the socket.
func (c *rawWS) stuff(count, size int) {
	c.t.Helper()
	payload := strings.Repeat("x", size)
	for range count {
		c.text(`{"type":"heartbeat","payload":"` + payload + `"}`)
	}
}

// TestClientThatDoesNotReadIsClosed4009 (finding 15): a client that stops
// reading is closed as a slow consumer, 4009, by the write timeout
// (protocol.md §2.1: "or a write to it did not finish within 10 s"), not
// dropped silently as 1006: when it reads again it finds the frames it was
// sent, whole, then the close frame.
func TestClientThatDoesNotReadIsClosed4009(t *testing.T) {
	n := startNode(t, "sqlite:"+filepath.Join(t.TempDir(), "rewind.db"), func(c *server.Config) {
		c.Gateway.Rate = setting.Off
		c.Gateway.WriteTimeout = 300 * time.Millisecond
		c.Gateway.SendQueue, c.Gateway.SendBytes = 1<<20, 1<<30 // only the timeout ends it
	})
	c := n.dialFrames()
	c.stuff(1500, 12<<10) // 18 MB of answers: more than loopback buffers hold
	time.Sleep(time.Second)
	code, reason, before := c.readClose()
	require.Equal(t, ws.StatusCode(4009), code)
	require.Equal(t, "Slow consumer.", reason)
	require.Positive(t, before)
	require.Less(t, before, 1500, "the queue behind the stuck write was dropped")
	require.Eventually(t, func() bool {
		return strings.Contains(n.log.String(), `"cause":"write timeout","code":4009`)
	}, wait, 10*time.Millisecond, "the close is on record as a slow consumer")
}

// TestSendQueueBoundedInBytes (finding 15): REWIND_WS_SEND_BYTES bounds the
// outbound queue; past it the session is closed 4009 like past the frame
// bound, and the client that reads again learns why.
func TestSendQueueBoundedInBytes(t *testing.T) {
	n := startNode(t, "sqlite:"+filepath.Join(t.TempDir(), "rewind.db"), func(c *server.Config) {
		c.Gateway.Rate = setting.Off
		c.Gateway.SendQueue, c.Gateway.SendBytes = 1<<20, 256<<10
		c.Gateway.WriteTimeout = time.Second
	})
	c := n.dialFrames()
	c.stuff(1500, 12<<10)
	require.Eventually(t, func() bool {
		return strings.Contains(n.log.String(), "session: slow consumer")
	}, wait, 10*time.Millisecond, "the queue overflowed by its bytes, not its 1<<20 frames")
	code, reason, _ := c.readClose()
	require.Equal(t, ws.StatusCode(4009), code)
	require.Equal(t, "Slow consumer.", reason)
}

// TestAuthTimeout (finding 5): a connection that does not authenticate
// within REWIND_WS_AUTH_TIMEOUT of its upgrade is closed with 4001, however
// faithfully it heartbeats; one that did is not.
func TestAuthTimeout(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, func(c *server.Config) { c.Gateway.AuthTimeout = 700 * time.Millisecond })
		a := n.newAccount("timely")
		authed, _ := n.connect(a, 1)
		idle := n.dial(1)
		stop := idle.Heartbeats(100 * time.Millisecond)
		defer stop()
		start := time.Now()
		requireClosed(t, idle, 4001, "Authentication timed out.")
		require.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond)
		time.Sleep(300 * time.Millisecond)
		require.Equal(t, "heartbeat", call(t, authed, "heartbeat", 1).Type, "an authenticated session stays")
	})
}

// TestUnauthenticatedConnectionsPerAddress (finding 5): one address holds
// at most REWIND_WS_MAX_UNAUTHENTICATED_PER_IP connections that have not
// authenticated; the next upgrade is refused 429 before the handshake.
// Authenticating, or closing, makes room.
func TestUnauthenticatedConnectionsPerAddress(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, func(c *server.Config) { c.Gateway.MaxUnauthenticatedPerIP = 3 })
		a := n.newAccount("crowd")
		url := "ws://" + n.srv.Addr() + "/ws"
		dial := func() (*client.Client, error) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			c, err := client.Dial(ctx, url)
			if err == nil {
				t.Cleanup(func() { c.Close() })
			}
			return c, err
		}
		var open []*client.Client
		for range 3 {
			c, err := dial()
			require.NoError(t, err)
			open = append(open, c)
		}
		_, err := dial()
		require.Equal(t, ws.StatusError(http.StatusTooManyRequests), err)
		call(t, open[0], "heartbeat", 0)
		require.Equal(t, "auth", call(t, open[0], "auth", map[string]string{"auth": a.Token}).Type)
		require.Eventually(t, func() bool {
			c, err := dial()
			if err == nil {
				open = append(open, c)
			}
			return err == nil
		}, wait, 10*time.Millisecond, "an authenticated connection does not count")
		_, err = dial()
		require.Equal(t, ws.StatusError(http.StatusTooManyRequests), err)
		require.NoError(t, open[1].Close())
		require.Eventually(t, func() bool {
			c, err := dial()
			if err == nil {
				open = append(open, c)
			}
			return err == nil
		}, wait, 10*time.Millisecond, "a closed connection does not count")
	})
}

// TestMaxConnectionsKeepsHealth (finding 5): past REWIND_MAX_CONNECTIONS
// upgrades are refused 503 at once, while health and login are answered.
func TestMaxConnectionsKeepsHealth(t *testing.T) {
	n := startNode(t, "sqlite:"+filepath.Join(t.TempDir(), "rewind.db"), func(c *server.Config) {
		c.Gateway.MaxConnections, c.Gateway.MaxUnauthenticatedPerIP = 3, setting.Off
	})
	for range 3 {
		n.dial(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := client.Dial(ctx, "ws://"+n.srv.Addr()+"/ws")
	require.Equal(t, ws.StatusError(http.StatusServiceUnavailable), err)
	require.Equal(t, http.StatusOK, n.get("/healthz", "").Status)
	a := n.postForm("/api/v1/auth/login", map[string]string{"email": "nobody@example.test", "password": "password1"})
	require.Equal(t, http.StatusUnauthorized, a.Status, a.Body)
}

// fdChildEnv makes the test binary the child of
// TestDescriptorExhaustionKeepsHealth: a server under a low open-files
// limit.
const fdChildEnv = "REWIND_TEST_FD_CHILD"

// childNoFile is the child's RLIMIT_NOFILE.
const childNoFile = 256

// TestDescriptorExhaustionKeepsHealth (finding 5): a server whose process
// has few descriptors (RLIMIT_NOFILE 256, in a child process) refuses
// upgrades with 503 before its descriptors run out, with the default
// REWIND_MAX_CONNECTIONS, and keeps answering /healthz, /readyz and login.
func TestDescriptorExhaustionKeepsHealth(t *testing.T) {
	if os.Getenv(fdChildEnv) == "1" {
		runDescriptorChild(t)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDescriptorExhaustionKeepsHealth$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), fdChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	defer func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			require.NoError(t, err, "child: %s", stderr.String())
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("the child did not stop")
		}
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				addr <- a
			}
		}
	}()
	var base string
	select {
	case a := <-addr:
		base = a
	case <-time.After(time.Minute):
		t.Fatalf("the child did not start: %s", stderr.String())
	}

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	refused := false
	for i := 0; i < 2*childNoFile && !refused; i++ {
		// From several loopback addresses: these connections never
		// authenticate, and one address may hold only 64 of them.
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i/50))}
		d := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return (&net.Dialer{LocalAddr: src}).DialContext(ctx, network, addr)
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		nc, _, _, err := d.Dial(ctx, "ws://"+base+"/ws")
		cancel()
		switch {
		case err == nil:
			conns = append(conns, nc)
		case errors.Is(err, ws.StatusError(http.StatusServiceUnavailable)):
			refused = true
		default:
			t.Fatalf("connection %d: %v, not refused with 503: the descriptors ran out", i+1, err)
		}
	}
	require.True(t, refused, "no upgrade refused")
	require.Less(t, len(conns), childNoFile)
	t.Logf("%d connections, then 503", len(conns))

	hc := &http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/healthz", "/readyz"} {
		res, err := hc.Get("http://" + base + path)
		require.NoError(t, err, path)
		res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode, path)
	}
	res, err := hc.PostForm("http://"+base+"/api/v1/auth/login", map[string][]string{"email": {"nobody@example.test"}, "password": {"password1"}})
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusUnauthorized, res.StatusCode, "login answered: %s", body)
	// Still refused at once, and still not a descriptor kept per refusal.
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, _, _, err := ws.Dial(ctx, "ws://"+base+"/ws")
		cancel()
		require.ErrorIs(t, err, ws.StatusError(http.StatusServiceUnavailable))
	}
	res, err = hc.Get("http://" + base + "/healthz")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
}

// runDescriptorChild is the child: it lowers its open-files limit, serves
// until its stdin closes, and prints its address.
func runDescriptorChild(t *testing.T) {
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	lim.Cur = childNoFile
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	srv, err := server.Start(context.Background(), server.Config{
		Addr:              "127.0.0.1:0",
		DatabaseURL:       "sqlite:" + filepath.Join(t.TempDir(), "rewind.db"),
		AuthRatePerMinute: setting.Off,
	})
	require.NoError(t, err)
	fmt.Println("ADDR " + srv.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
}
