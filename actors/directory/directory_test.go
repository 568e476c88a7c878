package directory_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/setting"
)

// users is a directory whose user actors report what they receive.
type users struct {
	root *actor.RootContext
	dir  *directory.Directory
	got  chan any
}

func newUsers(t *testing.T, maxSessions int) *users {
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	t.Cleanup(system.Shutdown)
	u := &users{root: system.Root, got: make(chan any, 64)}
	u.dir = directory.New(u.root, directory.Config{
		User: func(int64) actor.Producer {
			return func() actor.Actor {
				return actor.ReceiveFunc(func(c actor.Context) {
					switch m := c.Message().(type) {
					case *messages.SessionAttached, *messages.Logout:
						u.got <- m
					}
				})
			}
		},
		MaxSessions: maxSessions,
	})
	return u
}

func (u *users) session() *actor.PID {
	return u.root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
}

func (u *users) next(t *testing.T) any {
	t.Helper()
	select {
	case m := <-u.got:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("the user actor got nothing")
		return nil
	}
}

// A session whose token check began before a logout of its user cannot
// attach (the check may have read the generation before the bump); one
// that attached before the logout is told to close by its user's actor.
func TestAttachAfterLogout(t *testing.T) {
	u := newUsers(t, setting.Off)
	s1, s2, s3 := u.session(), u.session(), u.session()

	before := time.Now()
	require.Equal(t, directory.Attached, u.dir.Attach(1, before, s1, nil))
	require.IsType(t, &messages.SessionAttached{}, u.next(t))
	u.dir.Logout(1)
	require.IsType(t, &messages.Logout{}, u.next(t), "an attached session hears of the logout")

	require.Equal(t, directory.LoggedOut, u.dir.Attach(1, before, s2, nil), "checked before the logout")
	require.Equal(t, directory.Attached, u.dir.Attach(1, time.Now(), s2, nil), "checked after it")
	require.IsType(t, &messages.SessionAttached{}, u.next(t))

	require.Equal(t, directory.Attached, u.dir.Attach(2, before, s3, nil), "another user's logout does not count")
	require.Equal(t, directory.LoggedOut, u.dir.Attach(3, time.Now().Add(-directory.LogoutMemory), u.session(), nil),
		"a check older than the directory remembers logouts")
	u.dir.Logout(4) // not online: remembered all the same
	require.Equal(t, directory.LoggedOut, u.dir.Attach(4, before, u.session(), nil))
}

// At most MaxSessions sessions per user.
func TestAttachCapsSessions(t *testing.T) {
	u := newUsers(t, 2)
	s1, s2, s3 := u.session(), u.session(), u.session()
	now := time.Now()
	require.Equal(t, directory.Attached, u.dir.Attach(1, now, s1, nil))
	require.Equal(t, directory.Attached, u.dir.Attach(1, now, s2, nil))
	require.Equal(t, directory.TooManySessions, u.dir.Attach(1, now, s3, nil))
	require.Equal(t, directory.Attached, u.dir.Attach(1, now, s2, nil), "attaching again is no new session")
	require.Equal(t, directory.Attached, u.dir.Attach(2, now, s3, nil), "per user")
	u.dir.Detach(1, s1)
	require.Equal(t, directory.Attached, u.dir.Attach(1, now, s3, nil))
}

// A user whose last session ended stays online, with its actor, until
// that actor retires it (it told the user's friends offline): RetireUser
// refuses while a session is attached, or for another actor, and once it
// retired the user the next session starts a new actor, told it is the
// user's first with the friends its auth read.
func TestRetireUser(t *testing.T) {
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	t.Cleanup(system.Shutdown)
	type attached struct {
		self *actor.PID
		msg  *messages.SessionAttached
	}
	got := make(chan attached, 16)
	dir := directory.New(system.Root, directory.Config{
		User: func(int64) actor.Producer {
			return func() actor.Actor {
				return actor.ReceiveFunc(func(c actor.Context) {
					if m, ok := c.Message().(*messages.SessionAttached); ok {
						got <- attached{c.Self(), m}
					}
				})
			}
		},
	})
	next := func() attached {
		t.Helper()
		select {
		case a := <-got:
			return a
		case <-time.After(5 * time.Second):
			t.Fatal("the user actor got nothing")
			return attached{}
		}
	}
	session := func() *actor.PID { return system.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {})) }
	s1, s2 := session(), session()

	require.Equal(t, directory.Attached, dir.Attach(1, time.Now(), s1, []int64{2, 3}))
	first := next()
	require.Equal(t, []int64{2, 3}, first.msg.Friends)
	require.False(t, first.msg.Reattach)
	require.False(t, dir.RetireUser(1, first.self, "last"), "a session is attached")
	dir.Detach(1, s1)
	require.Equal(t, map[int64]bool{1: true}, dir.OnlineAmong([]int64{1, 2}), "online until its actor retires")
	require.Zero(t, dir.Online(), "no session")
	require.True(t, dir.SendToUser(1, "to the actor waiting out the delay"))

	require.Equal(t, directory.Attached, dir.Attach(1, time.Now(), s2, []int64{2}))
	again := next()
	require.Equal(t, first.self, again.self, "the same actor: a reconnect within the delay")
	require.False(t, dir.RetireUser(1, first.self, "last"))
	dir.Detach(1, s2)
	require.False(t, dir.RetireUser(1, session(), "last"), "not its actor")
	require.True(t, dir.RetireUser(1, first.self, "last"))
	require.Empty(t, dir.OnlineAmong([]int64{1}))
	require.False(t, dir.SendToUser(1, "nobody"))

	require.Equal(t, directory.Attached, dir.Attach(1, time.Now(), s1, []int64{3}))
	fresh := next()
	require.NotEqual(t, first.self, fresh.self)
	require.Equal(t, []int64{3}, fresh.msg.Friends)
}
