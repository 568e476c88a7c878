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
	require.Equal(t, directory.Attached, u.dir.Attach(1, before, s1))
	require.IsType(t, &messages.SessionAttached{}, u.next(t))
	u.dir.Logout(1)
	require.IsType(t, &messages.Logout{}, u.next(t), "an attached session hears of the logout")

	require.Equal(t, directory.LoggedOut, u.dir.Attach(1, before, s2), "checked before the logout")
	require.Equal(t, directory.Attached, u.dir.Attach(1, time.Now(), s2), "checked after it")
	require.IsType(t, &messages.SessionAttached{}, u.next(t))

	require.Equal(t, directory.Attached, u.dir.Attach(2, before, s3), "another user's logout does not count")
	require.Equal(t, directory.LoggedOut, u.dir.Attach(3, time.Now().Add(-directory.LogoutMemory), u.session()),
		"a check older than the directory remembers logouts")
	u.dir.Logout(4) // not online: remembered all the same
	require.Equal(t, directory.LoggedOut, u.dir.Attach(4, before, u.session()))
}

// At most MaxSessions sessions per user.
func TestAttachCapsSessions(t *testing.T) {
	u := newUsers(t, 2)
	s1, s2, s3 := u.session(), u.session(), u.session()
	now := time.Now()
	require.Equal(t, directory.Attached, u.dir.Attach(1, now, s1))
	require.Equal(t, directory.Attached, u.dir.Attach(1, now, s2))
	require.Equal(t, directory.TooManySessions, u.dir.Attach(1, now, s3))
	require.Equal(t, directory.Attached, u.dir.Attach(1, now, s2), "attaching again is no new session")
	require.Equal(t, directory.Attached, u.dir.Attach(2, now, s3), "per user")
	u.dir.Detach(1, s1)
	require.Equal(t, directory.Attached, u.dir.Attach(1, now, s3))
}
