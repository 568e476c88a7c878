package clustertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the traffic's requests.
const (
	// ConnectTimeout bounds one dial, heartbeat and auth.
	ConnectTimeout = 5 * time.Second
	// SendTimeout bounds the wait for one send's answer. Past it the
	// chatter gives the session up, as a client would, and sends again
	// with the same nonce on a new one (the session itself answers 5001
	// only after its RequestTimeout, 30 s).
	SendTimeout = 5 * time.Second
)

// Balancer hands out the live nodes in turn, as a load balancer in front
// of the cluster would.
type Balancer struct {
	c    *Cluster
	next atomic.Uint64
	// Avoid, when set, is asked of each node; a node it returns true for
	// is not handed out (a node that is draining, say).
	Avoid func(*Node) bool
	only  []*Node
}

// NewBalancer returns a balancer over c's live nodes, or over the live
// ones of only when given.
func (c *Cluster) NewBalancer(only ...*Node) *Balancer { return &Balancer{c: c, only: only} }

// Pick returns the next live node, nil when there is none.
func (b *Balancer) Pick() *Node {
	live := b.c.Live()
	if b.only != nil {
		live = slices.DeleteFunc(live, func(n *Node) bool { return !slices.Contains(b.only, n) })
	}
	for range live {
		n := live[int(b.next.Add(1)-1)%len(live)]
		if b.Avoid == nil || !b.Avoid(n) {
			return n
		}
	}
	return nil
}

// Ack is a send the server acknowledged: its echo arrived.
type Ack struct {
	Author, Peer int64 // user ids
	ChatID       int64
	Nonce        string
	ID           int64     // the message id of the echo
	Start, At    time.Time // of its first attempt, and of the echo
	Attempts     int
	Node         *Node // that echoed it
}

// Ledger is every acknowledged send of a test.
type Ledger struct {
	mu   sync.Mutex
	acks []Ack
}

func (l *Ledger) add(a Ack) {
	l.mu.Lock()
	l.acks = append(l.acks, a)
	l.mu.Unlock()
}

// Acks returns the acknowledged sends so far.
func (l *Ledger) Acks() []Ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Ack(nil), l.acks...)
}

// Len is how many sends were acknowledged.
func (l *Ledger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

// Chatter is one user sending to its peers in turn, one send at a time,
// every Interval, each with a nonce of its own. A send that fails with
// 5000 or 5001, whose connection goes, or that is not answered within
// SendTimeout is sent again with the same nonce (on a new session through
// the balancer when the old one went), until it is acknowledged: so a
// nonce is acknowledged at most once, and the history must hold it
// exactly once.
type Chatter struct {
	Account Account
	// Name is the chatter's name, the prefix of its nonces: the account's
	// name unless set (two chatters of one account need two names).
	Name  string
	Peers []Account
	// Version is the sessions' protocol version (2).
	Version int
	// Interval is the time between two sends' starts in Run (25 ms).
	Interval time.Duration
	// Timeout is how long a send waits for its answer before it goes to a
	// new session (SendTimeout); Quiet: without a log line when it does.
	Timeout time.Duration
	Quiet   bool

	c        *Cluster
	balancer *Balancer
	ledger   *Ledger

	mu       sync.Mutex
	sess     *Session
	sessions []*Session
	sent     int // messages started (a retry is the same message)
	stats    ChatterStats
	err      error // a send answered what no retry can mend
}

// ChatterStats counts what a chatter went through.
type ChatterStats struct {
	Acked      int
	Slow       int            // acknowledged more than a second after the first attempt
	Slowest    time.Duration  // the longest from a first attempt to its echo
	Retries    int            // sends again after a failure
	Timeouts   int            // sends not answered within SendTimeout
	Reconnects int            // sessions opened after the first
	Refused    int            // connects that failed
	Errors     map[int]int    // error answers by code
	Closes     map[string]int // how the chatter's sessions ended, before Close
}

// NewChatter returns a's chatter, sending to peers, which opens its
// first session on node (later ones through balancer).
func (c *Cluster) NewChatter(a Account, peers []Account, ledger *Ledger, balancer *Balancer) *Chatter {
	return &Chatter{Account: a, Name: a.Name, Peers: peers, Version: 2, Interval: 25 * time.Millisecond, Timeout: SendTimeout,
		c: c, balancer: balancer, ledger: ledger,
		stats: ChatterStats{Errors: map[int]int{}, Closes: map[string]int{}}}
}

// Connect opens the chatter's session on node.
func (ch *Chatter) Connect(node *Node) error {
	ctx, cancel := context.WithTimeout(context.Background(), ConnectTimeout)
	defer cancel()
	s, err := Connect(ctx, node, ch.Account, ch.Version)
	if err != nil {
		return err
	}
	ch.mu.Lock()
	ch.sess = s
	ch.sessions = append(ch.sessions, s)
	ch.mu.Unlock()
	ch.c.t.Cleanup(s.Close)
	return nil
}

// Session is the chatter's current session (nil before Connect).
func (ch *Chatter) Session() *Session {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.sess
}

// Sessions returns every session the chatter opened.
func (ch *Chatter) Sessions() []*Session {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return append([]*Session(nil), ch.sessions...)
}

// Stats returns the chatter's counts.
func (ch *Chatter) Stats() ChatterStats {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	s := ch.stats
	s.Errors, s.Closes = map[int]int{}, map[string]int{}
	for k, v := range ch.stats.Errors {
		s.Errors[k] = v
	}
	for k, v := range ch.stats.Closes {
		s.Closes[k] = v
	}
	return s
}

// Err is the error that stopped the chatter, if one did.
func (ch *Chatter) Err() error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.err
}

// Seen is how many chat frames with message id the chatter's sessions
// received, over all of them.
func (ch *Chatter) Seen(id int64) int {
	n := 0
	for _, s := range ch.Sessions() {
		n += s.Seen(id)
	}
	return n
}

// EventAt is when one of the chatter's sessions first received message
// id as an event, if one did.
func (ch *Chatter) EventAt(id int64) (time.Time, bool) {
	var first time.Time
	for _, s := range ch.Sessions() {
		if at, ok := s.EventAt(id); ok && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first, !first.IsZero()
}

// Run sends until stop is closed (the send in flight is finished first)
// or ctx ends, or a send is answered with an error no retry mends.
func (ch *Chatter) Run(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(ch.Interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, err := ch.SendNext(ctx); err != nil {
			ch.mu.Lock()
			if ch.err == nil && ctx.Err() == nil {
				ch.err = err
			}
			ch.mu.Unlock()
			return
		}
	}
}

// SendNext sends the chatter's next message, to its next peer, until it
// is acknowledged, and returns the acknowledgement.
func (ch *Chatter) SendNext(ctx context.Context) (Ack, error) {
	ch.mu.Lock()
	k := ch.sent
	ch.sent++
	ch.mu.Unlock()
	peer := ch.Peers[k%len(ch.Peers)]
	nonce := fmt.Sprintf("%s-%d", ch.Name, k)
	return ch.send(ctx, peer, nonce, fmt.Sprintf("message %d of %s", k, ch.Name))
}

// send sends until the echo comes, reconnecting through the balancer as
// needed; it gives up only when ctx ends or on an error that says the
// request is wrong.
func (ch *Chatter) send(ctx context.Context, peer Account, nonce, content string) (Ack, error) {
	chatID := ChatID(ch.Account, peer)
	start := time.Now()
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return Ack{}, ctx.Err()
		}
		if attempt > 1 {
			ch.count(func(s *ChatterStats) { s.Retries++ })
		}
		s, err := ch.session(ctx)
		if err != nil {
			return Ack{}, err
		}
		rctx, cancel := context.WithTimeout(ctx, ch.Timeout)
		echo, err := s.Send(rctx, chatID, content, nonce)
		cancel()
		var ef *ErrorFrame
		switch {
		case err == nil:
			took := time.Since(start)
			ch.count(func(s *ChatterStats) {
				s.Acked++
				s.Slowest = max(s.Slowest, took)
				if took > time.Second {
					s.Slow++
				}
			})
			ack := Ack{Author: ch.Account.ID, Peer: peer.ID, ChatID: chatID, Nonce: nonce, ID: echo.MessageID(),
				Start: start, At: time.Now(), Attempts: attempt, Node: s.Node}
			ch.ledger.add(ack)
			return ack, nil
		case errors.As(err, &ef) && (ef.Code == 5000 || ef.Code == 5001):
			ch.count(func(s *ChatterStats) { s.Errors[ef.Code]++ })
			// Nothing, or maybe something, was applied: the same nonce
			// again, after a breath.
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		case errors.As(err, &ef):
			ch.count(func(s *ChatterStats) { s.Errors[ef.Code]++ })
			return Ack{}, fmt.Errorf("%s sends %s to %s on %s: %w", ch.Account.Name, nonce, peer.Name, s.Node, err)
		case errors.Is(err, ErrGone):
			ch.drop(s)
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			ch.count(func(st *ChatterStats) { st.Timeouts++ })
			if !ch.Quiet {
				ch.c.t.Logf("clustertest: %s: send %s to %s on %s not answered within %v; again on a new session", ch.Name, nonce, peer.Name, s.Node, ch.Timeout)
			}
			s.Close()
			ch.drop(s)
		default:
			return Ack{}, err
		}
	}
}

func (ch *Chatter) count(f func(*ChatterStats)) {
	ch.mu.Lock()
	f(&ch.stats)
	ch.mu.Unlock()
}

// drop forgets s as the current session, noting how it ended.
func (ch *Chatter) drop(s *Session) {
	<-s.Gone()
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if s.ClosedByServer() {
		ch.stats.Closes[closeKind(s)]++
	}
	if ch.sess == s {
		ch.sess = nil
	}
}

// closeKind names how a session ended: "close <code>" for a close frame,
// "dropped" for a connection that just ended.
func closeKind(s *Session) string {
	if code := s.CloseCode(); code != 0 {
		return fmt.Sprintf("close %d", code)
	}
	return "dropped"
}

// session returns the current session, opening one through the balancer
// when there is none or it has gone.
func (ch *Chatter) session(ctx context.Context) (*Session, error) {
	ch.mu.Lock()
	s := ch.sess
	ch.mu.Unlock()
	if s != nil {
		select {
		case <-s.Gone():
			ch.drop(s)
		default:
			return s, nil
		}
	}
	for {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		node := ch.balancer.Pick()
		if node == nil {
			return nil, errors.New("no live node")
		}
		if err := ch.Connect(node); err != nil {
			ch.count(func(s *ChatterStats) { s.Refused++ })
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		ch.count(func(s *ChatterStats) { s.Reconnects++ })
		return ch.Session(), nil
	}
}

// EnsureSession gives the chatter a live session (for the checks after
// the traffic), through the balancer if it has none.
func (ch *Chatter) EnsureSession(ctx context.Context) (*Session, error) { return ch.session(ctx) }

// StoredCheck is what CheckStored found.
type StoredCheck struct {
	Acked    int // acknowledged sends
	Stored   int // messages in the database, over the DMs of the acks
	Unacked  int // of those, ones no echo acknowledged (answered 5001, or in flight when a node went)
	Problems []string
}

// CheckStored loads from the database the DMs the ledger's sends went
// to, and checks that every acknowledged send is stored exactly once,
// with the id its echo carried (by author and nonce: a retry with the
// same nonce must not store it again).
func (c *Cluster) CheckStored(ctx context.Context, l *Ledger) (StoredCheck, error) {
	type pair struct{ a, b int64 }
	type key struct {
		author int64
		nonce  string
	}
	acks := l.Acks()
	var r StoredCheck
	r.Acked = len(acks)
	dms := map[pair]bool{}
	for _, a := range acks {
		dms[pair{min(a.Author, a.Peer), max(a.Author, a.Peer)}] = true
	}
	stored := map[key][]int64{}
	for p := range dms {
		msgs, err := c.Stored(ctx, p.a, p.b)
		if err != nil {
			return r, err
		}
		for _, m := range msgs {
			stored[key{m.AuthorID, m.Nonce}] = append(stored[key{m.AuthorID, m.Nonce}], m.ID)
		}
		r.Stored += len(msgs)
	}
	acked := map[key]bool{}
	for _, a := range acks {
		k := key{a.Author, a.Nonce}
		if acked[k] {
			r.Problems = append(r.Problems, fmt.Sprintf("nonce %s acknowledged twice", a.Nonce))
		}
		acked[k] = true
		switch ids := stored[k]; {
		case len(ids) == 0:
			r.Problems = append(r.Problems, fmt.Sprintf("acknowledged %s (message %d, echoed by %s) is not stored", a.Nonce, a.ID, a.Node))
		case len(ids) > 1:
			r.Problems = append(r.Problems, fmt.Sprintf("acknowledged %s is stored %d times: %v", a.Nonce, len(ids), ids))
		case ids[0] != a.ID:
			r.Problems = append(r.Problems, fmt.Sprintf("acknowledged %s was echoed as message %d, stored as %d", a.Nonce, a.ID, ids[0]))
		}
	}
	for k, ids := range stored {
		if !acked[k] {
			r.Unacked += len(ids)
		}
	}
	sort.Strings(r.Problems)
	return r, nil
}

// DeliveryCheck is what CheckDelivered found.
type DeliveryCheck struct {
	Acked      int
	Delivered  int      // acks whose event reached a session of the peer
	Missed     []Ack    // acks whose event reached none
	CaughtUp   int      // of Missed, those the peer's history catch-up found
	Duplicates []string // sessions that received a message more than once
}

// CheckDelivered waits up to settle for every acknowledged send's event
// to reach a session of its peer; for the ones that did not (an event is
// best effort, protocol.md §2.8), the peer's live session loads the DM's
// history, as a client catching up would, and must find them. It also
// lists every session that received one message more than once (an echo
// and an event of it count alike).
func CheckDelivered(ctx context.Context, l *Ledger, chatters []*Chatter, settle time.Duration) (DeliveryCheck, error) {
	byID := map[int64]*Chatter{}
	for _, ch := range chatters {
		byID[ch.Account.ID] = ch
	}
	acks := l.Acks()
	r := DeliveryCheck{Acked: len(acks)}
	missing := func() []Ack {
		var out []Ack
		for _, a := range acks {
			if byID[a.Peer].Seen(a.ID) == 0 {
				out = append(out, a)
			}
		}
		return out
	}
	deadline := time.Now().Add(settle)
	for {
		r.Missed = missing()
		if len(r.Missed) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return r, ctx.Err()
		}
	}
	r.Delivered = len(acks) - len(r.Missed)
	histories := map[[2]int64]map[int64]bool{} // by peer and chat
	for _, a := range r.Missed {
		k := [2]int64{a.Peer, a.ChatID}
		if histories[k] == nil {
			s, err := byID[a.Peer].EnsureSession(ctx)
			if err != nil {
				return r, err
			}
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			h, err := s.History(hctx, a.ChatID)
			cancel()
			if err != nil {
				return r, fmt.Errorf("history of %d for %s on %s: %w", a.ChatID, byID[a.Peer].Account.Name, s.Node, err)
			}
			histories[k] = map[int64]bool{}
			for _, m := range h {
				histories[k][m.MessageID()] = true
			}
		}
		if histories[k][a.ID] {
			r.CaughtUp++
		}
	}
	for _, ch := range chatters {
		for i, s := range ch.Sessions() {
			if d := s.Duplicates(); len(d) > 0 {
				r.Duplicates = append(r.Duplicates, fmt.Sprintf("%s's session %d (%s): %d messages more than once, e.g. %d",
					ch.Account.Name, i+1, s.Node, len(d), d[0]))
			}
		}
	}
	return r, nil
}

// Summary is the chatters' stats in one line each.
func Summary(chatters []*Chatter) string {
	var b strings.Builder
	for _, ch := range chatters {
		s := ch.Stats()
		fmt.Fprintf(&b, "%s: %d acked (%d after more than 1 s, the slowest after %v), %d retries, %d timeouts, %d reconnects, %d refused, errors %v, closes %v\n",
			ch.Name, s.Acked, s.Slow, s.Slowest.Round(time.Millisecond), s.Retries, s.Timeouts, s.Reconnects, s.Refused, s.Errors, s.Closes)
	}
	return b.String()
}
