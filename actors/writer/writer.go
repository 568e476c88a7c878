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
package writer

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
)

// Config of a writer. Store is required.
type Config struct {
	Store persistence.ChatStore
	// MaxBatch caps the writes of one transaction; default 500.
	MaxBatch int
	// Concurrency is how many transactions may run at once; default 1.
	Concurrency int
	// Timeout bounds one transaction; default 10s. Past it the writes
	// fail rather than hang every room.
	Timeout time.Duration
	// Batches observes the size of each transaction; optional.
	Batches prometheus.Observer
	// Commits observes each transaction's duration in seconds; optional.
	Commits prometheus.Observer
}

// Actor owns the queue of writes not yet handed to the database. Only the
// committing goroutine it starts touches a batch in flight, and it hands
// the outcome back as a message, so the actor's state stays its own.
type Actor struct {
	cfg     Config
	pending []*messages.Write
	running int
	// busy counts, per room id, its writes in running transactions.
	busy   map[int64]int
	drains []*actor.PID // waiting for the queue to empty
}

// Drain asks the writer to answer Drained once every write it has
// received is committed or failed (graceful shutdown).
type Drain struct{}

// Drained answers Drain.
type Drained struct{}

type committed struct {
	batch   []*messages.Write
	results []persistence.MessageResult
	err     error
}

// New returns a writer actor.
func New(cfg Config) *Actor {
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 500
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Actor{cfg: cfg, busy: map[int64]int{}}
}

// Receive implements actor.Actor.
func (a *Actor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Write:
		a.pending = append(a.pending, m)
		a.flush(ctx)
	case *committed:
		for i, w := range m.batch {
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
	case *Drain:
		a.drains = append(a.drains, ctx.Sender())
		a.flush(ctx)
	}
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
func (a *Actor) start(ctx actor.Context) bool {
	var batch, rest []*messages.Write
	if a.running == 0 {
		// Nothing runs, so no room is busy: the head of the queue goes.
		n := min(len(a.pending), a.cfg.MaxBatch)
		batch, rest = a.pending[:n:n], a.pending[n:]
	} else {
		for i, w := range a.pending {
			if len(batch) == a.cfg.MaxBatch {
				rest = append(rest, a.pending[i:]...)
				break
			}
			if a.busy[w.Op.Message.RoomID] > 0 {
				rest = append(rest, w)
			} else {
				batch = append(batch, w)
			}
		}
	}
	if len(batch) == 0 {
		return false
	}
	if len(rest) == 0 {
		rest = nil // let the old backing array go
	}
	a.pending = rest
	for _, w := range batch {
		a.busy[w.Op.Message.RoomID]++
	}
	a.running++
	if a.cfg.Batches != nil {
		a.cfg.Batches.Observe(float64(len(batch)))
	}
	ops := make([]persistence.MessageOp, len(batch))
	for i, w := range batch {
		ops[i] = w.Op
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		c, cancel := context.WithTimeout(context.Background(), a.cfg.Timeout)
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
