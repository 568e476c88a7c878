package clustertest_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/clustertest"
	"github.com/rewind-chat/rewind/messages"
)

// world is a scenario's users and their traffic: users[i] starts on
// nodes[home[i]], and every two users homed on different nodes are
// friends, each DM a pair across nodes.
type world struct {
	t        *testing.T
	c        *clustertest.Cluster
	nodes    []*clustertest.Node
	users    []clustertest.Account
	home     []int
	ledger   *clustertest.Ledger
	balancer *clustertest.Balancer
	chatters []*clustertest.Chatter
}

// newWorld makes perNode users on each node, befriends the pairs across
// nodes and connects each user's chatter to its home node.
func newWorld(t *testing.T, c *clustertest.Cluster, nodes []*clustertest.Node, perNode int) *world {
	t.Helper()
	w := &world{t: t, c: c, nodes: nodes, ledger: &clustertest.Ledger{}, balancer: c.NewBalancer()}
	w.users = c.NewAccounts("u", len(nodes)*perNode)
	for i := range w.users {
		w.home = append(w.home, i/perNode)
	}
	for i := range w.users {
		for j := i + 1; j < len(w.users); j++ {
			if w.home[i] != w.home[j] {
				c.Befriend(w.users[i], w.users[j])
			}
		}
	}
	for i, u := range w.users {
		var peers []clustertest.Account
		for j, p := range w.users {
			if w.home[j] != w.home[i] {
				peers = append(peers, p)
			}
		}
		ch := c.NewChatter(u, peers, w.ledger, w.balancer)
		require.NoError(t, ch.Connect(nodes[w.home[i]]))
		w.chatters = append(w.chatters, ch)
	}
	return w
}

// onNode returns the chatters homed on node index i.
func (w *world) onNode(i int) []*clustertest.Chatter {
	var out []*clustertest.Chatter
	for u, ch := range w.chatters {
		if w.home[u] == i {
			out = append(out, ch)
		}
	}
	return out
}

// traffic is the chatters' sending, until halt.
type traffic struct {
	t     *testing.T
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	start time.Time
}

// run starts the chatters' traffic; the test's end halts it.
func run(t *testing.T, chatters []*clustertest.Chatter) *traffic {
	tr := &traffic{t: t, stop: make(chan struct{}), start: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	for _, ch := range chatters {
		tr.wg.Go(func() { ch.Run(ctx, tr.stop) })
	}
	t.Cleanup(func() { tr.halt(); cancel() })
	return tr
}

// halt stops the traffic and waits for every send in flight to finish
// (each is acknowledged or has given up by then).
func (tr *traffic) halt() {
	tr.once.Do(func() { close(tr.stop) })
	done := make(chan struct{})
	go func() { tr.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(4 * clustertest.SendTimeout):
		tr.t.Errorf("the traffic did not stop within %v of halt", 4*clustertest.SendTimeout)
	}
}

// waitAcks waits until the ledger holds n acknowledged sends more than
// it held when asked.
func (w *world) waitAcks(n int, timeout time.Duration) {
	w.t.Helper()
	base := w.ledger.Len()
	clustertest.WaitFor(w.t, timeout, fmt.Sprintf("%d more acknowledged sends", n), func() bool {
		w.requireNoChatterError()
		return w.ledger.Len() >= base+n
	})
}

// ackedSince is how many sends each chatter had acknowledged, begun at
// or after since.
func (w *world) ackedSince(since time.Time) map[int64]int {
	n := map[int64]int{}
	for _, a := range w.ledger.Acks() {
		if !a.Start.Before(since) {
			n[a.Author]++
		}
	}
	return n
}

// waitEveryChatter waits until each chatter has n acknowledged sends
// begun at or after since.
func (w *world) waitEveryChatter(n int, since time.Time, timeout time.Duration) time.Duration {
	w.t.Helper()
	return clustertest.WaitFor(w.t, timeout, fmt.Sprintf("every chatter has %d sends acknowledged", n), func() bool {
		w.requireNoChatterError()
		acked := w.ackedSince(since)
		for _, ch := range w.chatters {
			if acked[ch.Account.ID] < n {
				return false
			}
		}
		return true
	})
}

func (w *world) requireNoChatterError() {
	w.t.Helper()
	for _, ch := range w.chatters {
		require.NoError(w.t, ch.Err(), "chatter %s", ch.Name)
	}
}

// checkStored requires every acknowledged send in the database exactly
// once, and logs what it found.
func (w *world) checkStored() clustertest.StoredCheck {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := w.c.CheckStored(ctx, w.ledger)
	require.NoError(w.t, err)
	w.t.Logf("history: %d sends acknowledged, each stored exactly once: %v; %d messages stored, %d of them never acknowledged",
		r.Acked, len(r.Problems) == 0, r.Stored, r.Unacked)
	require.Empty(w.t, r.Problems, "acknowledged messages lost or stored twice")
	require.NotZero(w.t, r.Acked)
	return r
}

// checkDelivered waits for the acknowledged sends' events, catches the
// missed ones up from history, requires each acknowledged send to have
// reached its peer one way or the other, and logs what it found, with
// the span of the missed ones' echoes from the fault at `fault`.
func (w *world) checkDelivered(settle time.Duration, fault time.Time) clustertest.DeliveryCheck {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := clustertest.CheckDelivered(ctx, w.ledger, w.chatters, settle)
	require.NoError(w.t, err)
	w.t.Logf("deliveries: %d of %d acknowledged sends reached the peer as an event; %d events missed, of which the history catch-up found %d",
		r.Delivered, r.Acked, len(r.Missed), r.CaughtUp)
	if len(r.Missed) > 0 {
		first, last := r.Missed[0].At.Sub(fault), r.Missed[0].At.Sub(fault)
		for _, a := range r.Missed {
			first, last = min(first, a.At.Sub(fault)), max(last, a.At.Sub(fault))
		}
		w.t.Logf("missed events: echoed from %v to %v after the fault: %s", first.Round(time.Millisecond), last.Round(time.Millisecond), describeAcks(r.Missed, 6))
	}
	require.Equal(w.t, len(r.Missed), r.CaughtUp, "every acknowledged message reaches its peer, as an event or by the catch-up")
	return r
}

func describeAcks(acks []clustertest.Ack, n int) string {
	var parts []string
	for i, a := range acks {
		if i == n {
			parts = append(parts, fmt.Sprintf("… %d more", len(acks)-n))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (message %d, echoed by %s %s)", a.Nonce, a.ID, a.Node, a.At.Format("15:04:05.000")))
	}
	return strings.Join(parts, ", ")
}

// requireNoUnexpectedClose requires that no session of chatters ended
// before the test closed it.
func requireNoUnexpectedClose(t *testing.T, chatters []*clustertest.Chatter) {
	t.Helper()
	for _, ch := range chatters {
		for _, s := range ch.Sessions() {
			require.False(t, s.ClosedByServer(), "%s's session on %s ended: %v", ch.Name, s.Node, s.Err())
		}
	}
}

// probe sends into one DM, as its member on a surviving node, from a
// session of its own, so that how soon each room answers is measured
// apart from the chatters' traffic (a chatter waiting on one room sends
// to no other).
type probe struct {
	ch          *clustertest.Chatter
	author      int // user index
	peer        int
	ack         clustertest.Ack // of its send after the fault
	answeredIn  time.Duration   // from the fault to that send's echo
	deliveredIn time.Duration   // from the fault to its event at the peer's chatter; 0 if none
}

// probeTimeout: a probe that is not answered within it sends again, with
// the same nonce, on a new session (a session waits for a room for 30 s).
const probeTimeout = time.Second

// probes makes one probe per DM that has a member off node gone, sending
// as that member from its home node, and sends once from each (the room
// is active before the fault).
func (w *world) probes(gone int) []*probe {
	w.t.Helper()
	var ps []*probe
	for i := range w.users {
		for j := range w.users {
			if w.home[i] == w.home[j] || w.home[i] == gone {
				continue
			}
			// One probe per DM: the lower index sends, unless it is on
			// the node that goes.
			if j < i && w.home[j] != gone {
				continue
			}
			ch := w.c.NewChatter(w.users[i], []clustertest.Account{w.users[j]}, w.ledger, w.c.NewBalancer(w.nodes[w.home[i]]))
			ch.Name = fmt.Sprintf("probe-%s-%s", w.users[i].Name, w.users[j].Name)
			ch.Timeout, ch.Quiet = probeTimeout, true
			require.NoError(w.t, ch.Connect(w.nodes[w.home[i]]))
			ps = append(ps, &probe{ch: ch, author: i, peer: j})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, p := range ps {
		_, err := p.ch.SendNext(ctx)
		require.NoError(w.t, err, "warm-up send of %s", p.ch.Name)
	}
	return ps
}

// fire sends once from every probe at once after a fault at `at`, each
// until acknowledged, and measures how long each room took to answer
// and its event to reach the peer's chatter.
func (w *world) fire(ps []*probe, at time.Time, timeout time.Duration) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() {
			p.ack, errs[i] = p.ch.SendNext(ctx)
			p.answeredIn = p.ack.At.Sub(at)
		})
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(w.t, err, "%s: no answer within %v of the fault", ps[i].ch.Name, timeout)
	}
}

// delivered waits for each probe's event at its peer's chatter, until
// settle after the last probe's answer, and records when it came (an
// event is best effort: one may never come). A peer homed on node gone
// had no session to take the event when the probe was sent (it was
// closed or dropped with its node), so its probe is looked at without
// waiting.
func (w *world) delivered(ps []*probe, at time.Time, gone int) {
	var deadline time.Time
	for _, p := range ps {
		if p.ack.At.After(deadline) {
			deadline = p.ack.At
		}
	}
	deadline = deadline.Add(settle)
	for _, p := range ps {
		for {
			if t, ok := w.chatters[p.peer].EventAt(p.ack.ID); ok {
				p.deliveredIn = t.Sub(at)
				break
			}
			if w.home[p.peer] == gone || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// deliveriesAfter looks, in every DM between users homed off node gone,
// for the first event that reached the peer's chatter of a message whose
// first attempt began at or after at (chatters' and probes' alike), and
// returns the time from at to each (by DM, "u0-u2"), and the DMs with
// none.
func (w *world) deliveriesAfter(at time.Time, gone int) (map[string]time.Duration, []string) {
	index := map[int64]int{}
	for i, u := range w.users {
		index[u.ID] = i
	}
	dmName := func(i, j int) string {
		return w.users[min(i, j)].Name + "-" + w.users[max(i, j)].Name
	}
	first := map[string]time.Duration{}
	for _, a := range w.ledger.Acks() {
		i, j := index[a.Author], index[a.Peer]
		if a.Start.Before(at) || w.home[i] == gone || w.home[j] == gone {
			continue
		}
		if t, ok := w.chatters[j].EventAt(a.ID); ok {
			name := dmName(i, j)
			if d, seen := first[name]; !seen || t.Sub(at) < d {
				first[name] = t.Sub(at)
			}
		}
	}
	var none []string
	for i := range w.users {
		for j := i + 1; j < len(w.users); j++ {
			if w.home[i] != w.home[j] && w.home[i] != gone && w.home[j] != gone {
				if _, ok := first[dmName(i, j)]; !ok {
					none = append(none, dmName(i, j))
				}
			}
		}
	}
	return first, none
}

// placement says where disthash placed the probe's room and its two
// users' grains among the world's nodes (before the fault).
func (w *world) placement(p *probe) string {
	a, b := w.users[p.author], w.users[p.peer]
	low, high := min(a.ID, b.ID), max(a.ID, b.ID)
	room := clustertest.Owner(directory.RoomIdentity(messages.RoomKey{Low: low, High: high}), w.nodes)
	ua := clustertest.Owner(directory.UserIdentity(a.ID), w.nodes)
	ub := clustertest.Owner(directory.UserIdentity(b.ID), w.nodes)
	return fmt.Sprintf("grains: room on node %d, %s on node %d, %s on node %d", room.ID, a.Name, ua.ID, b.Name, ub.ID)
}

// report logs the probes' times and returns the largest answer time.
func (w *world) report(ps []*probe, fault string) time.Duration {
	sorted := slices.Clone(ps)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].answeredIn < sorted[j].answeredIn })
	var lines []string
	var slowest time.Duration
	for _, p := range sorted {
		d := "not delivered as an event"
		if p.deliveredIn > 0 {
			d = "delivered after " + p.deliveredIn.Round(time.Millisecond).String()
		}
		lines = append(lines, fmt.Sprintf("  DM %s (node %d) - %s (node %d): answered after %v (%d attempts), %s; %s",
			w.users[p.author].Name, w.nodes[w.home[p.author]].ID, w.users[p.peer].Name, w.nodes[w.home[p.peer]].ID,
			p.answeredIn.Round(time.Millisecond), p.ack.Attempts, d, w.placement(p)))
		slowest = max(slowest, p.answeredIn)
	}
	w.t.Logf("rooms after %s (from the fault):\n%s", fault, strings.Join(lines, "\n"))
	return slowest
}
