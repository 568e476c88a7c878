package server_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/persistence/postgres/pgtest"
	"github.com/rewind-chat/rewind/server"
	"github.com/rewind-chat/rewind/setting"
)

// Durability tests of protocol.md §2.3: an echo means stored, a nonce makes
// a send idempotent, and 5000 means "retry". They run the real server over
// loopback and a real database; nothing is mocked.

// noRateLimit turns off the per-session rate limit so that tests can send
// as fast as they like.
func noRateLimit(c *server.Config) { c.Gateway.Rate = setting.Off }

// waitUntil polls cond until it holds, failing t after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// storedChat is what the durability tests read from a chat frame.
type storedChat struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	UserID  string `json:"user_id"`
	Content string `json:"content"`
}

// asChat decodes a chat frame; false for any other frame.
func asChat(f client.Frame) (storedChat, bool) {
	var c storedChat
	if f.Type != "chat" || f.Decode(&c) != nil {
		return c, false
	}
	return c, true
}

func sendPayload(dm, content string) map[string]string {
	return map[string]string{"type": "send", "chat_id": dm, "content": content}
}

// sendAwait sends content with nonce and returns the first frame that
// carries that nonce; frames with other nonces (late answers to earlier
// requests) are skipped.
func sendAwait(ctx context.Context, c *client.Client, dm, content, nonce string) (client.Frame, error) {
	if err := c.Send("chat", sendPayload(dm, content), nonce); err != nil {
		return client.Frame{}, err
	}
	return awaitNonce(ctx, c, nonce)
}

// awaitNonce returns the next frame that carries nonce, skipping others.
func awaitNonce(ctx context.Context, c *client.Client, nonce string) (client.Frame, error) {
	for {
		f, err := c.Next(ctx)
		if err != nil || f.Nonce == nonce {
			return f, err
		}
	}
}

// sendUntilStored sends content with nonce until it is echoed, retrying
// (with the same nonce, as a client would) while the answer is 5000 or
// 5001. It returns the echo and how many attempts answered either.
func sendUntilStored(t *testing.T, c *client.Client, dm, content, nonce string, timeout time.Duration) (storedChat, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	failures := 0
	for {
		f, err := sendAwait(ctx, c, dm, content, nonce)
		require.NoError(t, err, "send %s: no echo within %v (%d answers 5000)", nonce, timeout, failures)
		if e, ok := f.AsError(); ok {
			require.Contains(t, []int{5000, 5001}, e.Code, "send %s: %s", nonce, e.Reason)
			failures++
			// Not for correctness: only spares the server a busy loop
			// while its pool reconnects.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		m, ok := asChat(f)
		require.True(t, ok, "send %s answered %s %s", nonce, f.Type, f.Payload)
		require.Equal(t, "send", m.Type)
		require.Equal(t, content, m.Content)
		return m, failures
	}
}

// fullHistory loads every message of the DM through the protocol, paging
// with the before cursor, and returns them oldest first.
func fullHistory(t *testing.T, c *client.Client, dm string) []storedChat {
	t.Helper()
	var all []storedChat
	before := ""
	for {
		p := map[string]any{"type": "chat", "load_id": dm, "count": 100}
		if before != "" {
			p["before"] = before
		}
		frames, err := c.Collect(ctxWait(t), "load", p, func(f client.Frame) bool { return f.Type == "load" })
		require.NoError(t, err)
		end := frames[len(frames)-1]
		_, isErr := end.AsError()
		require.False(t, isErr, "load answered %s", end.Payload)
		page := make([]storedChat, 0, len(frames)-1)
		for _, f := range frames[:len(frames)-1] {
			m, ok := asChat(f)
			require.True(t, ok, "history item %s %s", f.Type, f.Payload)
			page = append(page, m)
		}
		if len(page) == 0 {
			return all
		}
		all = append(page, all...)
		before = page[0].ID
	}
}

// requireUniqueIDs fails when a message id or content appears twice.
func requireUniqueIDs(t *testing.T, ms []storedChat) {
	t.Helper()
	ids, contents := map[string]bool{}, map[string]bool{}
	for _, m := range ms {
		require.False(t, ids[m.ID], "message id %s stored twice", m.ID)
		require.False(t, contents[m.Content], "content %q stored twice", m.Content)
		ids[m.ID], contents[m.Content] = true, true
	}
}

// metricValue scrapes /metrics and returns the value of the sample line
// that starts with series (name and labels exactly as exposed); 0 when absent.
func metricValue(t *testing.T, n *node, series string) float64 {
	t.Helper()
	a := n.get("/metrics", "")
	require.Equal(t, 200, a.Status)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(a.Body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// pgConnect opens a direct connection to the database at url (not through
// any proxy), closed when t ends.
func pgConnect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// tcpProxy forwards TCP connections to target. cut drops every forwarded
// connection at once, as a network failure or a database restart would,
// and refuses new ones until restore. stall holds every byte in both
// directions, the connections staying open (a database that hangs, a
// network path that black-holes), until resume.
type tcpProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex
	flowing *sync.Cond // broadcast when stalled or closed changes
	down    bool
	stalled bool
	closed  bool
	conns   map[net.Conn]struct{}
}

func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.flowing = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.down || p.closed
		if !refuse {
			p.wg.Add(1)
		}
		p.mu.Unlock()
		if refuse {
			// Accept and drop at once: the client sees its connection
			// fail during the startup handshake, quickly.
			abort(c)
			continue
		}
		go p.forward(c)
	}
}

func (p *tcpProxy) forward(c net.Conn) {
	defer p.wg.Done()
	u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		abort(c)
		return
	}
	p.mu.Lock()
	if p.down || p.closed {
		p.mu.Unlock()
		abort(c)
		abort(u)
		return
	}
	p.conns[c], p.conns[u] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pipe(u, c); done <- struct{}{} }()
	go func() { p.pipe(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

// pipe copies src to dst, holding what it read while the proxy is stalled.
func (p *tcpProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.stalled && !p.closed {
				p.flowing.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// stall holds the bytes of every connection until resume.
func (p *tcpProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = true
}

// resume lets the held bytes and new ones through.
func (p *tcpProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = false
	p.flowing.Broadcast()
}

// abort closes c with a reset rather than an orderly FIN, like a broken
// network path.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// cut resets every forwarded connection and refuses new ones.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		abort(c)
	}
}

// restore accepts and forwards new connections again.
func (p *tcpProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

func (p *tcpProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.flowing.Broadcast()
	p.mu.Unlock()
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}

// faultSend is one send of TestDatabaseFaultLosesNothingAcknowledged and
// how it was answered.
type faultSend struct {
	nonce, content string
	acked          bool      // echoed: stored, by protocol.md §2.3
	id             string    // the echoed message id
	failed         bool      // answered 5000 or 5001, or not at all
	unknown        bool      // answered 5001, or not at all: it may be stored
	answered       time.Time // for the log: how soon the server recovered
}

func TestDatabaseFaultLosesNothingAcknowledged(t *testing.T) {
	start := time.Now()
	schemaURL := pgtest.NewSchemaURL(t)
	u, err := url.Parse(schemaURL)
	require.NoError(t, err)
	proxy := startTCPProxy(t, u.Host)
	u.Host = proxy.addr()
	n := startNode(t, u.String(), noRateLimit)

	a, b := n.newAccount("steady"), n.newAccount("witness")
	ca, _ := n.connect(a, 2)
	cb, _ := n.connect(b, 2)
	befriend(t, ca, a, cb, b)
	dm := chatID(a, b)

	// The sender keeps a few sends in flight, so that the cut lands while
	// a transaction is open, and records every answer. Only its goroutine
	// reads ca until it ends.
	const (
		window        = 4
		maxSends      = 5000
		answerTimeout = 12 * time.Second // above the writer's 10 s transaction bound
	)
	var (
		sends    []*faultSend // written by the sender only; read after done
		acks     atomic.Int64
		failures atomic.Int64
		stop     atomic.Bool
		done     = make(chan error, 1)
	)
	go func() {
		byNonce := map[string]*faultSend{}
		var inflight []*faultSend
		for {
			for len(inflight) < window && !stop.Load() && len(sends) < maxSends {
				i := len(sends)
				s := &faultSend{nonce: fmt.Sprintf("fault-%d", i), content: fmt.Sprintf("fault message %d", i)}
				if err := ca.Send("chat", sendPayload(dm, s.content), s.nonce); err != nil {
					done <- err
					return
				}
				sends = append(sends, s)
				byNonce[s.nonce] = s
				inflight = append(inflight, s)
			}
			if len(inflight) == 0 {
				done <- nil
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
			f, err := ca.Next(ctx)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				// No answer in time: counted as failed; it may or may
				// not be stored, like a 5000.
				for _, s := range inflight {
					s.failed, s.unknown = true, true
				}
				done <- nil
				return
			}
			if err != nil {
				done <- err
				return
			}
			s := byNonce[f.Nonce]
			if s == nil {
				done <- fmt.Errorf("frame without a pending nonce: %s %s %s", f.Type, f.Nonce, f.Payload)
				return
			}
			if inflight[0] != s {
				done <- fmt.Errorf("answer to %s came before the answer to %s", s.nonce, inflight[0].nonce)
				return
			}
			inflight = inflight[1:]
			s.answered = time.Now()
			if e, ok := f.AsError(); ok {
				if e.Code != 5000 && e.Code != 5001 {
					done <- fmt.Errorf("send %s answered %d %s, want an echo, 5000 or 5001", s.nonce, e.Code, e.Reason)
					return
				}
				s.failed, s.unknown = true, e.Code == 5001
				failures.Add(1)
				continue
			}
			m, ok := asChat(f)
			if !ok || m.Type != "send" || m.Content != s.content || m.ID == "" {
				done <- fmt.Errorf("send %s answered %s %s", s.nonce, f.Type, f.Payload)
				return
			}
			s.acked, s.id = true, m.ID
			acks.Add(1)
		}
	}()

	// Cut after some acknowledged traffic, keep the database away until
	// sends have visibly failed, then bring it back and let traffic run
	// until the server acknowledges again by itself.
	// Every wait is bounded so that even a failing run ends well within
	// a minute.
	waitUntil(t, 5*time.Second, "acknowledged sends before the cut", func() bool { return acks.Load() >= 20 })
	proxy.cut()
	cutAt := time.Now()
	// The outage also lasts a while, so that the pool's reconnects fail
	// too; the duration is not what the assertions rely on.
	waitUntil(t, 5*time.Second, "sends failing while the database is away", func() bool {
		return failures.Load() >= 8 && time.Since(cutAt) >= 300*time.Millisecond
	})
	proxy.restore()
	restoredAt := time.Now()
	acksAtRestore := acks.Load()
	waitUntil(t, 10*time.Second, "acknowledged sends after the restore", func() bool { return acks.Load() >= acksAtRestore+10 })
	stop.Store(true)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(answerTimeout + 2*time.Second):
		t.Fatal("the sender did not finish")
	}

	// (c) A new send succeeds after the restore.
	fresh, freshFailures := sendUntilStored(t, ca, dm, "after the restore", "fresh", 10*time.Second)

	// (a), (b): read the database directly, bypassing the proxy.
	db := pgConnect(t, schemaURL)
	type row struct{ id, nonce string }
	stored := func() map[string][]row {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		rows, err := db.Query(ctx, `SELECT id, coalesce(nonce, ''), content FROM messages WHERE author_id = $1`, a.ID)
		require.NoError(t, err)
		byContent := map[string][]row{}
		var (
			id             int64
			nonce, content string
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &nonce, &content}, func() error {
			byContent[content] = append(byContent[content], row{strconv.FormatInt(id, 10), nonce})
			return nil
		})
		require.NoError(t, err)
		return byContent
	}
	before := stored()
	var acked, failed, failedStored int
	var firstAck time.Time // the first acknowledgement after the restore
	for _, s := range sends {
		if s.acked && s.answered.After(restoredAt) && firstAck.IsZero() {
			firstAck = s.answered
		}
		rs := before[s.content]
		switch {
		case s.acked:
			acked++
			require.Len(t, rs, 1, "acknowledged %s must be stored exactly once", s.nonce)
			require.Equal(t, row{s.id, s.nonce}, rs[0], "acknowledged %s stored as echoed", s.nonce)
		case s.failed:
			failed++
			require.LessOrEqual(t, len(rs), 1, "failed %s stored more than once", s.nonce)
			if len(rs) == 1 {
				failedStored++
				require.Equal(t, s.nonce, rs[0].nonce)
				require.True(t, s.unknown, "%s was answered 5000 (nothing applied) but is stored", s.nonce)
			}
		default:
			t.Fatalf("send %s has no outcome", s.nonce)
		}
	}
	require.Equal(t, []row{{fresh.ID, "fresh"}}, before["after the restore"])
	require.Len(t, before, acked+failedStored+1, "nothing stored that was not sent")
	require.Positive(t, failed, "the cut must have failed some sends")

	// (d) Retrying every failed send with its nonce stores each exactly
	// once; one that was stored already answers the stored message.
	for _, s := range sends {
		if !s.failed {
			continue
		}
		m, _ := sendUntilStored(t, ca, dm, s.content, s.nonce, 10*time.Second)
		if rs := before[s.content]; len(rs) == 1 {
			require.Equal(t, rs[0].id, m.ID, "retry of stored %s must answer the stored message", s.nonce)
		}
	}
	after := stored()
	require.Len(t, after, len(sends)+1)
	for _, s := range sends {
		require.Len(t, after[s.content], 1, "%s must be stored exactly once after the retry", s.nonce)
	}

	t.Logf("%d sends: %d acknowledged, %d failed (%d of them stored anyway); down %v, first acknowledgement %v after the restore; fresh send needed %d retries; total %v",
		len(sends), acked, failed, failedStored, restoredAt.Sub(cutAt).Round(time.Millisecond),
		firstAck.Sub(restoredAt).Round(time.Millisecond), freshFailures, time.Since(start).Round(time.Millisecond))
}

func TestRestartKeepsAcknowledgedMessages(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, noRateLimit)
		a, b := n.newAccount("keeper"), n.newAccount("kept")
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		befriend(t, ca, a, cb, b)
		dm := chatID(a, b)

		type sent struct{ nonce, content, id string }
		const acked, tail = 20, 10
		var all []*sent
		for i := range acked {
			s := &sent{nonce: fmt.Sprintf("keep-%d", i), content: fmt.Sprintf("kept %d", i)}
			f, err := sendAwait(ctxWait(t), ca, dm, s.content, s.nonce)
			require.NoError(t, err)
			m, ok := asChat(f)
			require.True(t, ok, "send %s answered %s %s", s.nonce, f.Type, f.Payload)
			s.id = m.ID
			all = append(all, s)
		}
		// A tail still in flight when the node stops: whatever of it was
		// echoed before the close must survive the restart too.
		const framesIn = `rewind_ws_frames_total{direction="in"}`
		frames0 := metricValue(t, n, framesIn)
		for i := range tail {
			s := &sent{nonce: fmt.Sprintf("tail-%d", i), content: fmt.Sprintf("tail %d", i)}
			require.NoError(t, ca.Send("chat", sendPayload(dm, s.content), s.nonce))
			all = append(all, s)
		}
		waitUntil(t, wait, "the server reading the tail", func() bool { return metricValue(t, n, framesIn) >= frames0+tail })
		n.restart()
		byNonce := map[string]*sent{}
		for _, s := range all {
			byNonce[s.nonce] = s
		}
		for {
			f, err := ca.Next(ctxWait(t))
			if err != nil {
				var ce *client.CloseError
				require.ErrorAs(t, err, &ce, "the old connection must end with a close frame")
				break
			}
			if m, ok := asChat(f); ok && byNonce[f.Nonce] != nil {
				byNonce[f.Nonce].id = m.ID
			}
		}
		echoed := 0
		for _, s := range all {
			if s.id != "" {
				echoed++
			}
		}

		ca, _ = n.connect(a, 2)
		cb, _ = n.connect(b, 2)
		hist := fullHistory(t, ca, dm)
		requireUniqueIDs(t, hist)
		// History is the sends in send order: every echoed one, and
		// possibly tail sends that were stored but not echoed.
		at := map[string]int{}
		for i, s := range all {
			at[s.content] = i
		}
		last := -1
		inHistory := map[string]string{} // content → id
		for _, m := range hist {
			i, ok := at[m.Content]
			require.True(t, ok, "unexpected message %q", m.Content)
			require.Greater(t, i, last, "history out of send order at %q", m.Content)
			last = i
			if id := all[i].id; id != "" {
				require.Equal(t, id, m.ID, "%q stored under another id than echoed", m.Content)
			}
			inHistory[m.Content] = m.ID
		}
		for _, s := range all {
			if s.id != "" {
				require.Contains(t, inHistory, s.content, "echoed %s lost by the restart", s.nonce)
			}
		}

		// A retry after the restart answers the stored message and
		// tells nobody.
		retry := all[5]
		f, err := sendAwait(ctxWait(t), ca, dm, retry.content, retry.nonce)
		require.NoError(t, err)
		m, ok := asChat(f)
		require.True(t, ok, "retry answered %s %s", f.Type, f.Payload)
		require.Equal(t, retry.id, m.ID)
		require.Equal(t, retry.content, m.Content)
		require.NoError(t, cb.Send("heartbeat", "after retry", ""))
		require.Equal(t, "heartbeat", next(t, cb).Type, "the retry must not push an event")
		require.Len(t, fullHistory(t, ca, dm), len(hist))

		// Retrying the tail: stored ones answer their message, the others
		// are stored now, each once.
		want := append([]storedChat(nil), hist...)
		for _, s := range all[acked:] {
			m, _ := sendUntilStored(t, ca, dm, s.content, s.nonce, wait)
			if id, ok := inHistory[s.content]; ok {
				require.Equal(t, id, m.ID)
			} else {
				want = append(want, m)
			}
		}
		final := fullHistory(t, ca, dm)
		requireUniqueIDs(t, final)
		require.Len(t, final, acked+tail)
		for i := range final {
			require.Equal(t, want[i].ID, final[i].ID)
		}
		t.Logf("%d of %d tail sends echoed before the restart, %d stored", echoed-acked, tail, len(hist)-acked)
	})
}

// observed is what one session saw of the DM in TestConcurrentSendersIntoOneDM.
type observed struct {
	ids    []string // chat ids in arrival order, echoes and events
	echoes int
	err    error
}

func TestConcurrentSendersIntoOneDM(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		start := time.Now()
		n := startNode(t, db, noRateLimit)
		a, b := n.newAccount("chorus"), n.newAccount("choir")
		a1, _ := n.connect(a, 2)
		b1, _ := n.connect(b, 2)
		befriend(t, a1, a, b1, b)
		dm := chatID(a, b)
		// The other devices connect after befriending, so that every
		// session's stream starts clean.
		a2, _ := n.connect(a, 2)
		a3, _ := n.connect(a, 2)
		b2, _ := n.connect(b, 1)
		b3, _ := n.connect(b, 2)
		sessions := []*client.Client{a1, a2, a3, b1, b2, b3}
		authors := []account{a, a, a, b, b, b}

		const perSession = 30
		total := perSession * len(sessions)
		seen := make([]observed, len(sessions))
		var wg sync.WaitGroup
		ready := make(chan struct{})
		for j, c := range sessions {
			wg.Go(func() {
				<-ready
				seen[j] = observe(c, j, authors[j].IDString(), dm, perSession, total)
			})
		}
		close(ready)
		wg.Wait()
		for j, o := range seen {
			require.NoError(t, o.err, "session %d", j)
			require.Equal(t, perSession, o.echoes, "session %d: every send echoed", j)
		}

		hist := fullHistory(t, a1, dm)
		require.Len(t, hist, total, "every message stored")
		requireUniqueIDs(t, hist)
		pos := map[string]int{}
		for i, m := range hist {
			pos[m.ID] = i
		}
		// Each session sees the DM in its stored order. Echoes used to go
		// straight to the session while the events of the author's other
		// sessions went through the user actor, so an echo could overtake
		// an earlier message's event.
		for j, o := range seen {
			require.Len(t, o.ids, total, "session %d sees every message", j)
			last := -1
			for k, id := range o.ids {
				p, ok := pos[id]
				require.True(t, ok, "session %d saw %s, which is not in history", j, id)
				require.Greater(t, p, last, "session %d: message %d (%s) arrived out of history order", j, k, id)
				last = p
			}
		}
		t.Logf("%d sessions × %d sends, all seen in history order, in %v", len(sessions), perSession, time.Since(start).Round(time.Millisecond))
	})
}

// observe sends k messages on c (all at once, nonces s<j>-<i>) and reads
// until it has seen total distinct messages. It runs on its own goroutine,
// so it reports problems instead of failing the test.
func observe(c *client.Client, j int, me, dm string, k, total int) observed {
	var o observed
	for i := range k {
		label := fmt.Sprintf("s%d-%d", j, i)
		if o.err = c.Send("chat", sendPayload(dm, label), label); o.err != nil {
			return o
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait)
	defer cancel()
	ids := map[string]bool{}
	prefix := fmt.Sprintf("s%d-", j)
	for len(ids) < total {
		f, err := c.Next(ctx)
		if err != nil {
			o.err = fmt.Errorf("after %d of %d messages: %w", len(ids), total, err)
			return o
		}
		if e, ok := f.AsError(); ok {
			o.err = fmt.Errorf("error %d %s (nonce %q)", e.Code, e.Reason, f.Nonce)
			return o
		}
		m, ok := asChat(f)
		if !ok || m.Type != "send" {
			o.err = fmt.Errorf("unexpected frame %s %s", f.Type, f.Payload)
			return o
		}
		if ids[m.ID] {
			o.err = fmt.Errorf("message %s (%q) arrived twice", m.ID, m.Content)
			return o
		}
		ids[m.ID] = true
		o.ids = append(o.ids, m.ID)
		if f.Nonce != "" {
			if f.Nonce != m.Content || !strings.HasPrefix(f.Nonce, prefix) || m.UserID != me {
				o.err = fmt.Errorf("echo with nonce %q carries %q by %s", f.Nonce, m.Content, m.UserID)
				return o
			}
			o.echoes++
		}
	}
	return o
}

func TestWriterBatchesAcrossRooms(t *testing.T) {
	schemaURL := pgtest.NewSchemaURL(t)
	n := startNode(t, schemaURL, noRateLimit)
	const pairs = 50
	senders := make([]*client.Client, pairs)
	dms := make([]string, pairs)
	for i := range pairs {
		a, b := n.newAccount(fmt.Sprintf("batch%da", i)), n.newAccount(fmt.Sprintf("batch%db", i))
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		befriend(t, ca, a, cb, b)
		senders[i], dms[i] = ca, chatID(a, b)
		// Warm the room up (friendship known, room row created), so that
		// a later send reaches the writer without touching the database.
		_, ok := asChat(call(t, ca, "chat", sendPayload(dms[i], "warm up")))
		require.True(t, ok)
	}

	const (
		count  = "rewind_write_batch_size_count"
		sum    = "rewind_write_batch_size_sum"
		frames = `rewind_ws_frames_total{direction="in"}`
	)
	count0, sum0, frames0 := metricValue(t, n, count), metricValue(t, n, sum), metricValue(t, n, frames)

	// Hold a lock that blocks inserts into messages: the writer's next
	// transaction waits on it, and every write handed over meanwhile has
	// to queue behind it. Without the lock, whether two rooms share a
	// transaction would depend on timing.
	db := pgConnect(t, schemaURL)
	ctx := ctxWait(t)
	tx, err := db.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(context.Background())
	_, err = tx.Exec(ctx, `LOCK TABLE messages IN SHARE MODE`)
	require.NoError(t, err)

	// Every room sends before any answer is read.
	for i, c := range senders {
		require.NoError(t, c.Send("chat", sendPayload(dms[i], "together"), "together"))
	}
	waitUntil(t, 5*time.Second, "the writer blocked on the lock", func() bool {
		var waiting int
		require.NoError(t, tx.QueryRow(ctx,
			`SELECT count(*) FROM pg_locks WHERE relation = 'messages'::regclass AND NOT granted`).Scan(&waiting))
		return waiting > 0
	})
	// All sends were read by the gateway; from there a warm room hands
	// its write to the writer with no I/O, long before the lock is gone
	// and the blocked transaction commits.
	waitUntil(t, 5*time.Second, "the gateway reading every send", func() bool {
		return metricValue(t, n, frames) >= frames0+pairs
	})
	require.NoError(t, tx.Commit(ctx))

	for i, c := range senders {
		f, err := awaitNonce(ctxWait(t), c, "together")
		require.NoError(t, err)
		m, ok := asChat(f)
		require.True(t, ok, "room %d answered %s %s", i, f.Type, f.Payload)
		require.Equal(t, "together", m.Content)
	}

	transactions, writes := metricValue(t, n, count)-count0, metricValue(t, n, sum)-sum0
	require.Equal(t, float64(pairs), writes, "every write observed once")
	require.Less(t, transactions, float64(pairs), "writes of different rooms must share transactions")
	t.Logf("%d writes of %d rooms in %v transactions (%.1f writes per transaction)", int(writes), pairs, transactions, writes/transactions)
}
