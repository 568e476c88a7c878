package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// DefaultName is the cluster name when REWIND_CLUSTER_NAME is unset.
const DefaultName = "rewind"

// DefaultRequestTimeout bounds one grain request.
const DefaultRequestTimeout = 5 * time.Second

// Config of a node's membership.
type Config struct {
	// Name (REWIND_CLUSTER_NAME) names the cluster; default DefaultName.
	// Letters, digits, '-' and '_' only: it is part of etcd keys.
	Name string
	// Etcd (REWIND_CLUSTER_ETCD) are the etcd endpoints; required.
	Etcd []string
	// Addr (REWIND_CLUSTER_ADDR) is this node's remote address, host:port:
	// it listens there and the other nodes reach it there, so the host
	// must be one they can reach (not 0.0.0.0). Port 0 takes a free port
	// (tests); Node.Address tells which.
	Addr string
	// NodeID (REWIND_NODE_ID) is the snowflake node, 0..1023, claimed in
	// etcd for as long as the node runs (ClaimNodeID).
	NodeID int64
	// ClaimTTL is the node-id claim's lease; default NodeIDTTL.
	ClaimTTL time.Duration
	// ClaimWait is how long to wait for a held node id; default 0,
	// refused at once.
	ClaimWait time.Duration
	// Kinds are the grain kinds this node hosts (built with
	// cluster.NewKind from protoactor).
	Kinds []*pcluster.Kind
	// RequestTimeout bounds Node.Request by default; default
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// DialTimeout bounds connecting to etcd; default DefaultDialTimeout.
	DialTimeout time.Duration
	// ExpelGrace is how long a node that was a member may miss from its
	// own member list before Expelled closes; default DefaultExpelGrace.
	ExpelGrace time.Duration
}

// DefaultExpelGrace is the default of Config.ExpelGrace: well above a
// member list's brief changes, well below the time clients would keep
// talking to a node that no one routes to.
const DefaultExpelGrace = 10 * time.Second

// Node is this process's member of the cluster: its node-id claim, its
// protoactor remote and cluster, and what it has seen of the membership.
type Node struct {
	cfg     Config
	system  *actor.ActorSystem
	cluster *pcluster.Cluster
	claim   *NodeIDClaim
	sub     *eventstream.Subscription

	started  atomic.Bool // StartMember returned: this node's key is in etcd
	leaving  atomic.Bool // Shutdown began
	inView   atomic.Bool // the last topology lists this node
	expel    *time.Timer // runs from the topology that left this node out; under mu
	expelled chan struct{}
	expelOne sync.Once
	members  atomic.Int64 // members in the last topology
	mu       sync.Mutex
	topology []string // member addresses of the last topology, sorted

	sent, received               atomic.Uint64 // remote actor messages
	sentCounter, receivedCounter prometheus.CounterFunc
	joinedGauge, membersGauge    prometheus.GaugeFunc

	stopProvider context.CancelFunc // cancels the provider's etcd client and the announcer
	joined       chan struct{}      // a member joined this node's view (announcer)

	shutdownOnce sync.Once
	shutdownErr  error
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func validName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("cluster name %q: letters, digits, '-' and '_' only (1 to 64)", name)
	}
	return nil
}

// Start claims cfg.NodeID, then starts protoactor's remote on cfg.Addr and
// its cluster on system, with the etcd provider and disthash placement,
// hosting cfg.Kinds. It returns once this node is registered in etcd; it
// has joined (Joined) once it also sees itself among the members, at once
// or soon after. A held node id fails with a *NodeIDHeldError.
//
// Start system's cluster before spawning any actor whose PID is to cross
// nodes: a PID made before the remote starts carries no reachable address.
// Start may only be called once per actor system.
func Start(ctx context.Context, system *actor.ActorSystem, cfg Config) (*Node, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if err := validName(cfg.Name); err != nil {
		return nil, err
	}
	if len(cfg.Etcd) == 0 {
		return nil, errors.New("cluster: no etcd endpoints (REWIND_CLUSTER_ETCD)")
	}
	host, port, err := splitAddr(cfg.Addr)
	if err != nil {
		return nil, err
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.ExpelGrace == 0 {
		cfg.ExpelGrace = DefaultExpelGrace
	}
	claim, err := ClaimNodeID(ctx, ClaimConfig{
		Cluster: cfg.Name, Etcd: cfg.Etcd, NodeID: cfg.NodeID, Holder: cfg.Addr,
		TTL: cfg.ClaimTTL, Wait: cfg.ClaimWait, DialTimeout: cfg.DialTimeout,
	})
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, system: system, claim: claim, expelled: make(chan struct{}), joined: make(chan struct{}, 1)}
	n.metrics()
	// fail undoes what Start did before err (the process exits after a
	// failed start, so a remote that may be listening is left to it).
	fail := func(err error) (*Node, error) {
		if n.stopProvider != nil {
			n.stopProvider()
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return nil, errors.Join(err, claim.Release(rctx))
	}

	// The provider never closes its etcd client; cancelling the client's
	// context after Shutdown at least ends its keep-alive and its watch.
	pctx, pcancel := context.WithCancel(context.Background())
	n.stopProvider = pcancel
	provider, err := etcd.NewWithConfig(membersKey(cfg.Name), clientv3.Config{
		Endpoints: cfg.Etcd, DialTimeout: cfg.DialTimeout, Logger: zap.NewNop(), Context: pctx,
	})
	if err != nil {
		return fail(fmt.Errorf("cluster: etcd provider: %w", err))
	}
	// protoactor's default reserves a ring of 1,000,000 slots (16 MB) per
	// peer up front; a heap profile of a 5-node run showed 61 MB of a
	// node's 222 MB live heap there. The ring doubles as it fills, so a
	// small start loses nothing.
	opts := append(n.remoteOptions(), remote.WithEndpointWriterQueueSize(endpointQueueSize))
	remoteCfg := remote.Configure(host, port, opts...)
	// A peer's endpoint writer tries to connect MaxRetryCount times,
	// sleeping 2 s inside the actor after each failure, and only then
	// hands what it holds to the dead letters (which the directory sends
	// again by identity). protoactor's 5 held every message to a killed
	// node for ~10 s (docs/benchmarks.md §8); the member list drops such a
	// node within its 3 s etcd lease, so one try is enough: a new writer
	// is made for the next message, should the peer be alive after all.
	remoteCfg.MaxRetryCount = endpointConnectTries
	clusterCfg := pcluster.Configure(cfg.Name, provider, disthash.New(), remoteCfg,
		pcluster.WithKinds(cfg.Kinds...), pcluster.WithRequestTimeout(cfg.RequestTimeout))
	n.cluster = pcluster.New(system, clusterCfg)
	n.sub = system.EventStream.Subscribe(func(ev any) {
		if t, ok := ev.(*pcluster.ClusterTopology); ok {
			n.onTopology(t)
		}
	})

	// StartMember panics on failure (a taken port, etcd refusing) and
	// waits without a deadline; run it aside, bounded by ctx.
	started := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				started <- fmt.Errorf("cluster: start: %v", r)
			}
		}()
		n.cluster.StartMember()
		started <- nil
	}()
	select {
	case err := <-started:
		if err != nil {
			system.EventStream.Unsubscribe(n.sub)
			return fail(err)
		}
	case <-ctx.Done():
		system.EventStream.Unsubscribe(n.sub)
		// StartMember goes on; once it is done, leave again rather than
		// stay a member nobody runs.
		go func() {
			if <-started == nil {
				n.cluster.Shutdown(true)
			}
		}()
		return fail(fmt.Errorf("cluster: start: %w", ctx.Err()))
	}
	n.started.Store(true)
	go n.announcer(pctx)
	if port == 0 {
		if err := claim.SetHolder(ctx, n.Address()); err != nil {
			return nil, errors.Join(fmt.Errorf("cluster: node id %d: %w", cfg.NodeID, err), n.Shutdown(context.WithoutCancel(ctx)))
		}
	}
	return n, nil
}

// membersKey is the prefix under which protoactor's provider keeps the
// members. The provider watches <prefix>/<name> without a trailing slash,
// so that clusters "a" and "ab" under one prefix would see each other's
// members; a prefix of the cluster's own keeps them apart.
func membersKey(name string) string { return "/rewind/cluster/" + name + "/members" }

func splitAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("cluster address %q (REWIND_CLUSTER_ADDR): %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("cluster address %q (REWIND_CLUSTER_ADDR): bad port", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "", 0, fmt.Errorf("cluster address %q (REWIND_CLUSTER_ADDR): the host must be one the other nodes can reach", addr)
	}
	return host, port, nil
}

// endpointQueueSize is the initial size of the queue of messages to one peer.
const endpointQueueSize = 4096

// endpointConnectTries is how often a peer's endpoint writer tries to
// connect before it gives up what it holds.
const endpointConnectTries = 1

// onTopology records a topology the member list published. It runs on
// the publisher's goroutine (the provider's watch).
func (n *Node) onTopology(t *pcluster.ClusterTopology) {
	self := n.system.Address()
	addrs := make([]string, 0, len(t.Members))
	for _, m := range t.Members {
		addrs = append(addrs, m.Address())
	}
	slices.Sort(addrs)
	in := slices.Contains(addrs, self)
	for _, m := range t.Joined {
		if m.Address() != self {
			select {
			case n.joined <- struct{}{}:
			default:
			}
			break
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.topology = addrs
	n.members.Store(int64(len(addrs)))
	was := n.inView.Swap(in)
	switch {
	case in && n.expel != nil:
		n.expel.Stop()
		n.expel = nil
	case was && !in && n.expel == nil:
		n.expel = time.AfterFunc(n.cfg.ExpelGrace, func() {
			if !n.inView.Load() && !n.leaving.Load() {
				n.expelOne.Do(func() { close(n.expelled) })
			}
		})
	}
}

// Expelled is closed when this node, after it had joined, has been missing
// from its own member list for Config.ExpelGrace while not shutting down:
// its etcd key expired (etcd out of reach, or the process stalled longer
// than the provider's 3 s lease) and protoactor keeps it out for good (see
// Joined). No one routes to it any more, so it must stop and be restarted.
func (n *Node) Expelled() <-chan struct{} { return n.expelled }

// ExpelGrace is Config.ExpelGrace as resolved.
func (n *Node) ExpelGrace() time.Duration { return n.cfg.ExpelGrace }

// Cluster is protoactor's cluster of this node, for grain lookups.
func (n *Node) Cluster() *pcluster.Cluster { return n.cluster }

// Address is this node's remote address (with the port taken when
// Config.Addr had port 0).
func (n *Node) Address() string { return n.system.Address() }

// NodeID is the claimed snowflake node.
func (n *Node) NodeID() int64 { return n.claim.NodeID() }

// Joined reports whether this node is a member: registered in etcd, seen
// by itself in the member list, holding its node id, and not shutting
// down. /readyz answers 503 while it is not.
//
// A node that was a member and is not any more (its claim lost, or its
// own key gone from etcd when etcd was out of reach longer than the
// provider's 3 s lease) does not come back: protoactor's member list then
// keeps it out for good (the others block its member id, and its own
// provider skips its own key). Such a node must be restarted: Expelled
// tells when.
func (n *Node) Joined() bool {
	if !n.started.Load() || !n.inView.Load() || n.leaving.Load() {
		return false
	}
	select {
	case <-n.claim.Lost():
		return false
	default:
		return true
	}
}

// Members counts the members this node sees, itself included.
func (n *Node) Members() int { return int(n.members.Load()) }

// MemberAddresses lists the remote addresses of the members this node
// sees, sorted.
func (n *Node) MemberAddresses() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.topology)
}

// Lost is closed when the node-id claim is lost (etcd out of reach longer
// than its lease) or released by Shutdown: past it another node may make
// ids with this node id, so a node that did not shut down must stop.
func (n *Node) Lost() <-chan struct{} { return n.claim.Lost() }

// Request sends msg to the grain kind/identity, activating it where
// disthash places it, and waits for the answer, within timeout (0:
// Config.RequestTimeout).
func (n *Node) Request(kind, identity string, msg proto.Message, timeout time.Duration) (any, error) {
	if timeout == 0 {
		timeout = n.cfg.RequestTimeout
	}
	// Options of this call only: protoactor's RequestFuture shares one
	// options value across calls and clusters, so it is not used.
	return n.cluster.Request(identity, kind, msg,
		pcluster.WithTimeout(timeout), pcluster.WithContext(n.system.Root))
}

// Leave is the first step of a graceful leave: this node's member key
// leaves etcd, so the others, seeing it within tens of milliseconds,
// place its identities elsewhere, while its grains and its remote go on
// (what still reaches them is handed on: directory.Leave). It is no
// longer Joined. Shutdown then stops the grains and the remote. Calling
// it again, or Shutdown without it, is fine.
func (n *Node) Leave() error {
	n.leaving.Store(true)
	// The provider's own Shutdown deregisters and stops its watch; the
	// cluster's Shutdown calls it again, which then does nothing.
	if err := n.cluster.Config.ClusterProvider.Shutdown(true); err != nil {
		return fmt.Errorf("cluster: leaving: %w", err)
	}
	return nil
}

// Shutdown leaves the cluster gracefully: this node's key leaves etcd (the
// others place its identities elsewhere at once), its grains are stopped
// (each gets Stopping and Stopped), the remote stops; then the node id is
// released. protoactor waits 2 s of it for ownership to move. Shutdown
// waits until ctx ends, and releases the id in any case.
//
// protoactor's cluster shuts the actor system down too: do not call
// system.Shutdown after it (the second close panics; see
// system.IsStopped). Calling Shutdown again does nothing.
func (n *Node) Shutdown(ctx context.Context) error {
	n.shutdownOnce.Do(func() {
		n.leaving.Store(true)
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer func() {
				// protoactor's endpoint manager, stopping, sends on the
				// channel of every stream reader it still lists, and a
				// reader whose stream ends at that moment has closed its
				// channel but not yet left the list: "send on closed
				// channel" (cluster/doc.go). What is left to stop then is
				// the gRPC server.
				if r := recover(); r != nil {
					n.cluster.Remote.Shutdown(false)
				}
			}()
			n.cluster.Shutdown(true)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			n.shutdownErr = fmt.Errorf("cluster: leaving: %w", ctx.Err())
		}
		n.system.EventStream.Unsubscribe(n.sub)
		n.stopProvider()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		n.shutdownErr = errors.Join(n.shutdownErr, n.claim.Release(rctx))
	})
	return n.shutdownErr
}
