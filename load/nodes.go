package load

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A run may target several nodes of one REWIND cluster (--server a,b,…):
// every session has a home node (placement), dials it, and with
// --reconnect moves to another node when its connection is lost. Counts
// are kept per node, and the parent watches which nodes went away during
// the run (probes of /readyz), so that closes on the nodes that stayed up
// are told apart from those on a node that was killed.

// Node is one server of the run.
type Node struct {
	WS   string `json:"ws"`   // the gateway base, ws://host:port (/ws is added)
	HTTP string `json:"http"` // the HTTP API base, http://host:port
}

// parseServers reads --server: a comma-separated list of node addresses,
// each http://host:port, ws://host:port (or the s variants) or a bare
// host:port; the other scheme is derived. The same address may be listed
// twice (two "nodes" on one server, to exercise the code paths).
func parseServers(list string) ([]Node, error) {
	var nodes []Node
	for raw := range strings.SplitSeq(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		if !strings.Contains(raw, "://") {
			raw = "http://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("--server: %q is not an address", raw)
		}
		if u.Path != "" && u.Path != "/" && u.Path != "/ws" {
			return nil, fmt.Errorf("--server: %q: give the node's base address, without a path", raw)
		}
		var n Node
		switch u.Scheme {
		case "http", "ws":
			n = Node{WS: "ws://" + u.Host, HTTP: "http://" + u.Host}
		case "https", "wss":
			n = Node{WS: "wss://" + u.Host, HTTP: "https://" + u.Host}
		default:
			return nil, fmt.Errorf("--server: %q: use http://, ws:// or host:port", raw)
		}
		nodes = append(nodes, n)
	}
	if len(nodes) == 0 {
		return nil, errors.New("--server: no address")
	}
	if len(nodes) > 64 {
		return nil, errors.New("--server: at most 64 nodes")
	}
	return nodes, nil
}

// homeNode is the node session i of a run starts on, round robin by user
// (each account has one session): paired sessions by their pair, pair p
// = sessions 2p (side A) and 2p+1 (side B) on node p mod n, or with cross
// its side B on node (p+1) mod n; the sessions after the pairs, and every
// session of a run without pairs, on node i mod n.
func homeNode(i, pairs, n int, cross bool) int {
	if n <= 1 {
		return 0
	}
	if i >= 2*pairs {
		return i % n
	}
	p := i / 2
	if cross && i%2 == 1 {
		return (p + 1) % n
	}
	return p % n
}

// reconnectNode is the node attempt a (1, 2, …) of session i dials after
// its connection to node lost ended unexpectedly: the other nodes in turn,
// starting at one picked by i (so the sessions of a lost node spread over
// the others), then lost itself, and around again.
func reconnectNode(lost, i, a, n int) int {
	if n <= 1 {
		return 0
	}
	k := (a - 1) % n
	if k == n-1 {
		return lost
	}
	return (lost + 1 + (i+k)%(n-1)) % n
}

// nodeCounter indexes the figures a worker keeps per node.
type nodeCounter int

const (
	nSessions      nodeCounter = iota // sessions placed on the node (home)
	nAuthenticated                    // connections authenticated there
	nOpen                             // sessions authenticated there now (a gauge)
	nMovedIn                          // ... of them after a loss on another node
	nSent                             // dm sends written by its sessions
	nAcked                            // ... echoed there
	nDelivered                        // dm events received there (live)
	nCaughtUp                         // dm messages caught up from history there
	nUnexpected                       // unexpected closes of its connections
	nConnectFailed                    // dials that failed
	// the final check, by the receiving session's last node: found in
	// history, missing from it, not checked
	nFoundAtEnd
	nMissingAtEnd
	nUncheckedAtEnd
	nNodeCounters
)

var nodeCounterNames = [nNodeCounters]string{
	"sessions", "authenticated", "open", "moved_in", "sent", "acked", "delivered", "caught_up",
	"unexpected_closes", "connect_failed",
	"found_in_history_at_end", "missing_from_history_at_end", "not_checked_at_end",
}

// nodeCounters are one worker's figures of one node.
type nodeCounters [nNodeCounters]atomic.Int64

func (c *nodeCounters) add(k nodeCounter, n int64) { c[k].Add(n) }

func (c *nodeCounters) snapshot() map[string]int64 {
	m := make(map[string]int64, nNodeCounters)
	for i := range c {
		m[nodeCounterNames[i]] = c[i].Load()
	}
	return m
}

// NodeResult is one node's figures over the run.
type NodeResult struct {
	Index   int    `json:"index"` // 1-based, in --server order
	Gateway string `json:"gateway"`
	HTTP    string `json:"http"`
	// Sessions placed on it; authenticated: connections authenticated
	// there (reconnections included); open at the end; moved in: of the
	// authenticated, after a loss on another node.
	Sessions      int64 `json:"sessions"`
	Authenticated int64 `json:"authenticated"`
	OpenAtEnd     int64 `json:"open_at_end"`
	MovedIn       int64 `json:"moved_in"`
	// dm: sent by its sessions, acknowledged there, delivered live to its
	// sessions, caught up from history by its sessions.
	Sent             int64 `json:"sent"`
	Acked            int64 `json:"acknowledged"`
	Delivered        int64 `json:"delivered"`
	CaughtUp         int64 `json:"caught_up"`
	UnexpectedCloses int64 `json:"unexpected_closes"`
	ConnectFailed    int64 `json:"connect_failed"`
	// dm --reconnect: the acknowledged messages never delivered to its
	// sessions (by the node each was last connected to), as the final
	// check left them (ReconnectResult).
	FoundAtEnd     int64 `json:"found_in_history_at_end"`
	MissingAtEnd   int64 `json:"missing_from_history_at_end"`
	UncheckedAtEnd int64 `json:"not_checked_at_end"`
	// Probes of /readyz every probeInterval while the scenario ran (only
	// with two nodes or more); the node went away when two in a row
	// failed, first at WentAwayAt.
	Probes        int       `json:"probes"`
	ProbeFailures int       `json:"probe_failures"`
	WentAway      bool      `json:"went_away"`
	WentAwayAt    time.Time `json:"went_away_at,omitzero"`
}

// probeInterval is how often the parent asks each node /readyz.
const probeInterval = 500 * time.Millisecond

// nodeWatch probes every node's /readyz and remembers which went away.
type nodeWatch struct {
	nodes []Node
	c     *http.Client

	mu     sync.Mutex
	probes []int
	fails  []int
	run    []int // failures in a row now
	away   []time.Time
}

func newNodeWatch(nodes []Node) *nodeWatch {
	n := len(nodes)
	return &nodeWatch{nodes: nodes, c: &http.Client{Timeout: 2 * time.Second},
		probes: make([]int, n), fails: make([]int, n), run: make([]int, n), away: make([]time.Time, n)}
}

// watch probes until ctx ends.
func (nw *nodeWatch) watch(ctx context.Context) {
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for i := range nw.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				nw.record(i, probe(ctx, nw.c, nw.nodes[i].HTTP+"/readyz"), time.Now())
			}()
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// record takes one probe's outcome; a probe cut short by the end of the
// watch does not count.
func (nw *nodeWatch) record(i int, err error, at time.Time) {
	if errors.Is(err, context.Canceled) {
		return
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.probes[i]++
	if err == nil {
		nw.run[i] = 0
		return
	}
	nw.fails[i]++
	nw.run[i]++
	if nw.run[i] == 2 && nw.away[i].IsZero() {
		nw.away[i] = at
	}
}

func probe(ctx context.Context, c *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return context.Canceled
		}
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// fill copies the probes' figures into the nodes' results.
func (nw *nodeWatch) fill(nodes []NodeResult) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for i := range nodes {
		nodes[i].Probes, nodes[i].ProbeFailures = nw.probes[i], nw.fails[i]
		nodes[i].WentAway, nodes[i].WentAwayAt = !nw.away[i].IsZero(), nw.away[i]
	}
}

// mergeNodes adds a worker's per-node counts into the results.
func mergeNodes(into []NodeResult, counts []map[string]int64) {
	for i, c := range counts {
		if i >= len(into) {
			return
		}
		n := &into[i]
		n.Sessions += c["sessions"]
		n.Authenticated += c["authenticated"]
		n.OpenAtEnd += c["open"]
		n.MovedIn += c["moved_in"]
		n.Sent += c["sent"]
		n.Acked += c["acked"]
		n.Delivered += c["delivered"]
		n.CaughtUp += c["caught_up"]
		n.UnexpectedCloses += c["unexpected_closes"]
		n.ConnectFailed += c["connect_failed"]
		n.FoundAtEnd += c["found_in_history_at_end"]
		n.MissingAtEnd += c["missing_from_history_at_end"]
		n.UncheckedAtEnd += c["not_checked_at_end"]
	}
}
