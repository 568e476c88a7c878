package cluster

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/rewind-chat/rewind/cluster/etcdtest"
)

// TestAnnounceRewritesMemberKey: a node that joins makes the members
// write their keys again, as they are, within AnnounceDelay, and it writes
// its own: so a node whose provider missed a member's registration (the
// watch started after it, see announce.go) hears of it as a new member.
// The node's memberKey is the key protoactor's provider wrote.
func TestAnnounceRewritesMemberKey(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
	e := etcdtest.Start(t)
	name := uniqueName(t)
	nodes := startNodes(t, e.Endpoints(), name, 1, 2)
	waitFor(t, 10*time.Second, "two members", allMembers(nodes, 2))

	c, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer c.Close()
	before := map[string]*testNode{}
	for _, n := range nodes {
		got, err := c.Get(t.Context(), n.MemberKey())
		require.NoError(t, err)
		require.Len(t, got.Kvs, 1, "the provider's key of %s", n.Address())
		before[n.MemberKey()] = n
	}
	// Watching from now on, as a node whose watch started late would.
	events := c.Watch(t.Context(), membersKey(name), clientv3.WithPrefix())
	third, err := startNode(t, e.Endpoints(), name, 3)
	require.NoError(t, err)
	joined := time.Now()
	written := map[string]bool{}
	deadline := time.After(AnnounceDelay + 3*time.Second) // well before AnnounceInterval
	for len(written) < 3 {
		select {
		case resp := <-events:
			require.NoError(t, resp.Err())
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				key := string(ev.Kv.Key)
				if key == third.MemberKey() {
					if ev.Kv.Version > 1 { // after the provider's own Put
						written[key] = true
					}
					continue
				}
				require.Contains(t, before, key)
				written[key] = true
			}
		case <-deadline:
			t.Fatalf("members' keys written again since node 3 started: %v", written)
		}
	}
	t.Logf("every member's key written again %v after node 3 started", time.Since(joined).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "three members", allMembers(append(nodes, third), 3))

	// Written as they were: the same value, under the same lease.
	for key := range before {
		got, err := c.Get(t.Context(), key)
		require.NoError(t, err)
		require.Len(t, got.Kvs, 1)
		require.Greater(t, got.Kvs[0].Version, int64(1))
		ttl, err := c.TimeToLive(t.Context(), clientv3.LeaseID(got.Kvs[0].Lease))
		require.NoError(t, err)
		require.Positive(t, ttl.TTL, "the key keeps the provider's live lease")
	}
}
