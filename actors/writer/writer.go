// Package writer is the group commit of REWIND's chat writes: room actors
// hand it their sends and edits, it gathers the writes of many rooms into
// one transaction, and acknowledges each after the commit.
//
// Batching adapts to load without a linger timer: while one transaction
// commits, new writes queue up; when it ends, everything queued (up to
// MaxBatch) goes into the next. A lone write commits at once; under load
// batches grow to what the database can absorb.
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
	// Timeout bounds one transaction; default 10s. Past it the writes
	// fail (and are answered 5000) rather than hang every room.
	Timeout time.Duration
	// Batches observes the size of each transaction; optional.
	Batches prometheus.Observer
	// Commits observes each transaction's duration in seconds; optional.
	Commits prometheus.Observer
}

// Actor owns the queue of writes not yet handed to the database. Only the
// committing goroutine it starts touches the batch in flight, and it hands
// the outcome back as a message, so the actor's state stays its own.
type Actor struct {
	cfg     Config
	pending []*messages.Write
	busy    bool
	drains  []*actor.PID // waiting for the queue to empty
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
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Actor{cfg: cfg}
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
		}
		a.busy = false
		a.flush(ctx)
	case *Drain:
		a.drains = append(a.drains, ctx.Sender())
		a.flush(ctx)
	}
}

// flush starts the next transaction when none is running, or reports a
// drained queue.
func (a *Actor) flush(ctx actor.Context) {
	if a.busy {
		return
	}
	if len(a.pending) == 0 {
		for _, p := range a.drains {
			ctx.Send(p, &Drained{})
		}
		a.drains = nil
		return
	}
	n := min(len(a.pending), a.cfg.MaxBatch)
	batch := a.pending[:n:n]
	a.pending = a.pending[n:]
	if len(a.pending) == 0 {
		a.pending = nil // let the old backing array go
	}
	a.busy = true
	if a.cfg.Batches != nil {
		a.cfg.Batches.Observe(float64(n))
	}
	ops := make([]persistence.MessageOp, n)
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
}
