package server_test

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/cluster/etcdtest"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/server"
)

// leaveStream is what one sender of TestClusterGracefulLeaveDropsNothing
// saw.
type leaveStream struct {
	answered int
	slowest  time.Duration
	slow     []string // requests answered later than the bound
	failed   []string // requests answered with an error
	err      error
}

// streamSends sends into chat from c, one request at a time, until stop,
// and records how long each answer took. A 5000 or 5001 is retried with
// the same nonce (protocol.md §2.1), and recorded.
func streamSends(c *client.Client, chat, tag string, stop time.Time, bound time.Duration) *leaveStream {
	s := &leaveStream{}
	for k := 0; time.Now().Before(stop); k++ {
		nonce := fmt.Sprintf("%s-%d", tag, k)
		content := fmt.Sprintf("%s message %d", tag, k)
		for attempt := 0; ; attempt++ {
			sent := time.Now()
			if err := c.Send("chat", map[string]string{"type": "send", "chat_id": chat, "content": content}, nonce); err != nil {
				s.err = err
				return s
			}
			f, err := answerTo(c, nonce, 10*time.Second)
			took := time.Since(sent)
			if err != nil {
				s.err = fmt.Errorf("%s: %w", content, err)
				return s
			}
			s.answered++
			s.slowest = max(s.slowest, took)
			if took > bound {
				s.slow = append(s.slow, fmt.Sprintf("%s at %s: %v", content, sent.Format("15:04:05.000"), took.Round(time.Millisecond)))
			}
			if f.Type == "chat" {
				break
			}
			s.failed = append(s.failed, fmt.Sprintf("%s at %s: %s %s", content, sent.Format("15:04:05.000"), f.Type, f.Payload))
			if e, ok := f.AsError(); !ok || (e.Code != 5000 && e.Code != 5001) || attempt == 5 {
				s.err = fmt.Errorf("%s: %s %s", content, f.Type, f.Payload)
				return s
			}
		}
	}
	return s
}

// TestClusterGracefulLeaveDropsNothing: while senders on node 1 write, one
// request at a time, into DMs whose rooms and users are spread over three
// nodes, node 3 leaves gracefully (SIGTERM's Shutdown). No request is
// dropped or answered 5000/5001 by the leave, and none waits longer than
// a second: the leaving node finishes what it holds and forwards what
// still reaches it to the identities' new nodes.
func TestClusterGracefulLeaveDropsNothing(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
	nodes := startCluster(t, 3, noRateLimit, func(c *server.Config) { c.Gateway.RequestTimeout = 3 * time.Second })
	const pairs = 12
	ps := crossPairs(t, nodes, pairs, "g")
	const bound = time.Second
	stop := time.Now().Add(5 * time.Second)
	streams := make([]*leaveStream, pairs)
	var wg sync.WaitGroup
	for i := range ps {
		wg.Go(func() {
			p := ps[i]
			streams[i] = streamSends(p.cFrom, chatID(p.from, p.to), fmt.Sprintf("pair%d", i), stop, bound)
		})
	}
	time.Sleep(time.Second)
	on3 := nodes[2].roomsActive()
	t.Logf("room grains before the leave: node 1 %s, node 2 %s, node 3 %s", nodes[0].roomsActive(), nodes[1].roomsActive(), on3)
	require.NotEqual(t, "0", on3, "no room on the leaving node: the test shows nothing")
	leave := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	require.NoError(t, nodes[2].srv.Shutdown(ctx))
	cancel()
	nodes[2].srv = nil
	t.Logf("node 3 left at %s in %v", leave.Format("15:04:05.000"), time.Since(leave).Round(time.Millisecond))
	wg.Wait()
	for i, s := range streams {
		require.NoError(t, s.err, "pair %d", i)
		t.Logf("pair %d: %d answered, slowest %v", i, s.answered, s.slowest.Round(time.Millisecond))
	}
	for i, s := range streams {
		require.Empty(t, s.failed, "pair %d: answered with an error during a graceful leave", i)
		require.Empty(t, s.slow, "pair %d: answered later than %v during a graceful leave", i, bound)
	}
}

// TestClusterGracefulLeaveAnswersWritesInFlight: what a grain of the
// leaving node has started is answered before its grains stop, while that
// node's database stalls across the start of the leave: a send without a
// nonce at its writer, which no other activation could retry, gets its
// echo, not 5001, and is in history once; a profile change running in a
// user grain there is answered with the user.
func TestClusterGracefulLeaveAnswersWritesInFlight(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
	t.Run("send without a nonce", func(t *testing.T) {
		nodes, proxy := stallableCluster(t)
		var p crossPair
		for i := 0; ; i++ {
			require.Less(t, i, 40, "no DM's room placed on node 3")
			p = crossPairs(t, nodes, 1, fmt.Sprintf("w%d", i))[0]
			if placedOn(t, nodes, directory.RoomKind, directory.RoomIdentity(messages.DMKey(p.from.ID, p.to.ID))) == 3 {
				break
			}
		}
		chat := chatID(p.from, p.to)
		sendEcho(t, p.cFrom, chat, "before") // the room is loaded, on node 3
		drain(p.cFrom)

		proxy.stall()
		require.NoError(t, p.cFrom.Send("chat", map[string]string{"type": "send", "chat_id": chat, "content": "in flight"}, ""))
		left := leaveStalled(t, nodes, proxy)
		f, err := answerTo(p.cFrom, "", 10*time.Second)
		require.NoError(t, err)
		require.Equal(t, "chat", f.Type, "the send in flight at the leave: %s", f.Payload)
		require.Equal(t, "in flight", chatOf(t, f).Content)
		left()

		var stored int
		for _, m := range fullHistory(t, p.cFrom, chat) {
			if m.Content == "in flight" {
				stored++
			}
		}
		require.Equal(t, 1, stored, "the send in flight at the leave, in history")
	})
	t.Run("profile change", func(t *testing.T) {
		nodes, proxy := stallableCluster(t)
		var c *client.Client
		for i := 0; ; i++ {
			require.Less(t, i, 40, "no user's grain placed on node 3")
			u := nodes[0].newAccount(fmt.Sprintf("pic%d", i))
			if placedOn(t, nodes, directory.UserKind, directory.UserIdentity(u.ID)) == 3 {
				c, _ = nodes[0].connect(u, 2)
				break
			}
		}
		proxy.stall()
		require.NoError(t, c.Send("user", map[string]any{"profile": "https://cdn.example.test/left.png"}, "pic"))
		left := leaveStalled(t, nodes, proxy)
		f, err := answerTo(c, "pic", 10*time.Second)
		require.NoError(t, err)
		require.Equal(t, "user", f.Type, "the profile change in flight at the leave: %s", f.Payload)
		left()
	})
}

// stallableCluster starts three nodes, node 3's database behind a proxy
// that can stall it.
func stallableCluster(t *testing.T) ([]*node, *tcpProxy) {
	var proxy *tcpProxy
	nodes := startCluster(t, 3, noRateLimit, func(c *server.Config) {
		if c.NodeID != 3 {
			return
		}
		u, err := url.Parse(c.DatabaseURL)
		require.NoError(t, err)
		proxy = startTCPProxy(t, u.Host)
		u.Host = proxy.addr()
		c.DatabaseURL = u.String()
	})
	return nodes, proxy
}

// placedOn is the node (1-based) that hosts the grain of kind and
// identity, activating it.
func placedOn(t *testing.T, nodes []*node, kind, identity string) int {
	pid := nodes[0].srv.Node().Cluster().Get(identity, kind)
	require.NotNil(t, pid)
	for i, n := range nodes {
		if n.srv != nil && n.srv.Node().Address() == pid.Address {
			return i + 1
		}
	}
	return 0
}

// leaveStalled starts node 3's graceful leave, its database stalled with
// a request in flight there, and lets the database go on a second later:
// long enough for node 3 to tell the others, leave etcd and stop its
// grains, were it not waiting for what they started. The function it
// returns waits for the leave to end.
func leaveStalled(t *testing.T, nodes []*node, proxy *tcpProxy) func() {
	time.Sleep(200 * time.Millisecond) // the request reaches node 3's store call
	srv := nodes[2].srv
	nodes[2].srv = nil // stopped here, not by startCluster's cleanup
	var err error
	left := make(chan struct{})
	go func() {
		defer close(left)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		err = srv.Shutdown(ctx)
	}()
	t.Cleanup(func() { <-left })
	time.Sleep(time.Second)
	proxy.resume()
	return func() {
		<-left
		require.NoError(t, err)
	}
}
