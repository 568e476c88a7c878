package cluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rewind-chat/rewind/cluster/etcdtest"
)

// echoKind is the test's grain kind: an echo answers a StringValue with
// "<its node's address> <its identity>", and counts its activations.
const echoKind = "echo"

type echoes struct {
	activations atomic.Int64
	mu          sync.Mutex
	identities  map[string]int // activations by identity
	live        map[string]int // activations not stopped, by identity
}

// liveOn returns the identities with a live activation.
func (e *echoes) liveOn() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	live := map[string]int{}
	for id, n := range e.live {
		if n != 0 {
			live[id] = n
		}
	}
	return live
}

func newEchoKind(e *echoes) *pcluster.Kind {
	e.identities, e.live = map[string]int{}, map[string]int{}
	return pcluster.NewKind(echoKind, actor.PropsFromProducer(func() actor.Actor { return &echo{echoes: e} }))
}

type echo struct {
	echoes   *echoes
	identity string
}

func (a *echo) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *pcluster.ClusterInit:
		a.identity = msg.Identity.Identity
		a.echoes.activations.Add(1)
		a.echoes.mu.Lock()
		a.echoes.identities[a.identity]++
		a.echoes.live[a.identity]++
		a.echoes.mu.Unlock()
	case *actor.Stopped:
		a.echoes.mu.Lock()
		a.echoes.live[a.identity]--
		a.echoes.mu.Unlock()
	case *wrapperspb.StringValue:
		ctx.Respond(wrapperspb.String(ctx.ActorSystem().Address() + " " + a.identity))
	}
}

// testNode is one node of a test cluster: its own actor system, remote
// port and echoes.
type testNode struct {
	*Node
	echoes *echoes
}

func uniqueName(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

func quietSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}))
}

func startNode(t *testing.T, etcd []string, name string, id int64) (*testNode, error) {
	t.Helper()
	e := &echoes{}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	n, err := Start(ctx, quietSystem(), Config{
		Name: name, Etcd: etcd, Addr: "127.0.0.1:0", NodeID: id, Kinds: []*pcluster.Kind{newEchoKind(e)},
		ExpelGrace: time.Second,
	})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Errorf("shutdown %s: %v", n.Address(), err)
		}
	})
	return &testNode{Node: n, echoes: e}, nil
}

// startNodes starts len(ids) nodes at once.
func startNodes(t *testing.T, etcd []string, name string, ids ...int64) []*testNode {
	t.Helper()
	nodes := make([]*testNode, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { nodes[i], errs[i] = startNode(t, etcd, name, id) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	// Leave together (each takes protoactor's 2 s); the nodes' own
	// cleanups then find them stopped.
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				if err := n.Shutdown(ctx); err != nil {
					t.Errorf("shutdown %s: %v", n.Address(), err)
				}
			})
		}
		wg.Wait()
	})
	return nodes
}

// waitFor polls cond every 20ms until it holds, failing t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// ask calls identity's echo from n and returns the address of the node
// that answered.
func ask(n *Node, identity string, timeout time.Duration) (string, error) {
	resp, err := n.Request(echoKind, identity, wrapperspb.String("ping"), timeout)
	if err != nil {
		return "", err
	}
	s, ok := resp.(*wrapperspb.StringValue)
	if !ok {
		return "", fmt.Errorf("answer %T", resp)
	}
	addr, id, _ := strings.Cut(s.Value, " ")
	if id != identity {
		return "", fmt.Errorf("answered by %q, not %q", id, identity)
	}
	return addr, nil
}

func allMembers(nodes []*testNode, want int) func() bool {
	return func() bool {
		for _, n := range nodes {
			if !n.Joined() || n.Members() != want {
				return false
			}
		}
		return true
	}
}

func identities(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("id-%d", i)
	}
	return ids
}

// owners asks every identity from every node and requires that they all
// name the same node; it returns each identity's node.
func owners(t *testing.T, nodes []*testNode, ids []string) map[string]string {
	t.Helper()
	owner := map[string]string{}
	for _, id := range ids {
		for _, n := range nodes {
			addr, err := ask(n.Node, id, 5*time.Second)
			require.NoError(t, err, "%s from %s", id, n.Address())
			if prev, ok := owner[id]; ok {
				require.Equal(t, prev, addr, "%s lives on one node", id)
			}
			owner[id] = addr
		}
	}
	return owner
}

// TestThreeNodesOneIdentityOneNode: three nodes on one etcd see three
// members; each identity answers from one node, whichever node calls; a
// node that leaves hands its identities to the two others, and the
// others' identities stay where they are; a node that joins takes over
// some, whose old activations stop, so that once the membership has
// settled every identity lives once.
func TestThreeNodesOneIdentityOneNode(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
	e := etcdtest.Start(t)
	name := uniqueName(t)
	start := time.Now()
	nodes := startNodes(t, e.Endpoints(), name, 1, 2, 3)
	started := time.Since(start)
	waitFor(t, 10*time.Second, "three members seen by all", allMembers(nodes, 3))
	t.Logf("3 nodes started in %v, all saw 3 members after %v", started.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for _, n := range nodes {
		require.ElementsMatch(t, []string{nodes[0].Address(), nodes[1].Address(), nodes[2].Address()}, n.MemberAddresses())
	}

	ids := identities(30)
	owner := owners(t, nodes, ids)
	hosted := map[string][]string{}
	for id, addr := range owner {
		hosted[addr] = append(hosted[addr], id)
	}
	var total int64
	for _, n := range nodes {
		require.NotEmpty(t, hosted[n.Address()], "disthash spreads 30 identities over 3 nodes")
		total += n.echoes.activations.Load()
		n.echoes.mu.Lock()
		for id, count := range n.echoes.identities {
			require.Equal(t, 1, count, "%s activated once", id)
			require.Equal(t, n.Address(), owner[id], "%s activated where it answers", id)
		}
		n.echoes.mu.Unlock()
		sent, received := n.RemoteMessages()
		require.NotZero(t, sent, "remote messages sent by %s", n.Address())
		require.NotZero(t, received, "remote messages received by %s", n.Address())
		t.Logf("%s: %d identities, remote messages sent %d, received %d", n.Address(), len(hosted[n.Address()]), sent, received)
	}
	require.EqualValues(t, len(ids), total, "each identity activated on exactly one node")
	requireMetrics(t, nodes[0].Node, 3)

	// The first node leaves gracefully.
	leaving, survivors := nodes[0], nodes[1:]
	moved := hosted[leaving.Address()]
	left := time.Now()
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		shut <- leaving.Shutdown(ctx)
	}()
	require.Eventually(t, func() bool { return !leaving.Joined() }, time.Second, time.Millisecond, "not joined once leaving")
	waitFor(t, 10*time.Second, "survivors see 2 members", allMembers(survivors, 2))
	seen := time.Since(left)
	waitMoved(t, survivors, moved, leaving.Address(), 10*time.Second)
	answered := time.Since(left)
	t.Logf("node left gracefully (from the call of Shutdown): survivors saw 2 members after %v; its %d identities all answered from survivors after %v",
		seen.Round(time.Millisecond), len(moved), answered.Round(time.Millisecond))
	require.NoError(t, <-shut)
	t.Logf("graceful Shutdown took %v", time.Since(left).Round(time.Millisecond))

	after := owners(t, survivors, ids)
	for _, id := range ids {
		if owner[id] != leaving.Address() {
			require.Equal(t, owner[id], after[id], "%s stays where it was", id)
		}
	}
	requireMetrics(t, survivors[0].Node, 2)

	// A fourth node joins the two.
	joining := time.Now()
	late, err := startNode(t, e.Endpoints(), name, 4)
	require.NoError(t, err)
	nodes = []*testNode{survivors[0], survivors[1], late}
	waitFor(t, 10*time.Second, "three members again", allMembers(nodes, 3))
	t.Logf("a fourth node started and all saw 3 members after %v", time.Since(joining).Round(time.Millisecond))
	final := owners(t, nodes, ids)
	took := 0
	for _, id := range ids {
		if final[id] == late.Address() {
			took++
		} else {
			require.Equal(t, after[id], final[id], "%s stays unless the new node takes it", id)
		}
	}
	require.NotZero(t, took, "the new node takes some of 30 identities")
	// The old activations of what moved are stopped by their nodes
	// (disthash poisons what a topology change moved away).
	waitFor(t, 10*time.Second, "one live activation per identity", func() bool {
		live := map[string]int{}
		for _, n := range nodes {
			for id, count := range n.echoes.liveOn() {
				live[id] += count
				if final[id] != n.Address() {
					return false
				}
			}
		}
		for _, id := range ids {
			if live[id] != 1 {
				return false
			}
		}
		return true
	})
	t.Logf("the new node took %d identities; each identity lives once", took)
}

// waitMoved calls each identity in moved from each survivor until every
// one answers from a survivor, and returns how long that took.
func waitMoved(t *testing.T, survivors []*testNode, moved []string, gone string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	pending := map[string]bool{}
	for _, id := range moved {
		pending[id] = true
	}
	for len(pending) > 0 {
		if time.Since(start) > timeout {
			t.Fatalf("identities of %s not answered from survivors within %v: %v", gone, timeout, pending)
		}
		for id := range pending {
			ok := true
			for _, n := range survivors {
				addr, err := ask(n.Node, id, 500*time.Millisecond)
				if err != nil || addr == gone {
					ok = false
					break
				}
			}
			if ok {
				delete(pending, id)
			}
		}
	}
	return time.Since(start)
}

func requireMetrics(t *testing.T, n *Node, members int) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.Collectors()...)
	families, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.Metric {
			key := f.GetName()
			for _, l := range m.Label {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.Gauge != nil:
				got[key] = m.Gauge.GetValue()
			case m.Counter != nil:
				got[key] = m.Counter.GetValue()
			}
		}
	}
	require.Equal(t, float64(members), got["rewind_cluster_members"])
	require.Equal(t, 1.0, got["rewind_cluster_joined"])
	require.Positive(t, got["rewind_cluster_remote_messages_total{direction=sent}"])
	require.Positive(t, got["rewind_cluster_remote_messages_total{direction=received}"])
}

// TestSecondNodeWithTheSameIDRefused: a node whose id is held refuses to
// start, naming the holder by its remote address; once the holder has
// shut down, the id is free at once.
func TestSecondNodeWithTheSameIDRefused(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
	e := etcdtest.Start(t)
	name := uniqueName(t)
	first, err := startNode(t, e.Endpoints(), name, 5)
	require.NoError(t, err)
	_, err = startNode(t, e.Endpoints(), name, 5)
	require.ErrorIs(t, err, ErrNodeIDHeld)
	require.EqualError(t, err, fmt.Sprintf("node id 5 is held by %s (cluster %s)", first.Address(), name))

	require.NoError(t, first.Shutdown(t.Context()))
	select {
	case <-first.Lost():
	default:
		t.Fatal("Lost not closed by Shutdown")
	}
	second, err := startNode(t, e.Endpoints(), name, 5)
	require.NoError(t, err)
	waitFor(t, 10*time.Second, "the second joins alone", allMembers([]*testNode{second}, 1))
}

func TestConfigRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no etcd", Config{Addr: "127.0.0.1:0"}, "cluster: no etcd endpoints (REWIND_CLUSTER_ETCD)"},
		{"bad name", Config{Name: "a b", Etcd: []string{"x"}, Addr: "127.0.0.1:0"}, `cluster name "a b": letters, digits, '-' and '_' only (1 to 64)`},
		{"no port", Config{Etcd: []string{"x"}, Addr: "127.0.0.1"}, `cluster address "127.0.0.1" (REWIND_CLUSTER_ADDR): address 127.0.0.1: missing port in address`},
		{"bad port", Config{Etcd: []string{"x"}, Addr: "127.0.0.1:x"}, `cluster address "127.0.0.1:x" (REWIND_CLUSTER_ADDR): bad port`},
		{"unspecified", Config{Etcd: []string{"x"}, Addr: "0.0.0.0:7000"}, `cluster address "0.0.0.0:7000" (REWIND_CLUSTER_ADDR): the host must be one the other nodes can reach`},
		{"no host", Config{Etcd: []string{"x"}, Addr: ":7000"}, `cluster address ":7000" (REWIND_CLUSTER_ADDR): the host must be one the other nodes can reach`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(t.Context(), quietSystem(), tc.cfg)
			require.EqualError(t, err, tc.want)
		})
	}
}

// The helper node: a child test binary running one node until killed.
const helperEnv = "REWIND_CLUSTER_TEST_HELPER"

// TestHelperNode is the child's body, not a test of its own: it joins the
// cluster named in its environment, prints its address, and runs until
// killed (or its stdin closes, should the parent die).
func TestHelperNode(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("runs only as the child of TestKilledNodeIdentitiesMove")
	}
	etcd, name, _ := strings.Cut(spec, " ")
	e := &echoes{}
	n, err := Start(t.Context(), quietSystem(), Config{
		Name: name, Etcd: []string{etcd}, Addr: "127.0.0.1:0", NodeID: 9, ClaimTTL: 3 * time.Second,
		Kinds: []*pcluster.Kind{newEchoKind(e)},
	})
	require.NoError(t, err)
	fmt.Printf("helper-address %s\n", n.Address())
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// TestKilledNodeIdentitiesMove: a node killed with SIGKILL (no goodbye:
// its etcd keys go when their leases end) hands its identities to the
// others, and its node id is free once its claim's lease ends.
func TestKilledNodeIdentitiesMove(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
	e := etcdtest.Start(t)
	name := uniqueName(t)
	nodes := startNodes(t, e.Endpoints(), name, 1, 2)

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperNode$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+e.Endpoint+" "+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	waited := make(chan struct{})
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		stdin.Close()
		<-waited
	})
	addrs := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "helper-address "); ok {
				addrs <- a
			}
		}
		_ = cmd.Wait()
		close(waited)
	}()
	var helper string
	select {
	case helper = <-addrs:
	case <-time.After(20 * time.Second):
		t.Fatal("the helper node did not start")
	}
	waitFor(t, 10*time.Second, "three members seen by the two", allMembers(nodes, 3))

	ids := identities(30)
	owner := owners(t, nodes, ids)
	var moved []string
	for id, addr := range owner {
		if addr == helper {
			moved = append(moved, id)
		}
	}
	require.NotEmpty(t, moved, "the helper hosts some of 30 identities")

	require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL))
	<-waited
	killed := time.Now()
	waitFor(t, 15*time.Second, "survivors see 2 members", allMembers(nodes, 2))
	seen := time.Since(killed)
	waitMoved(t, nodes, moved, helper, 15*time.Second)
	answered := time.Since(killed)
	t.Logf("node killed (from SIGKILL): survivors saw 2 members after %v; its %d identities all answered from survivors after %v",
		seen.Round(time.Millisecond), len(moved), answered.Round(time.Millisecond))

	// Its node id comes free when its claim's lease (3 s here) ends.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := ClaimNodeID(ctx, ClaimConfig{Cluster: name, Etcd: e.Endpoints(), NodeID: 9, Holder: "next", Wait: 8 * time.Second})
	require.NoError(t, err)
	t.Logf("the killed node's id was claimed again %v after the kill", time.Since(killed).Round(time.Millisecond))
	require.NoError(t, c.Release(t.Context()))
}

// TestExpelledNodeStops: a member whose etcd key goes away, as when its
// lease expires while etcd is out of reach or the process stalls, is kept
// out for good by protoactor; Expelled closes after ExpelGrace (1 s here)
// so that the server stops it rather than hold sessions no one routes to.
func TestExpelledNodeStops(t *testing.T) {
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
	deleted, err := c.Delete(t.Context(), nodes[1].MemberKey())
	require.NoError(t, err)
	require.EqualValues(t, 1, deleted.Deleted, "node 2's member key")

	waitFor(t, 10*time.Second, "node 2 expelled", func() bool {
		select {
		case <-nodes[1].Expelled():
			return true
		default:
			return false
		}
	})
	require.False(t, nodes[1].Joined())
	waitFor(t, 10*time.Second, "node 1 alone", allMembers(nodes[:1], 1))
	select {
	case <-nodes[0].Expelled():
		t.Fatal("node 1, still a member, expelled")
	default:
	}
}
