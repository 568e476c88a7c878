package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// NodeIDTTL is the lease of a node-id claim: a node that dies without
// releasing its id frees it this long after its last keep-alive (the
// client refreshes the lease every third of it).
const NodeIDTTL = 10 * time.Second

// DefaultDialTimeout bounds the first connection to etcd.
const DefaultDialTimeout = 5 * time.Second

// ErrNodeIDHeld marks a claim refused because another node holds the id;
// the error itself is a *NodeIDHeldError.
var ErrNodeIDHeld = errors.New("node id held")

// NodeIDHeldError says who holds the node id that a claim wanted.
type NodeIDHeldError struct {
	NodeID  int64
	Holder  string // the holder's remote address
	Cluster string
}

func (e *NodeIDHeldError) Error() string {
	return fmt.Sprintf("node id %d is held by %s (cluster %s)", e.NodeID, e.Holder, e.Cluster)
}

// Is makes errors.Is(err, ErrNodeIDHeld) true.
func (e *NodeIDHeldError) Is(target error) bool { return target == ErrNodeIDHeld }

// ClaimConfig configures ClaimNodeID.
type ClaimConfig struct {
	// Cluster is the cluster name (REWIND_CLUSTER_NAME); required. Ids are
	// claimed per cluster.
	Cluster string
	// Etcd are the etcd endpoints (REWIND_CLUSTER_ETCD); required.
	Etcd []string
	// NodeID is the snowflake node (REWIND_NODE_ID), 0..1023.
	NodeID int64
	// Holder names the claimant in a refusal, e.g. its remote address.
	Holder string
	// TTL is the claim's lease, in whole seconds; default NodeIDTTL.
	TTL time.Duration
	// Wait is how long a claim of a held id waits for it to be freed
	// before it is refused; default 0, refused at once. A node restarted
	// right after a crash finds its previous claim until that lease ends.
	Wait time.Duration
	// DialTimeout bounds connecting to etcd; default DefaultDialTimeout.
	DialTimeout time.Duration
}

// NodeIDClaim is a node id held in etcd under a lease kept alive by this
// process.
type NodeIDClaim struct {
	cfg     ClaimConfig
	key     string
	client  *clientv3.Client
	session *concurrency.Session

	release    sync.Once
	releaseErr error
}

// nodeIDKey is where a cluster's claim of id lives: beside, not under, the
// members prefix that protoactor's provider watches.
func nodeIDKey(cluster string, id int64) string {
	return "/rewind/cluster/" + cluster + "/node-id/" + strconv.FormatInt(id, 10)
}

// ClaimNodeID claims cfg.NodeID in cfg.Cluster: the key is created only if
// absent (one transaction), bound to a lease this process keeps alive. A
// held id is refused with a *NodeIDHeldError (after waiting up to
// cfg.Wait for it to be freed).
func ClaimNodeID(ctx context.Context, cfg ClaimConfig) (*NodeIDClaim, error) {
	if err := validName(cfg.Cluster); err != nil {
		return nil, err
	}
	if cfg.NodeID < 0 || cfg.NodeID > 1023 {
		return nil, fmt.Errorf("node id %d: must be 0..1023", cfg.NodeID)
	}
	if len(cfg.Etcd) == 0 {
		return nil, errors.New("no etcd endpoints")
	}
	if cfg.TTL == 0 {
		cfg.TTL = NodeIDTTL
	}
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("node id lease %v: at least 1s", cfg.TTL)
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Etcd,
		DialTimeout: cfg.DialTimeout,
		// The client lives until Release, past a start-up ctx.
		Context: context.WithoutCancel(ctx),
		Logger:  zap.NewNop(), // failures come back as errors
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", cfg.Etcd, err)
	}
	c := &NodeIDClaim{cfg: cfg, key: nodeIDKey(cfg.Cluster, cfg.NodeID), client: client}
	if err := c.claim(ctx); err != nil {
		client.Close()
		return nil, err
	}
	return c, nil
}

func (c *NodeIDClaim) claim(ctx context.Context) error {
	// Each request to etcd is bounded by the dial timeout too: the client
	// connects lazily, and a request to an etcd out of reach waits forever.
	op := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, c.cfg.DialTimeout) }
	octx, cancel := op()
	grant, err := c.client.Grant(octx, int64(c.cfg.TTL/time.Second))
	cancel()
	if err != nil {
		return fmt.Errorf("node id %d: etcd %v: lease: %w", c.cfg.NodeID, c.cfg.Etcd, err)
	}
	// The session keeps the lease alive until Release, or until
	// keep-alives stop reaching etcd for as long as the lease.
	session, err := concurrency.NewSession(c.client, concurrency.WithLease(grant.ID), concurrency.WithTTL(int(c.cfg.TTL/time.Second)))
	if err != nil {
		return fmt.Errorf("node id %d: etcd %v: lease: %w", c.cfg.NodeID, c.cfg.Etcd, err)
	}
	revoke := func() {
		session.Orphan()
		rctx, cancel := op()
		_, _ = c.client.Revoke(rctx, grant.ID)
		cancel()
	}
	var deadline <-chan time.Time
	if c.cfg.Wait > 0 {
		t := time.NewTimer(c.cfg.Wait)
		defer t.Stop()
		deadline = t.C
	}
	for {
		octx, cancel := op()
		resp, err := c.client.Txn(octx).
			If(clientv3.Compare(clientv3.CreateRevision(c.key), "=", 0)).
			Then(clientv3.OpPut(c.key, c.cfg.Holder, clientv3.WithLease(session.Lease()))).
			Else(clientv3.OpGet(c.key)).
			Commit()
		cancel()
		if err != nil {
			revoke()
			return fmt.Errorf("node id %d: etcd %v: claim: %w", c.cfg.NodeID, c.cfg.Etcd, err)
		}
		if resp.Succeeded {
			c.session = session
			return nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // freed between the compare and the get
		}
		held := &NodeIDHeldError{NodeID: c.cfg.NodeID, Holder: string(kvs[0].Value), Cluster: c.cfg.Cluster}
		if deadline == nil {
			revoke()
			return held
		}
		// Wait for the holder's key to go, then try again.
		wctx, cancel := context.WithCancel(ctx)
		events := c.client.Watch(wctx, c.key, clientv3.WithRev(resp.Header.Revision+1))
		gone := false
		for !gone {
			select {
			case w, ok := <-events:
				if !ok || w.Err() != nil {
					gone = true // watch ended: look again
					break
				}
				for _, ev := range w.Events {
					gone = gone || ev.Type == clientv3.EventTypeDelete
				}
			case <-deadline:
				cancel()
				revoke()
				return fmt.Errorf("%w (waited %v)", held, c.cfg.Wait)
			case <-ctx.Done():
				cancel()
				revoke()
				return fmt.Errorf("%w: %w", held, ctx.Err())
			}
		}
		cancel()
	}
}

// NodeID is the claimed id.
func (c *NodeIDClaim) NodeID() int64 { return c.cfg.NodeID }

// Lost is closed when the claim's lease is no longer kept alive: etcd was
// out of reach longer than the lease, or the claim was released. Another
// node may take the id after that, so a node whose claim is lost must stop
// making ids.
func (c *NodeIDClaim) Lost() <-chan struct{} { return c.session.Done() }

// SetHolder replaces the holder's name shown to other claimants (a node
// knows its remote address only once it listens), if the claim is still
// this one's.
func (c *NodeIDClaim) SetHolder(ctx context.Context, holder string) error {
	_, err := c.client.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(c.key), "=", c.session.Lease())).
		Then(clientv3.OpPut(c.key, holder, clientv3.WithLease(c.session.Lease()))).
		Commit()
	return err
}

// Release revokes the lease, freeing the id at once, and closes the
// client. It waits for etcd until ctx ends, and at most the lease's TTL:
// the lease has run out by then anyway.
// Calling it again does nothing.
func (c *NodeIDClaim) Release(ctx context.Context) error {
	c.release.Do(func() {
		c.session.Orphan()
		ctx, cancel := context.WithTimeout(ctx, c.cfg.TTL)
		defer cancel()
		_, err := c.client.Revoke(ctx, c.session.Lease())
		if err != nil {
			err = fmt.Errorf("node id %d: release: %w", c.cfg.NodeID, err)
		}
		c.releaseErr = errors.Join(err, c.client.Close())
	})
	return c.releaseErr
}

// abandon stops keeping the lease alive and closes the client without
// revoking, as a node that dies does: the id is freed when the lease ends.
func (c *NodeIDClaim) abandon() {
	c.release.Do(func() {
		c.session.Orphan()
		c.client.Close()
	})
}
