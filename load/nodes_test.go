package load

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/protocol"
)

func TestHomeNode(t *testing.T) {
	homes := func(sessions, pairs, n int, cross bool) []int {
		out := make([]int, sessions)
		for i := range out {
			out[i] = homeNode(i, pairs, n, cross)
		}
		return out
	}
	// One node: everything on it.
	require.Equal(t, []int{0, 0, 0, 0}, homes(4, 2, 1, false))
	require.Equal(t, []int{0, 0, 0, 0}, homes(4, 2, 1, true))
	// Pairs within a node, round robin by pair; the sessions after the
	// pairs by their own index.
	require.Equal(t, []int{0, 0, 1, 1, 0, 0, 0, 1}, homes(8, 3, 2, false))
	require.Equal(t, []int{0, 0, 1, 1, 2, 2, 0, 0}, homes(8, 4, 3, false))
	// --cross-node: side A on p mod N, side B on (p+1) mod N.
	require.Equal(t, []int{0, 1, 1, 0, 0, 1, 0, 1}, homes(8, 3, 2, true))
	require.Equal(t, []int{0, 1, 1, 2, 2, 0, 0, 1}, homes(8, 4, 3, true))
	// No pairs (idle, churn, storm without --pairs): i mod N.
	require.Equal(t, []int{0, 1, 2, 0, 1}, homes(5, 0, 3, true))

	for n := 2; n <= 5; n++ {
		count := make([]int, n)
		for p := range 100 {
			a, b := homeNode(2*p, 100, n, true), homeNode(2*p+1, 100, n, true)
			require.NotEqual(t, a, b, "cross pair %d on %d nodes", p, n)
			require.Equal(t, homeNode(2*p, 100, n, false), homeNode(2*p+1, 100, n, false), "pair %d within a node", p)
			count[a]++
			count[b]++
		}
		for i := range count {
			require.InDelta(t, 200/n, count[i], 1, "node %d of %d: %v", i, n, count)
		}
	}
}

func TestReconnectNode(t *testing.T) {
	seq := func(lost, i, n int) []int {
		out := make([]int, n+1)
		for a := range out {
			out[a] = reconnectNode(lost, i, a+1, n)
		}
		return out
	}
	require.Equal(t, []int{0, 0}, seq(0, 7, 1))
	require.Equal(t, []int{0, 1, 0}, seq(1, 0, 2), "the other node, then the lost one")
	require.Equal(t, []int{1, 2, 0, 1}, seq(0, 0, 3))
	require.Equal(t, []int{2, 1, 0, 2}, seq(0, 1, 3), "another session starts at another node")
	// The sessions of one lost node spread over the others.
	count := map[int]int{}
	for i := range 300 {
		count[reconnectNode(2, i, 1, 4)]++
	}
	require.Equal(t, map[int]int{0: 100, 1: 100, 3: 100}, count)
}

func TestParseServers(t *testing.T) {
	nodes, err := parseServers("http://127.0.0.1:8081, ws://127.0.0.1:8082/ws,127.0.0.1:8083,https://localhost:8443/,http://127.0.0.1:8081")
	require.NoError(t, err)
	require.Equal(t, []Node{
		{WS: "ws://127.0.0.1:8081", HTTP: "http://127.0.0.1:8081"},
		{WS: "ws://127.0.0.1:8082", HTTP: "http://127.0.0.1:8082"},
		{WS: "ws://127.0.0.1:8083", HTTP: "http://127.0.0.1:8083"},
		{WS: "wss://localhost:8443", HTTP: "https://localhost:8443"},
		{WS: "ws://127.0.0.1:8081", HTTP: "http://127.0.0.1:8081"}, // listed twice: two "nodes"
	}, nodes)
	for _, bad := range []string{"", " , ", "ftp://127.0.0.1:1", "http://127.0.0.1:1/api", "http://"} {
		_, err := parseServers(bad)
		require.Error(t, err, bad)
	}

	base := func() *Config {
		return &Config{Scenario: "dm", URL: "ws://127.0.0.1:8080", HTTP: "http://127.0.0.1:8080", Pairs: 3, Rate: 10,
			Duration: time.Minute, Heartbeat: 40 * time.Second, DialTimeout: time.Second, ConnectTimeout: time.Second,
			DatabaseURL: "sqlite:x", Tokens: "mint", WSVersion: 2, SourceBase: "127.0.0.2"}
	}
	c := base()
	require.NoError(t, c.check())
	require.Equal(t, []Node{{WS: "ws://127.0.0.1:8080", HTTP: "http://127.0.0.1:8080"}}, c.nodes, "--url and --http: one node")
	require.Equal(t, []string{"ws://127.0.0.1:8080/ws?v=2"}, c.gatewayURLs())

	c = base()
	c.Servers, c.CrossNode = "http://127.0.0.1:8081,http://127.0.0.1:8082", true
	require.NoError(t, c.check())
	require.Equal(t, []string{"ws://127.0.0.1:8081/ws?v=2", "ws://127.0.0.1:8082/ws?v=2"}, c.gatewayURLs())
	require.Equal(t, "http://127.0.0.1:8081", c.HTTP, "server figures from the first node")
	require.Equal(t, "http://127.0.0.1:8082", c.nodeHTTP(1), "side B of pair 0 logs in at its node")
	require.Equal(t, "http://127.0.0.1:8081", c.nodeHTTP(3))
	require.False(t, c.ledger())
	c = base()
	c.Servers, c.Reconnect, c.reconnectSet = "127.0.0.1:8081,127.0.0.1:8081", true, true
	require.NoError(t, c.check())
	require.True(t, c.ledger())

	for name, edit := range map[string]func(c *Config){
		"not loopback":         func(c *Config) { c.Servers = "http://127.0.0.1:8081,http://10.0.0.2:8082" },
		"--url with --server":  func(c *Config) { c.Servers, c.urlSet = "http://127.0.0.1:8081", true },
		"--http with --server": func(c *Config) { c.Servers, c.httpSet = "http://127.0.0.1:8081", true },
		"cross, one node":      func(c *Config) { c.Servers, c.CrossNode = "http://127.0.0.1:8081", true },
		"cross, no --server":   func(c *Config) { c.CrossNode = true },
		"centrifugo":           func(c *Config) { c.Target, c.Servers = "centrifugo", "http://127.0.0.1:8081" },
	} {
		c := base()
		edit(c)
		require.Error(t, c.check(), name)
	}
}

// testPair is a worker of a dm run over nodes URLs with one pair: a
// (user 100) on node na, b (user 200) on node nb.
func testPair(t *testing.T, nodes, na, nb int, ledger bool) (*worker, *session, *session) {
	t.Helper()
	urls := make([]string, nodes)
	for i := range urls {
		urls[i] = "ws://127.0.0.1:1/ws"
	}
	w := newWorker(workerSpec{
		Scenario: "dm", URLs: urls, Homes: []int{na, nb}, Accounts: []Account{{Name: "a"}, {Name: "b"}},
		Pairs: 1, Heartbeat: time.Second, Ledger: ledger,
	}, io.Discard)
	a, b := w.newSession(0, 0, false), w.newSession(1, 1, false)
	a.nodeC().add(nSessions, 1)
	b.nodeC().add(nSessions, 1)
	a.peer, b.peer = b, a
	a.id.Store(100)
	b.id.Store(200)
	if ledger {
		a.ledger, b.ledger = newLedger(), newLedger()
	}
	w.sessions = []*session{a, b}
	return w, a, b
}

// pipe gives s a connection; the payloads of the frames s writes arrive on
// the returned channel.
func pipe(t *testing.T, s *session) <-chan []byte {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	s.mu.Lock()
	s.conn, s.gen = client, 1
	s.mu.Unlock()
	ch := make(chan []byte, 16)
	go func() {
		defer close(ch)
		for {
			p, _, err := wsutil.ReadClientData(server)
			if err != nil {
				return
			}
			ch <- p
		}
	}()
	return ch
}

func next(t *testing.T, ch <-chan []byte) []byte {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no frame written")
		return nil
	}
}

// chatFrame is a chat frame of the DM of users 100 and 200, as the
// server's encoder writes it.
func chatFrame(kind string, id, author int64, content, nonce string) []byte {
	return protocol.AppendChat(nil, kind, &protocol.Chat{ID: id, AuthorID: author, ChatID: 100 ^ 200, Content: content, CreatedAt: time.Now()}, time.UTC, nonce)
}

func count(w *worker, name string) int64 {
	w.hists[name].mu.Lock()
	defer w.hists[name].mu.Unlock()
	return w.hists[name].h.TotalCount()
}

// A send says in its stamp whether its two sides were on different nodes;
// the echo and the delivery are recorded same-node or cross-node by it,
// each delivery also by warm-up.
func TestSameCrossSplit(t *testing.T) {
	w, a, b := testPair(t, 2, 0, 1, false)
	out := pipe(t, a)
	fb := newFrameBuf(128)
	require.True(t, a.send(fb, kindDM))
	first := next(t, out)
	b.node.Store(0) // b moved to a's node
	require.True(t, a.send(fb, kindDM))
	second := next(t, out)
	require.Contains(t, string(first), `"content":"c1.`, "%s", first)
	require.Contains(t, string(second), `"content":"2.`, "%s", second)
	require.Contains(t, string(second), `"nonce":"2.`, "%s", second)
	require.EqualValues(t, 2, w.c.get(cSent))
	require.EqualValues(t, 1, w.c.get(cSentCross))
	require.EqualValues(t, 2, w.nodes[0][nSent].Load())
	b.node.Store(1)

	// Deliveries to b (node 1), sent in the warm-up (stamped at 0) or
	// after it.
	w.warmEnd.Store(1)
	stamp := func(cross, warm bool, seq uint64) string {
		nanos := w.now()
		if warm {
			nanos = 0
		}
		return string(appendKindStamp(nil, kindDM, cross, seq, nanos))
	}
	seq := uint64(0)
	deliver := func(cross, warm bool) {
		seq++
		b.handle(chatFrame("send", int64(seq), 100, stamp(cross, warm, seq), ""))
	}
	deliver(true, true)
	for range 3 {
		deliver(true, false)
	}
	deliver(false, false)
	deliver(false, false)
	// Echoes to a (node 0).
	for _, cross := range []bool{true, true, false} {
		seq++
		s := stamp(cross, false, seq)
		a.handle(chatFrame("send", int64(seq), 100, s, s))
	}

	want := map[string]int64{
		hDelivery: 6, hDeliveryWarm: 1, hDeliveryAfter: 5,
		hDeliveryCross: 4, hDeliveryCrossWarm: 1, hDeliveryCrossAfter: 3,
		hDeliverySame: 2, hDeliverySameWarm: 0, hDeliverySameAfter: 2,
		hAck: 3, hAckCross: 2, hAckSame: 1,
	}
	for name, n := range want {
		require.Equal(t, n, count(w, name), name)
	}
	require.EqualValues(t, 6, w.c.get(cDelivered))
	require.EqualValues(t, 6, w.nodes[1][nDelivered].Load())
	require.EqualValues(t, 3, w.nodes[0][nAcked].Load())

	// The parent merges them: the split, the per-node counts and which
	// closes were on a node that stayed up.
	w.nodes[0].add(nUnexpected, 1)
	w.nodes[1].add(nUnexpected, 4)
	rep := w.result()
	cfg := &Config{Scenario: "dm", Target: "rewind", WSVersion: 1, Pairs: 1, Sessions: 2,
		nodes: []Node{{WS: "ws://127.0.0.1:8081", HTTP: "http://127.0.0.1:8081"}, {WS: "ws://127.0.0.1:8082", HTTP: "http://127.0.0.1:8082"}}}
	r := &runner{cfg: cfg, res: newResult(cfg, []string{"127.0.0.2"}), procs: []*proc{{result: &rep}},
		smp:   newSampler(0, "http://127.0.0.1:1/metrics", time.Now(), func() int64 { return 0 }, nil),
		watch: newNodeWatch(cfg.nodes)}
	now := time.Now()
	r.watch.record(0, nil, now)
	r.watch.record(0, errors.New("timeout"), now) // one failure: still up
	r.watch.record(0, nil, now)
	r.watch.record(1, nil, now)
	r.watch.record(1, errors.New("connection refused"), now)
	r.watch.record(1, errors.New("connection refused"), now.Add(time.Second))
	r.watch.record(1, context.Canceled, now) // the end of the watch: not counted
	require.NoError(t, r.finish())
	res := r.res
	for name, n := range want {
		require.Equal(t, n, res.Latency[name].Count, name)
	}
	require.Equal(t, res.Latency[hDelivery].Count, res.Latency[hDeliverySame].Count+res.Latency[hDeliveryCross].Count)
	require.Equal(t, res.Latency[hDelivery].Max, max(res.Latency[hDeliverySame].Max, res.Latency[hDeliveryCross].Max))
	require.EqualValues(t, 1, res.Messages.SentCrossNode)
	require.Nil(t, res.Reconnect, "no ledger without --reconnect")
	require.Len(t, res.Nodes, 2)
	n1, n2 := res.Nodes[0], res.Nodes[1]
	require.Equal(t, NodeResult{Index: 1, Gateway: "ws://127.0.0.1:8081/ws", HTTP: "http://127.0.0.1:8081",
		Sessions: 1, Sent: 2, Acked: 3, UnexpectedCloses: 1, Probes: 3, ProbeFailures: 1}, n1)
	require.True(t, n2.WentAway)
	require.Equal(t, now.Add(time.Second), n2.WentAwayAt)
	require.Equal(t, 3, n2.Probes)
	require.EqualValues(t, 6, n2.Delivered)
	require.EqualValues(t, 1, *res.UnexpectedOnSurviving)
	require.EqualValues(t, 4, *res.UnexpectedOnLost)

	var summary bytes.Buffer
	printSummary(&summary, res)
	for _, line := range []string{"on 2 nodes", "1 sent while both sides were on one node, 1 across nodes",
		"1 on surviving nodes, 4 on nodes that went away", "WENT AWAY at", "send→delivery cross-node", "same node after warm-up"} {
		require.Contains(t, summary.String(), line)
	}
}

// On one node nothing is split.
func TestOneNodeNoSplit(t *testing.T) {
	w, a, b := testPair(t, 1, 0, 0, false)
	s := string(appendKindStamp(nil, kindDM, false, 1, w.now()))
	b.handle(chatFrame("send", 1, 100, s, ""))
	a.handle(chatFrame("send", 1, 100, s, s))
	require.EqualValues(t, 1, count(w, hDelivery))
	require.EqualValues(t, 1, count(w, hAck))
	require.Zero(t, count(w, hDeliverySame))
	require.Zero(t, count(w, hAckSame))
}
