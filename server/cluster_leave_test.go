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

// TestClusterGracefulLeaveAnswersWritesInFlight: a send without a nonce,
// which no other activation of its room could retry, is at the leaving
// node's writer when the leave starts (that node's database stalls): the
// leave waits for the commit, and the sender gets its echo, not 5001, and
// finds the message in history once.
func TestClusterGracefulLeaveAnswersWritesInFlight(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
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
	leaving := nodes[2].srv.Node().Address()
	var p crossPair
	for i := 0; ; i++ {
		require.Less(t, i, 40, "no DM's room placed on node 3")
		p = crossPairs(t, nodes, 1, fmt.Sprintf("w%d", i))[0]
		key := messages.DMKey(p.from.ID, p.to.ID)
		pid := nodes[0].srv.Node().Cluster().Get(directory.RoomIdentity(key), directory.RoomKind)
		require.NotNil(t, pid)
		if pid.Address == leaving {
			break
		}
	}
	chat := chatID(p.from, p.to)
	sendEcho(t, p.cFrom, chat, "before") // the room is loaded, on node 3
	drain(p.cFrom)

	proxy.stall()
	require.NoError(t, p.cFrom.Send("chat", map[string]string{"type": "send", "chat_id": chat, "content": "in flight"}, ""))
	time.Sleep(200 * time.Millisecond) // at node 3's writer, which waits for its database
	srv := nodes[2].srv
	nodes[2].srv = nil // stopped here, not by startCluster's cleanup
	var leaveErr error
	left := make(chan struct{})
	go func() {
		defer close(left)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		leaveErr = srv.Shutdown(ctx)
	}()
	t.Cleanup(func() { <-left })
	// Enough for node 3 to tell the others and leave etcd, and its
	// grains to stop, were it not waiting for the write.
	time.Sleep(time.Second)
	proxy.resume()
	f, err := answerTo(p.cFrom, "", 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, "chat", f.Type, "the send in flight at the leave: %s", f.Payload)
	require.Equal(t, "in flight", chatOf(t, f).Content)
	<-left
	require.NoError(t, leaveErr)

	var stored int
	for _, m := range fullHistory(t, p.cFrom, chat) {
		if m.Content == "in flight" {
			stored++
		}
	}
	require.Equal(t, 1, stored, "the send in flight at the leave, in history")
}
