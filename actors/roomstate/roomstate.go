// Package roomstate loads the state a DM room actor starts from (do both
// members exist, are they friends, the room's id) for many rooms in one
// store round trip. When a thousand rooms activate at once, after a restart
// or at the start of a run, they share a few OpenDMs calls instead of each
// making its own reads through the same small pool as the writer.
//
// It batches as the writer does, without a linger timer: while a load runs,
// requests queue; when it ends, everything queued goes into the next one.
// A lone activation costs one round trip.
package roomstate

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
)

// Config of a loader. Store is required.
type Config struct {
	Store persistence.ChatStore
	// MaxBatch caps the rooms of one call; default 500.
	MaxBatch int
	// Concurrency is how many calls may run at once; default 2, so that a
	// slow call does not hold up every activation behind it.
	Concurrency int
	// Timeout bounds one call; default 10s.
	Timeout time.Duration
}

// Actor owns the queue of loads not yet handed to the store; the goroutine
// running a call hands its outcome back as a message.
type Actor struct {
	cfg     Config
	pending []*messages.OpenRoom
	running int
}

type loaded struct {
	batch  []*messages.OpenRoom
	states []persistence.DMState
	err    error
}

// New returns a loader actor.
func New(cfg Config) *Actor {
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 500
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 2
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Actor{cfg: cfg}
}

// Receive implements actor.Actor.
func (a *Actor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.OpenRoom:
		a.pending = append(a.pending, m)
		a.flush(ctx)
	case *loaded:
		for i, o := range m.batch {
			out := &messages.RoomOpened{Gen: o.Gen, Err: m.err}
			if m.err == nil {
				out.State = m.states[i]
			}
			ctx.Send(o.Room, out)
		}
		a.running--
		a.flush(ctx)
	}
}

// flush starts a call when one may run and loads are queued.
func (a *Actor) flush(ctx actor.Context) {
	if a.running >= a.cfg.Concurrency || len(a.pending) == 0 {
		return
	}
	n := min(len(a.pending), a.cfg.MaxBatch)
	batch := a.pending[:n:n]
	a.pending = a.pending[n:]
	if len(a.pending) == 0 {
		a.pending = nil // let the old backing array go
	}
	a.running++
	dms := make([]persistence.DMOpen, n)
	for i, o := range batch {
		dms[i] = persistence.DMOpen{Low: o.Key.Low, High: o.Key.High, NewID: o.NewID}
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		c, cancel := context.WithTimeout(context.Background(), a.cfg.Timeout)
		defer cancel()
		states, err := a.cfg.Store.OpenDMs(c, dms)
		root.Send(self, &loaded{batch: batch, states: states, err: err})
	}()
}
