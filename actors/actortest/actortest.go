// Package actortest is what the actor packages' tests share: a quiet actor
// system, a real SQLite store with users in it, and a way to make an actor
// fail as a bug in its Receive would.
package actortest

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/sqlite"
)

// System is an actor system that logs nothing, shut down with the test.
func System(t testing.TB) *actor.ActorSystem {
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	t.Cleanup(system.Shutdown)
	return system
}

// Store is a migrated SQLite store in the test's directory holding users
// 1..n, named user<id>; closed with the test.
func Store(t testing.TB, n int64) persistence.Store {
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "rewind.db"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	require.NoError(t, s.Migrate(t.Context()))
	for id := int64(1); id <= n; id++ {
		require.NoError(t, s.CreateUser(t.Context(), persistence.User{
			ID: id, Name: fmt.Sprint("user", id), Email: fmt.Sprint("user", id, "@example.test"), PasswordHash: "x",
		}))
	}
	return s
}

// Crash makes a Crashing actor panic.
type Crash struct{}

// Crashing wraps an actor so that a *Crash message makes it panic, as a
// bug in its Receive would; every other message goes to the actor.
type Crashing struct{ actor.Actor }

// Receive implements actor.Actor.
func (c Crashing) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*Crash); ok {
		panic("injected failure")
	}
	c.Actor.Receive(ctx)
}
