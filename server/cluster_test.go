package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/cluster"
	"github.com/rewind-chat/rewind/cluster/etcdtest"
	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres/pgtest"
	"github.com/rewind-chat/rewind/server"
)

// The cluster tests start three nodes in this process, each server.Start
// with its own actor system, on loopback ports, node ids 1..3, sharing one
// etcd and one PostgreSQL database (a fresh schema per test). SQLite
// cannot be shared by nodes, so these tests run on PostgreSQL only. They
// run protoactor's cluster, which has data races of its own, so each runs
// without the race detector (etcdtest.WithoutRace).

// testReattach is the periodic re-attach interval of the cluster tests'
// nodes: longer than any test waits, so that a test passes only when the
// re-attach on a move (a member leaves, a grain stops) made it true.
const testReattach = time.Minute

// moveBound is how soon after a member's leave a user grain placed anew
// knows the sessions of the other nodes (actors/doc.go).
const moveBound = time.Second

// clusterConfig makes a node of the cluster at etcd named name.
func clusterConfig(etcd, name string, id int64, edit ...func(*server.Config)) func(*server.Config) {
	return func(c *server.Config) {
		c.NodeID = id
		c.Cluster = server.ClusterConfig{
			Etcd: []string{etcd}, Name: name, Addr: "127.0.0.1:0", Reattach: testReattach,
		}
		for _, e := range edit {
			e(c)
		}
	}
}

// crossPair is two friends: the sender on node 1, the receiver on node 2.
type crossPair struct {
	from, to   account
	cFrom, cTo *client.Client
}

// crossPairs makes n cross-node pairs, their names prefix+"s"/"r" and the
// pair's index.
func crossPairs(t *testing.T, nodes []*node, n int, prefix string) []crossPair {
	t.Helper()
	ps := make([]crossPair, n)
	for i := range ps {
		p := &ps[i]
		p.from, p.to = nodes[0].newAccount(fmt.Sprintf("%ss%d", prefix, i)), nodes[0].newAccount(fmt.Sprintf("%sr%d", prefix, i))
		p.cFrom, _ = nodes[0].connect(p.from, 2)
		p.cTo, _ = nodes[1].connect(p.to, 2)
		attached(t, p.cFrom)
		attached(t, p.cTo)
		befriend(t, p.cFrom, p.from, p.cTo, p.to)
	}
	return ps
}

// attached returns once c's user grain knows c's session. The attach
// that auth sends it is not waited for, so an event sent to the user from
// another node in the first milliseconds after auth can reach a grain
// that activates without the session and be missed (protocol.md §2.8);
// a request of the session's own to its grain comes after the attach on
// the same route, so its answer shows the grain has it.
func attached(t *testing.T, c *client.Client) {
	t.Helper()
	require.Equal(t, "user", call(t, c, "user", map[string]any{"profile": nil}).Type)
}

// startCluster starts n nodes over one database and etcd, and waits until
// each is joined and sees all. The first starts alone (it makes the token
// secret the others read), the others at once; they stop together.
func startCluster(t *testing.T, n int, edit ...func(*server.Config)) []*node {
	t.Helper()
	e := etcdtest.Start(t)
	db := pgtest.NewSchemaURL(t)
	name := fmt.Sprintf("t%d", time.Now().UnixNano())
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = newNode(t, db, clusterConfig(e.Endpoint, name, int64(i+1), edit...))
	}
	start := time.Now()
	errs := make([]error, n)
	run := func(i int) {
		srv, err := server.Start(context.Background(), nodes[i].cfg)
		errs[i] = err
		if err == nil {
			nodes[i].srv, nodes[i].base = srv, "http://"+srv.Addr()
		}
	}
	run(0)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Go(func() { run(i) })
	}
	wg.Wait()
	t.Cleanup(func() {
		stopAll(t, nodes)
		if t.Failed() {
			for i, n := range nodes {
				t.Logf("node %d log:\n%s", i+1, n.log.String())
			}
		}
	})
	require.NoError(t, errors.Join(errs...))
	waitUntil(t, 10*time.Second, "every node joined and seeing all", func() bool {
		for _, nd := range nodes {
			if nd.srv.Node() == nil || !nd.srv.Node().Joined() || nd.srv.Node().Members() != n {
				return false
			}
		}
		return true
	})
	t.Logf("%d nodes joined in %v", n, time.Since(start).Round(time.Millisecond))
	return nodes
}

// stopAll shuts the running nodes down at once (each leave takes 2 s).
func stopAll(t *testing.T, nodes []*node) {
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		if n == nil || n.srv == nil {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			errs[i] = n.srv.Shutdown(ctx)
			n.srv = nil
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
}

// waited is waitUntil that says how long it waited.
func waited(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	waitUntil(t, timeout, what, cond)
	return time.Since(start)
}

// clusterFriendEvent is a mutual_users event's payload.
type clusterFriendEvent struct {
	Type   string `json:"type"`
	Origin string `json:"origin"`
	User   struct {
		ID string `json:"id"`
	} `json:"user"`
}

func nextFriendEvent(t *testing.T, c *client.Client) clusterFriendEvent {
	t.Helper()
	f := next(t, c)
	require.Equal(t, "mutual_users", f.Type, string(f.Payload))
	var e clusterFriendEvent
	require.NoError(t, json.Unmarshal(f.Payload, &e))
	return e
}

// sendEcho sends content from c into chat and returns the echo. Its
// nonce is unique in the test: a user's devices each number their own
// nonces from 1, and a nonce is the idempotency key of its author in a
// chat (protocol.md §2.3).
func sendEcho(t *testing.T, c *client.Client, chat, content string) chatPayload {
	t.Helper()
	nonce := fmt.Sprintf("echo-%d", nonceSeq.Add(1))
	require.NoError(t, c.Send("chat", map[string]string{"type": "send", "chat_id": chat, "content": content}, nonce))
	f, err := answerTo(c, nonce, wait)
	require.NoError(t, err)
	p := chatOf(t, f)
	require.Equal(t, content, p.Content)
	return p
}

var nonceSeq atomic.Int64

// roomsActive reads rewind_rooms_active from the node's /metrics.
func (n *node) roomsActive() string {
	n.t.Helper()
	a := n.get("/metrics", "")
	for line := range strings.Lines(a.Body) {
		if v, ok := strings.CutPrefix(line, "rewind_rooms_active "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestClusterChat: users on different nodes chat and befriend each other
// both ways; a user with sessions on two nodes gets every event on both; a
// room retired by idleness is used again from another node with nothing
// lost; a logout on one node closes the user's sessions on both with 4000.
func TestClusterChat(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
	nodes := startCluster(t, 3, func(c *server.Config) { c.Gateway.RoomIdle = 300 * time.Millisecond })
	for _, n := range nodes {
		require.Equal(t, http.StatusOK, n.get("/readyz", "").Status)
		require.Contains(t, n.get("/metrics", "").Body, "rewind_cluster_members 3")
	}
	ann, bob := nodes[0].newAccount("ann"), nodes[0].newAccount("bob")
	ann1, _ := nodes[0].connect(ann, 2) // ann's phone on node 1
	ann2, _ := nodes[1].connect(ann, 2) // ann's laptop on node 2
	bob3, _ := nodes[2].connect(bob, 2) // bob on node 3
	dm := chatID(ann, bob)

	// Friend events across nodes: the request from node 1 reaches bob on
	// node 3 and ann's other device on node 2 (origin self).
	require.Equal(t, "ok", call(t, ann1, "mutual_users", map[string]string{"type": "request", "name": bob.Name}).Type)
	e := nextFriendEvent(t, bob3)
	require.Equal(t, clusterFriendEvent{Type: "request", User: e.User}, e)
	require.Equal(t, ann.IDString(), e.User.ID)
	e = nextFriendEvent(t, ann2)
	require.Equal(t, "request", e.Type)
	require.Equal(t, "self", e.Origin)
	require.Equal(t, bob.IDString(), e.User.ID)
	require.Equal(t, "ok", call(t, bob3, "mutual_users", map[string]string{"type": "response", "name": ann.Name}).Type)
	for _, c := range []*client.Client{ann1, ann2} {
		e = nextFriendEvent(t, c)
		require.Equal(t, "response", e.Type)
		require.Equal(t, bob.IDString(), e.User.ID)
	}

	// A DM both ways: the echo on the sender's node, the event on the
	// other member's node and on the author's other device.
	echo := sendEcho(t, ann1, dm, "hello from node 1")
	require.Equal(t, "send", echo.Type)
	for _, c := range []*client.Client{bob3, ann2} {
		got := chatOf(t, next(t, c))
		require.Equal(t, echo.ID, got.ID)
		require.Equal(t, "hello from node 1", got.Content)
	}
	echo = sendEcho(t, bob3, dm, "hello from node 3")
	for _, c := range []*client.Client{ann1, ann2} {
		got := chatOf(t, next(t, c))
		require.Equal(t, echo.ID, got.ID)
		require.Equal(t, bob.IDString(), got.UserID)
	}

	// The room retires by idleness on whichever node hosts it; then a
	// send from another node (ann's laptop) activates it again.
	took := waited(t, 10*time.Second, "the room retired", func() bool {
		for _, n := range nodes {
			if n.roomsActive() != "0" {
				return false
			}
		}
		return true
	})
	t.Logf("room retired %v after the last send", took.Round(time.Millisecond))
	for i := range 3 {
		content := fmt.Sprintf("after the room retired %d", i)
		sent := time.Now()
		echo = sendEcho(t, ann2, dm, content)
		t.Logf("send %d into a retired room echoed in %v", i, time.Since(sent).Round(time.Millisecond))
		for _, c := range []*client.Client{bob3, ann1} {
			got := chatOf(t, next(t, c))
			require.Equal(t, echo.ID, got.ID)
			require.Equal(t, content, got.Content)
		}
		waitUntil(t, 10*time.Second, "the room retired again", func() bool {
			for _, n := range nodes {
				if n.roomsActive() != "0" {
					return false
				}
			}
			return true
		})
	}
	roomID, err := nodes[0].srv.Store().FindDMRoom(context.Background(), ann.ID, bob.ID)
	require.NoError(t, err)
	history, err := nodes[0].srv.Store().History(context.Background(), roomID, persistence.Cursor{Time: time.Now().Add(time.Hour)}, 100)
	require.NoError(t, err)
	require.Len(t, history, 5)

	// A logout on node 2 closes ann's sessions on nodes 1 and 2.
	require.Equal(t, http.StatusOK, nodes[1].logout(ann.Token).Status)
	requireClosed(t, ann1, 4000, "")
	requireClosed(t, ann2, 4000, "")
	// bob is untouched.
	require.Equal(t, "heartbeat", call(t, bob3, "heartbeat", map[string]int{"count": 1}).Type)
}

// TestClusterNodeLeavesDuringTraffic: while users on nodes 1 and 2 chat,
// node 3 (hosting some of their grains) shuts down gracefully. No request
// is answered 5000/5001 or waits a second, every acknowledged message is
// in history exactly once, nothing is stored twice, and the survivors go
// on chatting, their grains re-activated on the survivors.
func TestClusterNodeLeavesDuringTraffic(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
	nodes := startCluster(t, 3, noRateLimit, func(c *server.Config) { c.Gateway.RequestTimeout = 3 * time.Second })
	const pairs = 4
	ps := crossPairs(t, nodes, pairs, "")

	// Each sender sends for 5 s, one message at a time, retrying a 5000
	// or 5001 with the same nonce (protocol.md §2.1); node 3 leaves 1 s in.
	type outcome struct {
		acked   map[string]bool // content acknowledged
		maxGap  time.Duration   // longest wait from one ack to the next
		retries int
		err     error
	}
	outcomes := make([]outcome, pairs)
	stopAt := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	for i := range ps {
		wg.Go(func() {
			p, o := ps[i], &outcomes[i]
			o.acked = map[string]bool{}
			dm := chatID(p.from, p.to)
			last := time.Now()
			for k := 0; time.Now().Before(stopAt); k++ {
				content := fmt.Sprintf("pair %d message %d", i, k)
				nonce := fmt.Sprintf("p%dm%d", i, k)
				for attempt := 0; ; attempt++ {
					if err := p.cFrom.Send("chat", map[string]string{"type": "send", "chat_id": dm, "content": content}, nonce); err != nil {
						o.err = err
						return
					}
					f, err := answerTo(p.cFrom, nonce, 10*time.Second)
					if err != nil {
						o.err = fmt.Errorf("%s: %w", content, err)
						return
					}
					if f.Type == "chat" {
						o.acked[content] = true
						o.maxGap = max(o.maxGap, time.Since(last))
						last = time.Now()
						break
					}
					if e, ok := f.AsError(); !ok || (e.Code != 5000 && e.Code != 5001) || attempt == 5 {
						o.err = fmt.Errorf("%s: %s %s", content, f.Type, f.Payload)
						return
					}
					o.retries++
				}
			}
		})
	}
	time.Sleep(time.Second)
	t.Logf("room grains before the leave: node 1 %s, node 2 %s, node 3 %s", nodes[0].roomsActive(), nodes[1].roomsActive(), nodes[2].roomsActive())
	leave := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	require.NoError(t, nodes[2].srv.Shutdown(ctx))
	cancel()
	nodes[2].srv = nil
	t.Logf("node 3 left in %v", time.Since(leave).Round(time.Millisecond))
	wg.Wait()
	t.Logf("room grains after: node 1 %s, node 2 %s", nodes[0].roomsActive(), nodes[1].roomsActive())

	store := nodes[0].srv.Store()
	for i, o := range outcomes {
		require.NoError(t, o.err, "pair %d", i)
		t.Logf("pair %d: %d acknowledged, %d retried, longest wait between acks %v", i, len(o.acked), o.retries, o.maxGap.Round(time.Millisecond))
		require.NotEmpty(t, o.acked)
		// A graceful leave drops nothing and answers nothing 5000/5001
		// (directory.Leave; TestClusterGracefulLeaveDropsNothing).
		require.Zero(t, o.retries, "pair %d: requests answered 5000/5001 during a graceful leave", i)
		require.Less(t, o.maxGap, time.Second, "pair %d: a request waited during a graceful leave", i)
		roomID, err := store.FindDMRoom(context.Background(), ps[i].from.ID, ps[i].to.ID)
		require.NoError(t, err)
		history, err := store.History(context.Background(), roomID, persistence.Cursor{Time: time.Now().Add(time.Hour)}, 10000)
		require.NoError(t, err)
		stored := map[string]int{}
		for _, m := range history {
			stored[m.Content]++
		}
		for content, n := range stored {
			require.Equal(t, 1, n, "pair %d: %q stored %d times", i, content, n)
		}
		for content := range o.acked {
			require.Equal(t, 1, stored[content], "pair %d: acknowledged %q not in history", i, content)
		}
	}

	// The survivors go on: once their user grains know their sessions
	// again (re-attached on the leave, not by the periodic re-attach),
	// events reach them too.
	time.Sleep(moveBound)
	for i, p := range ps {
		drain(p.cTo)
		echo := sendEcho(t, p.cFrom, chatID(p.from, p.to), fmt.Sprintf("pair %d after the leave", i))
		got := chatOf(t, next(t, p.cTo))
		require.Equal(t, echo.ID, got.ID)
	}
}

// answerTo waits for the frame of c that answers nonce, dropping others.
func answerTo(c *client.Client, nonce string, timeout time.Duration) (client.Frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		f, err := c.Next(ctx)
		if err != nil || f.Nonce == nonce {
			return f, err
		}
	}
}

// drain drops the frames c has received so far.
func drain(c *client.Client) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := c.Next(ctx)
		cancel()
		if err != nil {
			return
		}
	}
}

// TestClusterSecondNodeWithTheSameIDRefused: a node whose REWIND_NODE_ID
// another node of the cluster holds does not start, and says why in one
// line.
func TestClusterSecondNodeWithTheSameIDRefused(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
	e := etcdtest.Start(t)
	db := pgtest.NewSchemaURL(t)
	first := startNode(t, db, clusterConfig(e.Endpoint, "same", 7))
	second := newNode(t, db, clusterConfig(e.Endpoint, "same", 7))
	_, err := server.Start(context.Background(), second.cfg)
	require.ErrorIs(t, err, cluster.ErrNodeIDHeld)
	require.Equal(t, fmt.Sprintf("node id 7 is held by %s (cluster same)", first.srv.Node().Address()), err.Error())
	require.NotContains(t, err.Error(), "\n")
}
