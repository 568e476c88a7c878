package writer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/actors/writer"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
)

// steppedStore is a fake ChatStore whose WriteMessages calls wait for the
// test: each call shows up on calls and returns when the test answers it.
type steppedStore struct {
	persistence.ChatStore // nil: only WriteMessages is called
	calls                 chan *call
}

type call struct {
	ops  []persistence.MessageOp
	ctx  context.Context
	done chan error
}

func (s *steppedStore) WriteMessages(ctx context.Context, ops []persistence.MessageOp) ([]persistence.MessageResult, error) {
	c := &call{ops: ops, ctx: ctx, done: make(chan error)}
	s.calls <- c
	if err := <-c.done; err != nil {
		return nil, err
	}
	results := make([]persistence.MessageResult, len(ops))
	for i, op := range ops {
		results[i].Message = op.Message
	}
	return results, nil
}

// ids lists the message ids of a call, in order.
func (c *call) ids() []int64 {
	var ids []int64
	for _, op := range c.ops {
		ids = append(ids, op.Message.ID)
	}
	return ids
}

type fixture struct {
	t       *testing.T
	root    *actor.RootContext
	store   *steppedStore
	writer  *actor.PID
	room    *actor.PID
	written chan *messages.Written
}

func newFixture(t *testing.T, concurrency int) *fixture {
	return newFixtureWith(t, writer.Config{Concurrency: concurrency})
}

// newFixtureWith is newFixture with cfg (its Store is the fixture's).
func newFixtureWith(t *testing.T, cfg writer.Config) *fixture {
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	t.Cleanup(system.Shutdown)
	f := &fixture{t: t, root: system.Root, store: &steppedStore{calls: make(chan *call, 16)}, written: make(chan *messages.Written, 64)}
	cfg.Store = f.store
	f.writer = f.root.Spawn(actor.PropsFromProducer(func() actor.Actor { return writer.New(cfg) }))
	// A fake room: it records what the writer answers.
	f.room = f.root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if w, ok := c.Message().(*messages.Written); ok {
			f.written <- w
		}
	}))
	return f
}

// write hands the writer a send of message id in room, ticket = id.
func (f *fixture) write(room, id int64) { f.writeAt(room, id, time.Time{}) }

// writeAt is write of a request that reached its session at received.
func (f *fixture) writeAt(room, id int64, received time.Time) {
	f.root.Send(f.writer, &messages.Write{
		Op:   persistence.MessageOp{Kind: persistence.OpSend, Message: persistence.Message{ID: id, RoomID: room}},
		Room: f.room, Ticket: uint64(id), Received: received,
	})
}

func (f *fixture) nextCall() *call {
	f.t.Helper()
	select {
	case c := <-f.store.calls:
		return c
	case <-time.After(5 * time.Second):
		f.t.Fatal("no WriteMessages call")
		return nil
	}
}

// noCall checks that no transaction starts: the writer is waiting.
func (f *fixture) noCall() {
	f.t.Helper()
	select {
	case c := <-f.store.calls:
		f.t.Fatalf("unexpected transaction of %v", c.ids())
	case <-time.After(100 * time.Millisecond):
	}
}

func (f *fixture) nextWritten() *messages.Written {
	f.t.Helper()
	select {
	case w := <-f.written:
		return w
	case <-time.After(5 * time.Second):
		f.t.Fatal("no Written")
		return nil
	}
}

// noWritten checks that nothing was acknowledged.
func (f *fixture) noWritten() {
	f.t.Helper()
	select {
	case w := <-f.written:
		f.t.Fatalf("unexpected Written of ticket %d", w.Ticket)
	case <-time.After(50 * time.Millisecond):
	}
}

// While one transaction commits, the next batch gathers; nothing is
// acknowledged before its commit.
func TestWriterBatchesWhileCommitting(t *testing.T) {
	f := newFixture(t, 1)
	f.write(1, 1)
	first := f.nextCall()
	require.Equal(t, []int64{1}, first.ids())
	f.write(2, 2)
	f.write(3, 3)
	f.write(1, 4)
	f.noCall() // one transaction at a time
	f.noWritten()
	first.done <- nil
	require.Equal(t, uint64(1), f.nextWritten().Ticket)
	second := f.nextCall()
	require.Equal(t, []int64{2, 3, 4}, second.ids())
	second.done <- nil
	for _, want := range []uint64{2, 3, 4} {
		require.Equal(t, want, f.nextWritten().Ticket)
	}
}

// With transactions running side by side, a room's writes still commit in
// its order: a write whose room is in a running transaction waits for it.
func TestWriterKeepsRoomOrder(t *testing.T) {
	f := newFixture(t, 2)
	f.write(1, 1)
	first := f.nextCall()
	require.Equal(t, []int64{1}, first.ids())
	f.write(1, 2) // room 1 is busy: waits
	f.write(2, 3) // room 2 is not: goes beside the first transaction
	f.write(2, 4)
	second := f.nextCall()
	require.Equal(t, []int64{3}, second.ids())
	// Room 2 is busy now too; 2 and 4 wait.
	f.noCall()
	second.done <- nil
	require.Equal(t, uint64(3), f.nextWritten().Ticket)
	third := f.nextCall()
	require.Equal(t, []int64{4}, third.ids(), "room 1 still waits for the first transaction")
	first.done <- nil
	require.Equal(t, uint64(1), f.nextWritten().Ticket)
	fourth := f.nextCall()
	require.Equal(t, []int64{2}, fourth.ids())
	third.done <- nil
	fourth.done <- nil
	got := []uint64{f.nextWritten().Ticket, f.nextWritten().Ticket}
	require.ElementsMatch(t, []uint64{4, 2}, got)
}

// A failed transaction fails each of its writes, and the writer goes on.
func TestWriterFailureFailsTheBatch(t *testing.T) {
	f := newFixture(t, 1)
	f.write(1, 1)
	c := f.nextCall()
	f.write(2, 2)
	c.done <- errors.New("database down")
	w := f.nextWritten()
	require.Equal(t, uint64(1), w.Ticket)
	require.Error(t, w.Err)
	c = f.nextCall()
	require.Equal(t, []int64{2}, c.ids())
	c.done <- nil
	w = f.nextWritten()
	require.Equal(t, uint64(2), w.Ticket)
	require.NoError(t, w.Err)
}

// Drain answers only once everything handed over is committed.
func TestWriterDrain(t *testing.T) {
	f := newFixture(t, 2)
	f.write(1, 1)
	c := f.nextCall()
	_, err := f.root.RequestFuture(f.writer, &writer.Drain{}, 100*time.Millisecond).Result()
	require.Error(t, err, "drained with a transaction running")
	c.done <- nil
	res, err := f.root.RequestFuture(f.writer, &writer.Drain{}, 5*time.Second).Result()
	require.NoError(t, err)
	require.IsType(t, &writer.Drained{}, res)
	require.Equal(t, uint64(1), f.nextWritten().Ticket)
}

// While a transaction is stuck in the database, the writes queued behind
// it (its room's, and others' when no transaction may start) are answered
// ErrExpired, nothing applied, when their own time limit passes: together,
// within one limit counted from their requests' arrival, not one limit
// each in turn. The stuck transaction's context ends at its writes' limit.
func TestWriterQueuedWritesExpireTogether(t *testing.T) {
	const limit = 300 * time.Millisecond
	f := newFixtureWith(t, writer.Config{Concurrency: 1, Timeout: limit})
	start := time.Now()
	f.writeAt(1, 1, start)
	stuck := f.nextCall()
	deadline, ok := stuck.ctx.Deadline()
	require.True(t, ok)
	require.WithinDuration(t, start.Add(limit), deadline, time.Millisecond, "the limit counts from the request's arrival")
	f.writeAt(1, 2, start.Add(10*time.Millisecond)) // its room is busy
	f.writeAt(2, 3, start.Add(20*time.Millisecond)) // no transaction may start
	f.writeAt(3, 4, time.Now().Add(-2*limit))       // over its limit already: answered at once
	w := f.nextWritten()
	require.Equal(t, uint64(4), w.Ticket)
	require.ErrorIs(t, w.Err, writer.ErrExpired)
	for _, want := range []uint64{2, 3} {
		w := f.nextWritten()
		require.Equal(t, want, w.Ticket)
		require.ErrorIs(t, w.Err, writer.ErrExpired)
		require.NotErrorIs(t, w.Err, persistence.ErrOutcomeUnknown)
	}
	require.Less(t, time.Since(start), 2*limit, "the queued writes failed together")
	f.noCall()

	// The stuck transaction ends past its limit, its outcome unknown: the
	// error says so, and the writer goes on.
	stuck.done <- fmt.Errorf("%w: the connection died after COMMIT", persistence.ErrOutcomeUnknown)
	w = f.nextWritten()
	require.Equal(t, uint64(1), w.Ticket)
	require.ErrorIs(t, w.Err, persistence.ErrOutcomeUnknown)
	f.write(3, 5)
	c := f.nextCall()
	require.Equal(t, []int64{5}, c.ids())
	c.done <- nil
	w = f.nextWritten()
	require.Equal(t, uint64(5), w.Ticket)
	require.NoError(t, w.Err)
}
