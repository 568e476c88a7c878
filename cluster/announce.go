package cluster

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// protoactor's etcd provider lists the members (a Get) and then starts its
// watch, in a goroutine of its own, from whatever revision etcd is at when
// the watch arrives, not from the Get's: a member that registers in between
// is missed by that node for as long as its key does not change. In one of
// three kill runs (docs/benchmarks.md §8) one node saw 4 of 5 members for
// the whole run, so its lookups placed a fifth of the identities elsewhere
// than the other nodes did, and about 150 users whose grain was activated
// twice got no live event at all.
//
// So every node writes its own member key again, with the same value and
// lease, AnnounceDelay after its start and after each member joins its
// view (the joiner's watch runs by then), and every AnnounceInterval: to a
// node that missed this one the Put is a new member, to the others an
// update that changes no topology.

// AnnounceInterval is how often a node writes its member key again.
const AnnounceInterval = 10 * time.Second

// AnnounceDelay is how long after its start, or a member's join, a node
// writes its member key again.
const AnnounceDelay = time.Second

// MemberKey is the etcd key this node is listed under, as protoactor's
// provider writes it: <prefix>/<cluster name>/<cluster name>@<actor
// system id> (TestAnnounceRewritesMemberKey reads it).
func (n *Node) MemberKey() string {
	return membersKey(n.cfg.Name) + "/" + n.cfg.Name + "/" + n.cfg.Name + "@" + n.system.ID
}

// announcer writes the member key again until ctx ends (the provider's
// stop) or the node leaves.
func (n *Node) announcer(ctx context.Context) {
	t := time.NewTimer(AnnounceDelay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.joined:
			t.Reset(AnnounceDelay)
			continue
		case <-t.C:
		}
		if n.leaving.Load() {
			return
		}
		if err := n.announce(ctx); err != nil && ctx.Err() == nil {
			n.system.Logger().Warn("cluster: writing this node's member key again failed", "error", err)
		}
		t.Reset(AnnounceInterval)
	}
}

// announce puts the member key again as it is, unless it is gone (the
// lease ended, or the node left) or changed since it was read.
func (n *Node) announce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
	defer cancel()
	key := n.MemberKey()
	got, err := n.claim.client.Get(ctx, key)
	if err != nil || len(got.Kvs) == 0 {
		return err
	}
	kv := got.Kvs[0]
	_, err = n.claim.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
		Then(clientv3.OpPut(key, string(kv.Value), clientv3.WithLease(clientv3.LeaseID(kv.Lease)))).
		Commit()
	return err
}
