// Package writer is the group commit of REWIND's chat writes: room actors
// hand it their sends and edits, it gathers the writes of many rooms into
// one transaction, and acknowledges each after the commit.
//
// Batching adapts to load without a linger timer: while transactions
// commit, new writes queue up; when one ends, everything queued (up to
// MaxBatch) goes into the next. A lone write commits at once; under load
// batches grow to what the database can absorb.
//
// Up to Concurrency transactions run at once, so that one batch gathers
// and is sent while another waits for its commit (PostgreSQL's fsync). A
// room's writes still commit in the order the room made them: a write
// whose room has a write in a running transaction waits for the next batch
// after that one ends (TestWriterKeepsRoomOrder).
//
// Each write has a deadline: Timeout after its request reached the server
// (Write.Received), or after the writer got it. A transaction runs until
// the earliest deadline of its writes, and a queued write whose deadline
// passes is answered at once without being sent: while the database
// stalls, the writes queued behind a stuck transaction fail together
// within one Timeout, rather than each waiting a Timeout of its own in turn
// (TestWriterQueuedWritesExpireTogether). A write answered with an error
// that wraps persistence.ErrOutcomeUnknown may have been committed; with
// any other error, nothing of it was applied.
package writer

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
)

// Config of a writer. Store is required; a zero value takes the default
// its field names (package setting has the convention; nothing here can
// be turned off).
type Config struct {
	Store persistence.ChatStore
	// MaxBatch caps the writes of one transaction; default
	// DefaultMaxBatch (500).
	MaxBatch int
	// Concurrency is how many transactions may run at once
	// (REWIND_WRITE_TRANSACTIONS); default DefaultConcurrency (1).
	Concurrency int
	// Timeout bounds a write from its request's arrival to its commit;
	// default DefaultTimeout (10s). Past it the write fails rather than
	// hang its room.
	Timeout time.Duration
	// Batches observes the size of each transaction; optional.
	Batches prometheus.Observer
	// Commits observes each transaction's duration in seconds; optional.
	Commits prometheus.Observer
}

// Defaults of Config.
const (
	DefaultMaxBatch    = 500
	DefaultConcurrency = 1
	DefaultTimeout     = 10 * time.Second
)

// Actor owns the queue of writes not yet handed to the database. Only the
// committing goroutine it starts touches a batch in flight, and it hands
// the outcome back as a message, so the actor's state stays its own.
type Actor struct {
	cfg     Config
	pending []queued
	running int
	// busy counts, per room id, its writes in running transactions.
	busy   map[int64]int
	drains []*actor.PID // waiting for the queue to empty
	// expiry sends expire at armed, the earliest deadline of pending (zero
	// when not armed).
	expiry *time.Timer
	armed  time.Time
}

// queued is a write not yet handed to the database, with its deadline.
type queued struct {
	w        *messages.Write
	deadline time.Time
}

// ErrExpired answers a write whose deadline passed before it could be
// sent: nothing of it was applied.
var ErrExpired = errors.New("writer: the write's time limit passed before it reached the database")

// expire tells the writer that a queued write's deadline may have passed.
type expire struct{}

// Drain asks the writer to answer Drained once every write it has
// received is committed or failed (graceful shutdown).
type Drain struct{}

// Drained answers Drain.
type Drained struct{}

type committed struct {
	batch   []queued
	results []persistence.MessageResult
	err     error
}

// New returns a writer actor.
func New(cfg Config) *Actor {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Actor{cfg: cfg, busy: map[int64]int{}}
}

// Receive implements actor.Actor.
func (a *Actor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Write:
		now := time.Now()
		received := m.Received
		if received.IsZero() || received.After(now) {
			received = now
		}
		q := queued{w: m, deadline: received.Add(a.cfg.Timeout)}
		if !q.deadline.After(now) {
			a.fail(ctx, q, ErrExpired)
			return
		}
		a.pending = append(a.pending, q)
		a.arm(ctx, q.deadline)
		a.flush(ctx)
	case *committed:
		for i, q := range m.batch {
			w := q.w
			out := &messages.Written{Ticket: w.Ticket, Err: m.err}
			if m.err == nil {
				out.Result = m.results[i]
			}
			ctx.Send(w.Room, out)
			if room := w.Op.Message.RoomID; a.busy[room] == 1 {
				delete(a.busy, room)
			} else {
				a.busy[room]--
			}
		}
		a.running--
		a.flush(ctx)
	case *expire:
		a.armed = time.Time{}
		a.expireDue(ctx)
		a.flush(ctx)
	case *actor.Stopped:
		if a.expiry != nil {
			a.expiry.Stop()
		}
	case *Drain:
		a.drains = append(a.drains, ctx.Sender())
		a.flush(ctx)
	}
}

// fail answers q's room with err.
func (a *Actor) fail(ctx actor.Context, q queued, err error) {
	ctx.Send(q.w.Room, &messages.Written{Ticket: q.w.Ticket, Err: err})
}

// expireDue answers the queued writes whose deadline has passed, and arms
// the timer for the earliest deadline left.
func (a *Actor) expireDue(ctx actor.Context) {
	now := time.Now()
	kept := a.pending[:0]
	for _, q := range a.pending {
		if !q.deadline.After(now) {
			a.fail(ctx, q, ErrExpired)
			continue
		}
		kept = append(kept, q)
		a.arm(ctx, q.deadline)
	}
	clear(a.pending[len(kept):])
	a.pending = kept
	if len(a.pending) == 0 {
		a.pending = nil
	}
}

// arm makes the timer fire by deadline. It keeps armed at or before the
// deadline of every queued write (a write that went meanwhile leaves it
// early, which costs one scan), so that none waits past its own.
func (a *Actor) arm(ctx actor.Context, deadline time.Time) {
	if !a.armed.IsZero() && !deadline.Before(a.armed) {
		return
	}
	a.armed = deadline
	if a.expiry == nil {
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.expiry = time.AfterFunc(time.Until(deadline), func() { root.Send(self, &expire{}) })
		return
	}
	a.expiry.Reset(time.Until(deadline))
}

// flush starts transactions while one may run and writes can go, and
// reports a drained queue.
func (a *Actor) flush(ctx actor.Context) {
	for a.running < a.cfg.Concurrency && len(a.pending) > 0 {
		if !a.start(ctx) {
			break
		}
	}
	if a.running == 0 && len(a.pending) == 0 {
		for _, p := range a.drains {
			ctx.Send(p, &Drained{})
		}
		a.drains = nil
	}
}

// start takes the queued writes whose rooms have nothing in a running
// transaction (up to MaxBatch, in queue order) and commits them in a
// goroutine; false when every queued write has to wait.
//
// The transaction runs until the earliest deadline of its writes; a write
// whose deadline has passed is answered ErrExpired instead of going.
func (a *Actor) start(ctx actor.Context) bool {
	batch, rest := make([]queued, 0, min(len(a.pending), a.cfg.MaxBatch)), []queued(nil)
	now := time.Now()
	for i, q := range a.pending {
		if len(batch) == a.cfg.MaxBatch {
			if rest == nil {
				rest = a.pending[i:] // the whole tail: no copy of a long backlog
			} else {
				rest = append(rest, a.pending[i:]...)
			}
			break
		}
		switch {
		case !q.deadline.After(now):
			a.fail(ctx, q, ErrExpired)
		case a.busy[q.w.Op.Message.RoomID] > 0:
			rest = append(rest, q)
		default:
			batch = append(batch, q)
		}
	}
	if len(rest) == 0 {
		rest = nil // let the old backing array go
	}
	a.pending = rest
	if len(batch) == 0 {
		return false
	}
	deadline := batch[0].deadline
	for _, q := range batch {
		a.busy[q.w.Op.Message.RoomID]++
		if q.deadline.Before(deadline) {
			deadline = q.deadline
		}
	}
	a.running++
	if a.cfg.Batches != nil {
		a.cfg.Batches.Observe(float64(len(batch)))
	}
	ops := make([]persistence.MessageOp, len(batch))
	for i, q := range batch {
		ops[i] = q.w.Op
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		c, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		results, err := a.cfg.Store.WriteMessages(c, ops)
		if a.cfg.Commits != nil {
			a.cfg.Commits.Observe(time.Since(start).Seconds())
		}
		root.Send(self, &committed{batch: batch, results: results, err: err})
	}()
	return true
}
