package clustertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rewind-chat/rewind/cluster/etcdtest"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres/pgtest"
	"github.com/rewind-chat/rewind/persistence/storeurl"
)

// Bounds of the harness's waits.
const (
	// BuildTimeout bounds `go build` of the rewind binary.
	BuildTimeout = 5 * time.Minute
	// ReadyTimeout bounds the wait for a node's /readyz to answer 200.
	ReadyTimeout = 30 * time.Second
	// StopTimeout bounds the wait for a signalled node to exit.
	StopTimeout = 15 * time.Second
)

// maxLog is how much of a node's stderr is kept (its tail); logTail is
// how much of it a failed test logs.
const (
	maxLog  = 4 << 20
	logTail = 64 << 10
)

// build is the one `go build` of a test binary's run.
var (
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

// Binary returns the path of the rewind binary, built once per test
// binary with `go build` into a temporary directory, without the race
// detector whatever GOFLAGS say: a node runs protoactor's cluster, whose
// own data races -race would report (see package cluster's doc). Main
// removes it when the tests end.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "rewind-clustertest-")
		if buildErr != nil {
			return
		}
		buildPath = filepath.Join(buildDir, "rewind")
		ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
		defer cancel()
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", buildPath, "github.com/rewind-chat/rewind/cmd/rewind")
		cmd.Env = withoutRace(os.Environ())
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/rewind: %v\n%s", err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "clustertest: built %s in %v\n", buildPath, time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatalf("clustertest: %v", buildErr)
	}
	return buildPath
}

// Main runs the tests and removes the binary Binary built; a test
// package's TestMain is
//
//	func TestMain(m *testing.M) { os.Exit(clustertest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	return code
}

// withoutRace is env with -race taken out of GOFLAGS.
func withoutRace(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GOFLAGS="); ok {
			var keep []string
			for _, f := range strings.Fields(v) {
				if f != "-race" && f != "-race=true" {
					keep = append(keep, f)
				}
			}
			kv = "GOFLAGS=" + strings.Join(keep, " ")
		}
		out = append(out, kv)
	}
	return out
}

// Cluster is a test's cluster: one etcd, one PostgreSQL schema that every
// node serves, the token secret they share, and the nodes started so far.
type Cluster struct {
	t testing.TB
	// Name is the cluster's name (REWIND_CLUSTER_NAME), unique per test.
	Name string
	// Etcd is the cluster's etcd (REWIND_CLUSTER_ETCD).
	Etcd *etcdtest.Etcd
	// DatabaseURL is the nodes' REWIND_DATABASE_URL: a schema of its own
	// on the test PostgreSQL (pgtest), dropped when the test ends.
	DatabaseURL string
	// Secret is the nodes' REWIND_TOKEN_SECRET, so that the test issues
	// tokens every node takes.
	Secret string
	// Store is the test's own connection to the nodes' database, opened
	// (and migrated) before any node starts.
	Store persistence.Store

	binary string
	mu     sync.Mutex
	nodes  []*Node
	ids    int64 // users made so far
}

// New makes the cluster's etcd and database, and builds the binary; it
// starts no node. It skips t without etcd or PostgreSQL, and fails it
// instead when they are required (REWIND_REQUIRE_ETCD=1 or CI=true;
// REWIND_REQUIRE_POSTGRES=1).
func New(t testing.TB) *Cluster {
	t.Helper()
	e := etcdtest.Start(t)
	dbURL := pgtest.NewSchemaURL(t)
	c := &Cluster{t: t, Name: "t" + randomHex(4), Etcd: e, DatabaseURL: dbURL, Secret: randomHex(32)}
	c.binary = Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := storeurl.Open(ctx, dbURL)
	if err != nil {
		t.Fatalf("clustertest: open the nodes' database: %v", err)
	}
	c.Store = store
	t.Cleanup(func() { store.Close() })
	return c
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Nodes returns the nodes started so far, in the order they were.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// Live returns the nodes whose process has not exited.
func (c *Cluster) Live() []*Node {
	var live []*Node
	for _, n := range c.Nodes() {
		if !n.Exited() {
			live = append(live, n)
		}
	}
	return live
}

// Env is a node's settings on top of the harness's: a REWIND_* variable
// and its value; an empty value unsets the variable.
type Env map[string]string

// StartNodes starts nodes with the ids given, all at once, and waits for
// each to be ready; it fails t if one is not within ReadyTimeout.
func (c *Cluster) StartNodes(ids ...int64) []*Node {
	c.t.Helper()
	nodes := make([]*Node, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { nodes[i], errs[i] = c.startReady(id, nil) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Fatalf("clustertest: %v", err)
	}
	return nodes
}

// StartNode starts one node with id and waits for it to be ready.
func (c *Cluster) StartNode(id int64, env Env) *Node {
	c.t.Helper()
	n, err := c.startReady(id, env)
	if err != nil {
		c.t.Fatalf("clustertest: %v", err)
	}
	return n
}

func (c *Cluster) startReady(id int64, env Env) (*Node, error) {
	for attempt := 1; ; attempt++ {
		n, err := c.Launch(id, env)
		if err != nil {
			return nil, err
		}
		err = n.WaitReady(ReadyTimeout)
		if err == nil {
			n.ReadyAfter = time.Since(n.Started)
			return n, nil
		}
		// A port taken between our probe and the node's listen makes the
		// node exit with "address already in use": new ports, again.
		if attempt < 3 && n.Exited() && strings.Contains(n.Stderr(), "address already in use") {
			c.t.Logf("clustertest: node %d: a port was taken, trying new ones: %s", id, lastLine(n.Stderr()))
			c.forget(n)
			continue
		}
		return nil, err
	}
}

// forget drops n, which exited, from the cluster's nodes.
func (c *Cluster) forget(n *Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.nodes {
		if m == n {
			c.nodes = append(c.nodes[:i], c.nodes[i+1:]...)
			return
		}
	}
}

// Launch starts a node's process with id and returns without waiting for
// it to be ready (a test of a node that must refuse to start uses it).
// The node gets two free loopback ports, for REWIND_ADDR and
// REWIND_CLUSTER_ADDR, the cluster's etcd, database and secret, and env
// on top. t's cleanup kills the node's process group and reaps it, and
// logs the node's stderr if t failed.
func (c *Cluster) Launch(id int64, env Env) (*Node, error) {
	c.t.Helper()
	return c.launch(id, env)
}

func (c *Cluster) launch(id int64, env Env) (*Node, error) {
	ports, err := etcdtest.FreePorts(2)
	if err != nil {
		return nil, err
	}
	n := &Node{
		c:           c,
		ID:          id,
		Addr:        fmt.Sprintf("127.0.0.1:%d", ports[0]),
		ClusterAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		done:        make(chan struct{}),
		log:         &tailBuffer{max: maxLog},
	}
	settings := map[string]string{
		"REWIND_ADDR":                          n.Addr,
		"REWIND_DATABASE_URL":                  c.DatabaseURL,
		"REWIND_TOKEN_SECRET":                  c.Secret,
		"REWIND_NODE_ID":                       strconv.FormatInt(id, 10),
		"REWIND_CLUSTER_ETCD":                  c.Etcd.Endpoint,
		"REWIND_CLUSTER_NAME":                  c.Name,
		"REWIND_CLUSTER_ADDR":                  n.ClusterAddr,
		"REWIND_WS_MAX_UNAUTHENTICATED_PER_IP": "0",
		"REWIND_WS_RATE":                       "0",
		"REWIND_AUTH_RATE":                     "0",
		"REWIND_LOG_LEVEL":                     "info",
		"REWIND_LOG_FORMAT":                    "json",
	}
	for k, v := range env {
		settings[k] = v
	}
	cmd := exec.Command(c.binary, "serve")
	// Nothing of the test's own REWIND_* environment (CI's REWIND_REQUIRE_*,
	// a developer's REWIND_DATABASE_URL) reaches the node.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REWIND_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range settings {
		if v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Stdout, cmd.Stderr = n.log, n.log
	// Its own process group, so that a kill reaches whatever it started;
	// and killed with the test binary should that die first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node %d: %w", id, err)
	}
	n.cmd, n.Started = cmd, time.Now()
	go func() {
		_ = cmd.Wait() // also waits for the copies of stdout and stderr
		n.state = cmd.ProcessState
		close(n.done)
	}()
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	c.t.Cleanup(func() {
		n.stop(syscall.SIGKILL, StopTimeout)
		if c.t.Failed() {
			c.t.Logf("node %d (http %s, cluster %s) %s; its stderr (last %d KiB):\n%s",
				n.ID, n.Addr, n.ClusterAddr, n.describeExit(), logTail>>10, tail(n.Stderr(), logTail))
		}
	})
	return n, nil
}

// Node is one `rewind serve` process.
type Node struct {
	c *Cluster
	// ID is its REWIND_NODE_ID.
	ID int64
	// Addr is its REWIND_ADDR (HTTP and WebSocket), 127.0.0.1:port.
	Addr string
	// ClusterAddr is its REWIND_CLUSTER_ADDR.
	ClusterAddr string
	// Started is when its process started; ReadyAfter how long it then
	// took to answer /readyz 200 (set by StartNode and StartNodes).
	Started    time.Time
	ReadyAfter time.Duration

	cmd   *exec.Cmd
	done  chan struct{} // closed when the process has been reaped
	state *os.ProcessState
	log   *tailBuffer
}

func (n *Node) String() string { return fmt.Sprintf("node %d (%s)", n.ID, n.Addr) }

// URL is the node's HTTP URL of path.
func (n *Node) URL(path string) string { return "http://" + n.Addr + path }

// WebSocketURL is the node's /ws of protocol version 1 or 2.
func (n *Node) WebSocketURL(version int) string {
	if version == 2 {
		return "ws://" + n.Addr + "/ws?v=2"
	}
	return "ws://" + n.Addr + "/ws"
}

// PID is the node's process id (and its process group's).
func (n *Node) PID() int { return n.cmd.Process.Pid }

// Done is closed when the process has exited and been reaped.
func (n *Node) Done() <-chan struct{} { return n.done }

// Exited reports whether the process has exited.
func (n *Node) Exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// Stderr is what the node wrote so far (its log; the last 4 MiB of it).
func (n *Node) Stderr() string { return n.log.String() }

// Ready asks /readyz once.
func (n *Node) Ready() (int, error) {
	hc := http.Client{Timeout: time.Second}
	resp, err := hc.Get(n.URL("/readyz"))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// WaitReady polls /readyz until it answers 200, the process exits, or
// timeout passes.
func (n *Node) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		code, err := n.Ready()
		switch {
		case code == http.StatusOK:
			return nil
		case err != nil:
			last = err.Error()
		default:
			last = fmt.Sprintf("/readyz %d", code)
		}
		select {
		case <-n.done:
			return fmt.Errorf("%s %s before it was ready; its last line: %s", n, n.describeExit(), lastLine(n.Stderr()))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %v (last: %s); its last line: %s", n, timeout, last, lastLine(n.Stderr()))
		}
	}
}

// Kill sends SIGKILL to the node's process group and waits for it to be
// reaped: the node goes without a word to anyone.
func (n *Node) Kill() {
	n.c.t.Helper()
	if err := n.stop(syscall.SIGKILL, StopTimeout); err != nil {
		n.c.t.Fatalf("clustertest: kill %s: %v", n, err)
	}
}

// Signal sends sig to the node's process (SIGTERM starts its drain).
func (n *Node) Signal(sig syscall.Signal) {
	n.c.t.Helper()
	if n.Exited() {
		n.c.t.Fatalf("clustertest: signal %v to %s: it exited already (%s)", sig, n, n.describeExit())
	}
	if err := syscall.Kill(n.cmd.Process.Pid, sig); err != nil {
		n.c.t.Fatalf("clustertest: signal %v to %s: %v", sig, n, err)
	}
}

// WaitExit waits up to timeout for the process to exit and returns its
// exit code (-1 when a signal ended it).
func (n *Node) WaitExit(timeout time.Duration) (int, error) {
	select {
	case <-n.done:
		return n.state.ExitCode(), nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s still running %v later", n, timeout)
	}
}

// stop signals the process group, SIGKILL after timeout, and waits for
// the process to be reaped. Once it has been, nothing is signalled again
// (its group id could be reused).
func (n *Node) stop(sig syscall.Signal, timeout time.Duration) error {
	if n.Exited() {
		return nil
	}
	pgid := n.cmd.Process.Pid
	_ = syscall.Kill(-pgid, sig)
	select {
	case <-n.done:
		return nil
	case <-time.After(timeout):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-n.done:
		return fmt.Errorf("did not exit within %v of %v; killed", timeout, sig)
	case <-time.After(timeout):
		return fmt.Errorf("not reaped within %v of SIGKILL", timeout)
	}
}

// describeExit says how the process ended, or that it runs.
func (n *Node) describeExit() string {
	if !n.Exited() {
		return "running"
	}
	return n.state.String()
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func tail(s string, max int) string {
	if len(s) > max {
		return "…" + s[len(s)-max:]
	}
	return s
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// Metric reads the node's /metrics and returns the value of the sample
// name (one without labels); ok is false when the node does not export it.
func (n *Node) Metric(name string) (value float64, ok bool, err error) {
	hc := http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get(n.URL("/metrics"))
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false, err
	}
	for line := range strings.Lines(string(b)) {
		if v, found := strings.CutPrefix(line, name+" "); found {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil, err
		}
	}
	return 0, false, nil
}

// WaitMembers waits until every live node counts want members of its
// cluster (rewind_cluster_members), and returns how long that took.
func (c *Cluster) WaitMembers(want int, timeout time.Duration) time.Duration {
	c.t.Helper()
	return WaitFor(c.t, timeout, fmt.Sprintf("every live node sees %d members", want), func() bool { return c.AllSee(want) })
}

// AllSee reports whether every live node counts want members of its
// cluster (rewind_cluster_members) now.
func (c *Cluster) AllSee(want int) bool {
	for _, n := range c.Live() {
		v, ok, err := n.Metric("rewind_cluster_members")
		if err != nil || !ok || int(v) != want {
			return false
		}
	}
	return true
}

// WaitFor polls cond every 20 ms until it holds and returns how long that
// took; it fails t if cond does not hold within timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
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

// Owner is the node among nodes on which protoactor's disthash places
// the grain identity (the server's identities: a user's is its id, a
// room's "low-high", see package directory): rendezvous hashing, the
// member whose FNV-1a 32 of identity and then its cluster address is
// highest (protoactor's cluster.Rendezvous). It is the placement once
// every node sees the same members.
func Owner(identity string, nodes []*Node) *Node {
	var best *Node
	var bestScore uint32
	for _, n := range nodes {
		h := fnv.New32a()
		h.Write([]byte(identity))
		h.Write([]byte(n.ClusterAddr))
		if s := h.Sum32(); best == nil || s > bestScore {
			best, bestScore = n, s
		}
	}
	return best
}
