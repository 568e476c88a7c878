package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/cluster/etcdtest"
)

func claimFor(t *testing.T, cfg ClaimConfig) (*NodeIDClaim, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, err := ClaimNodeID(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { _ = c.Release(context.Background()) })
	}
	return c, err
}

// TestNodeIDClaimIsExclusive: a second claimant of a held id is refused
// with one line naming the holder; ids are per cluster; a release frees
// the id at once.
func TestNodeIDClaimIsExclusive(t *testing.T) {
	e := etcdtest.Start(t)
	first, err := claimFor(t, ClaimConfig{Cluster: "rewind", Etcd: e.Endpoints(), NodeID: 3, Holder: "127.0.0.1:7001"})
	require.NoError(t, err)

	_, err = claimFor(t, ClaimConfig{Cluster: "rewind", Etcd: e.Endpoints(), NodeID: 3, Holder: "127.0.0.1:7002"})
	require.ErrorIs(t, err, ErrNodeIDHeld)
	require.EqualError(t, err, "node id 3 is held by 127.0.0.1:7001 (cluster rewind)")
	var held *NodeIDHeldError
	require.True(t, errors.As(err, &held))
	require.Equal(t, "127.0.0.1:7001", held.Holder)

	// Another id, and the same id in another cluster, are free.
	_, err = claimFor(t, ClaimConfig{Cluster: "rewind", Etcd: e.Endpoints(), NodeID: 4, Holder: "127.0.0.1:7002"})
	require.NoError(t, err)
	_, err = claimFor(t, ClaimConfig{Cluster: "rewind-b", Etcd: e.Endpoints(), NodeID: 3, Holder: "127.0.0.1:7002"})
	require.NoError(t, err)

	require.NoError(t, first.Release(t.Context()))
	select {
	case <-first.Lost():
	default:
		t.Fatal("Lost not closed by Release")
	}
	_, err = claimFor(t, ClaimConfig{Cluster: "rewind", Etcd: e.Endpoints(), NodeID: 3, Holder: "127.0.0.1:7002"})
	require.NoError(t, err, "a released id is free at once")
}

// TestNodeIDClaimOfADeadHolderExpires: a holder that stops keeping its
// lease alive without revoking it (as a killed node) keeps the id until
// the lease ends; a claimant waiting for it gets it then.
func TestNodeIDClaimOfADeadHolderExpires(t *testing.T) {
	e := etcdtest.Start(t)
	const ttl = 3 * time.Second
	dead, err := claimFor(t, ClaimConfig{Cluster: "rewind", Etcd: e.Endpoints(), NodeID: 7, Holder: "dead", TTL: ttl})
	require.NoError(t, err)
	dead.abandon()
	abandoned := time.Now()

	_, err = claimFor(t, ClaimConfig{Cluster: "rewind", Etcd: e.Endpoints(), NodeID: 7, Holder: "next"})
	require.EqualError(t, err, "node id 7 is held by dead (cluster rewind)")

	// A short wait gives up, still naming the holder.
	_, err = claimFor(t, ClaimConfig{Cluster: "rewind", Etcd: e.Endpoints(), NodeID: 7, Holder: "next", Wait: 200 * time.Millisecond})
	require.ErrorIs(t, err, ErrNodeIDHeld)
	require.ErrorContains(t, err, "waited 200ms")

	_, err = claimFor(t, ClaimConfig{Cluster: "rewind", Etcd: e.Endpoints(), NodeID: 7, Holder: "next", Wait: ttl + 5*time.Second})
	require.NoError(t, err)
	freed := time.Since(abandoned)
	t.Logf("a dead holder's id (lease %v) was claimed again %v after its last keep-alive stopped", ttl, freed.Round(time.Millisecond))
	// etcd expires a lease no earlier than its TTL after the last
	// refresh, which was at most a third of it before abandon.
	require.Greater(t, freed, ttl*2/3-100*time.Millisecond)
}

// TestNodeIDClaimLostWhenEtcdGoes: with etcd gone, the lease cannot be
// refreshed, and Lost closes once it has run out.
func TestNodeIDClaimLostWhenEtcdGoes(t *testing.T) {
	e := etcdtest.Start(t)
	const ttl = 2 * time.Second
	c, err := claimFor(t, ClaimConfig{Cluster: "rewind", Etcd: e.Endpoints(), NodeID: 1, Holder: "me", TTL: ttl})
	require.NoError(t, err)
	e.Stop()
	stopped := time.Now()
	select {
	case <-c.Lost():
		t.Logf("claim lost %v after etcd stopped (lease %v)", time.Since(stopped).Round(time.Millisecond), ttl)
	case <-time.After(ttl + 5*time.Second):
		t.Fatal("claim not reported lost")
	}
	start := time.Now()
	require.Error(t, c.Release(context.Background()), "etcd is gone")
	require.Less(t, time.Since(start), ttl+time.Second, "Release waits at most the lease")
}

func TestClaimConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ClaimConfig
		want string
	}{
		{"id too large", ClaimConfig{Cluster: "c", Etcd: []string{"x"}, NodeID: 1024}, "node id 1024: must be 0..1023"},
		{"negative id", ClaimConfig{Cluster: "c", Etcd: []string{"x"}, NodeID: -1}, "node id -1: must be 0..1023"},
		{"no etcd", ClaimConfig{Cluster: "c"}, "no etcd endpoints"},
		{"bad name", ClaimConfig{Cluster: "a/b", Etcd: []string{"x"}}, `cluster name "a/b": letters, digits, '-' and '_' only (1 to 64)`},
		{"short lease", ClaimConfig{Cluster: "c", Etcd: []string{"x"}, TTL: time.Millisecond}, "node id lease 1ms: at least 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ClaimNodeID(t.Context(), tc.cfg)
			require.EqualError(t, err, tc.want)
		})
	}
}

func TestClaimUnreachableEtcdFailsWithinDialTimeout(t *testing.T) {
	start := time.Now()
	_, err := ClaimNodeID(t.Context(), ClaimConfig{Cluster: "c", Etcd: []string{"127.0.0.1:1"}, DialTimeout: 300 * time.Millisecond})
	require.ErrorContains(t, err, "etcd [127.0.0.1:1]")
	require.Less(t, time.Since(start), 5*time.Second)
}
