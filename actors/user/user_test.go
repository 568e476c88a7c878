package user_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/actors/actortest"
	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/actors/user"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence/storetest"
)

// users is a directory of real user actors over a real SQLite store held
// by a gate, with fake sessions.
type users struct {
	t     *testing.T
	root  *actor.RootContext
	store *storetest.Gate
	dir   *directory.Directory
}

func newUsers(t *testing.T) *users {
	u := &users{t: t, root: actortest.System(t).Root, store: storetest.NewGate(actortest.Store(t, 4))}
	deps := &user.Deps{Store: u.store, Now: time.Now, Timeout: 5 * time.Second, Log: zerolog.Nop()}
	u.dir = directory.New(u.root, directory.Config{
		User: func(id int64) actor.Producer {
			return func() actor.Actor { return actortest.Crashing{Actor: user.New(id, deps)} }
		},
	})
	deps.Directory = u.dir
	return u
}

// session is a fake session: it records the frames it is given.
type session struct {
	pid    *actor.PID
	frames chan []byte // pushes and replies, in arrival order
}

func (u *users) session(userID int64) *session {
	s := &session{frames: make(chan []byte, 1024)}
	s.pid = u.root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *messages.Push:
			s.frames <- m.Frame
		case *messages.Reply:
			for _, f := range m.Frames {
				s.frames <- f
			}
		}
	}))
	u.dir.Attach(userID, time.Now(), s.pid)
	return s
}

func (s *session) next(t *testing.T) string {
	t.Helper()
	select {
	case f := <-s.frames:
		return string(f)
	case <-time.After(5 * time.Second):
		t.Fatal("no frame")
		return ""
	}
}

func (s *session) none(t *testing.T) {
	t.Helper()
	select {
	case f := <-s.frames:
		t.Fatalf("unexpected frame %s", f)
	case <-time.After(50 * time.Millisecond):
	}
}

func event(text string) *messages.Deliver {
	return &messages.Deliver{Frame: []byte(text)}
}

func typeOf(t *testing.T, frame string) (typ, payloadType string) {
	t.Helper()
	var f struct {
		Type    string          `json:"type"`
		Payload json.RawMessage `json:"payload"`
	}
	require.NoError(t, json.Unmarshal([]byte(frame), &f))
	var p struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(f.Payload, &p)
	return f.Type, p.Type
}

// A friend request waiting on the store holds up neither the user's
// deliveries nor anyone else's; the operations of one user run one at a
// time, in order.
func TestFriendOpsDoNotHoldDeliveries(t *testing.T) {
	u := newUsers(t)
	a1, a2 := u.session(1), u.session(1)
	u.store.Hold("RequestFriend")
	u.dir.SendToUser(1, &messages.FriendOp{Kind: "request", TargetName: "user2", Session: a1.pid, Seq: 1})
	u.dir.SendToUser(1, &messages.FriendOp{Kind: "request", TargetName: "user3", Session: a1.pid, Seq: 2})
	require.True(t, u.store.AwaitWaiting("RequestFriend", 1, 5*time.Second))
	for i := range 20 {
		u.dir.SendToUser(1, event(fmt.Sprint(`"delivered while held `, i, `"`)))
		require.Equal(t, fmt.Sprint(`"delivered while held `, i, `"`), a1.next(t))
		require.Equal(t, fmt.Sprint(`"delivered while held `, i, `"`), a2.next(t))
	}
	require.Equal(t, 1, u.store.Waiting("RequestFriend"), "the second operation started before the first ended")
	u.store.Release("RequestFriend")
	for range 2 {
		typ, _ := typeOf(t, a1.next(t))
		require.Equal(t, "ok", typ)
		typ, kind := typeOf(t, a2.next(t))
		require.Equal(t, "mutual_users", typ)
		require.Equal(t, "request", kind)
	}
	lists := func() int {
		_, out, _, err := u.store.FriendLists(t.Context(), 1)
		require.NoError(t, err)
		return len(out)
	}
	require.Equal(t, 2, lists())
}

// A user actor that fails stops; the next message for the user starts a
// fresh one that knows every session, and no event is lost from then on.
func TestUserFailureIsReplaced(t *testing.T) {
	u := newUsers(t)
	a1, a2 := u.session(1), u.session(1)
	u.dir.SendToUser(1, event(`"before"`))
	require.Equal(t, `"before"`, a1.next(t))
	require.Equal(t, `"before"`, a2.next(t))
	u.dir.SendToUser(1, &actortest.Crash{})
	// An event that reaches the failed actor before it is forgotten is
	// lost (events are best effort, protocol.md §2.8); probe until the
	// fresh one serves.
	require.Eventually(t, func() bool {
		u.dir.SendToUser(1, event(`"probe"`))
		select {
		case <-a1.frames:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	for _, s := range []*session{a1, a2} {
		for len(s.frames) > 0 {
			<-s.frames
		}
	}
	for i := range 100 {
		u.dir.SendToUser(1, event(fmt.Sprint(i)))
	}
	for _, s := range []*session{a1, a2} {
		for i := range 100 {
			require.Equal(t, fmt.Sprint(i), s.next(t))
		}
		s.none(t)
	}
	// And it serves requests.
	u.dir.SendToUser(1, &messages.FriendOp{Kind: "request", TargetName: "user2", Session: a1.pid, Seq: 1})
	typ, _ := typeOf(t, a1.next(t))
	require.Equal(t, "ok", typ)
}

// A fan-out builds one Push for all the user's sessions but the author's,
// which gets the echo instead: a broadcast costs no allocation per session.
func TestDeliverSharesOnePush(t *testing.T) {
	u := newUsers(t)
	type received struct {
		session int
		msg     any
	}
	got := make(chan received, 16)
	var pids []*actor.PID
	for i := range 3 {
		pid := u.root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
			switch m := c.Message().(type) {
			case *messages.Push, *messages.Reply:
				got <- received{i, m}
			}
		}))
		u.dir.Attach(1, time.Now(), pid)
		pids = append(pids, pid)
	}
	echo := &messages.Reply{Seq: 1, Frames: [][]byte{[]byte(`"echo"`)}}
	u.dir.SendToUser(1, &messages.Deliver{Frame: []byte(`"event"`), Kind: messages.EventChatSend, Except: pids[0], Echo: echo})
	pushes := map[int]*messages.Push{}
	for range 3 {
		select {
		case r := <-got:
			if r.session == 0 {
				require.Same(t, echo, r.msg, "the author's session gets the echo alone")
				continue
			}
			pushes[r.session] = r.msg.(*messages.Push)
		case <-time.After(5 * time.Second):
			t.Fatal("a session got nothing")
		}
	}
	require.Len(t, pushes, 2)
	require.Same(t, pushes[1], pushes[2])
	require.Equal(t, messages.EventChatSend, pushes[1].Kind)
	select {
	case r := <-got:
		t.Fatalf("session %d got %v too", r.session, r.msg)
	case <-time.After(50 * time.Millisecond):
	}
}
