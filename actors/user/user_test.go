package user_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
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
	deps  *user.Deps // set before the first session
}

func newUsers(t *testing.T) *users {
	u := &users{t: t, root: actortest.System(t).Root, store: storetest.NewGate(actortest.Store(t, 4))}
	deps := &user.Deps{Store: u.store, Now: time.Now, Timeout: 5 * time.Second, Log: zerolog.Nop()}
	u.deps = deps
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
	friends, err := u.store.Friends(u.t.Context(), userID) // as its auth reads them
	require.NoError(u.t, err)
	ids := make([]int64, len(friends))
	for i, f := range friends {
		ids[i] = f.ID
	}
	u.dir.Attach(userID, time.Now(), s.pid, ids)
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
		u.dir.Attach(1, time.Now(), pid, nil)
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

// befriend makes a and b friends in the store.
func (u *users) befriend(a, b int64) {
	u.t.Helper()
	_, err := u.store.RequestFriend(u.t.Context(), a, b, time.Now())
	require.NoError(u.t, err)
	require.NoError(u.t, u.store.AcceptFriend(u.t.Context(), b, a, time.Now()))
}

func presence(id int64, status string) string {
	return fmt.Sprintf(`{"type":"presence","payload":{"user_id":"%d","status":"%s"}}`, id, status)
}

// testOfflineDelay is the offline delay of the presence tests.
const testOfflineDelay = 300 * time.Millisecond

// A user's first session tells its online friends "online"; the last one
// out tells them "offline" after the offline delay, unless a session came
// meanwhile (a quick reconnect shows nothing); the actor then retires.
// Friends who are offline get nothing and no actor.
func TestPresenceCountsSessions(t *testing.T) {
	u := newUsers(t)
	u.deps.OfflineDelay = testOfflineDelay
	u.befriend(1, 2)
	u.befriend(1, 3)
	f2 := u.session(2) // a friend online; 3 is offline; 4 is no friend
	s4 := u.session(4)

	a := u.session(1)
	require.Equal(t, presence(1, "online"), f2.next(t))
	b := u.session(1)
	f2.none(t)
	u.dir.Detach(1, a.pid)
	f2.none(t)
	require.Equal(t, map[int64]bool{1: true, 2: true}, u.dir.OnlineAmong([]int64{1, 2, 3}))
	u.dir.Detach(1, b.pid)
	gone := time.Now()
	require.Equal(t, map[int64]bool{1: true}, u.dir.OnlineAmong([]int64{1}), "online within the offline delay")
	require.Equal(t, presence(1, "offline"), f2.next(t))
	require.GreaterOrEqual(t, time.Since(gone), testOfflineDelay)
	require.Eventually(t, func() bool { return len(u.dir.OnlineAmong([]int64{1})) == 0 }, 5*time.Second, time.Millisecond,
		"the actor retired")

	c := u.session(1)
	require.Equal(t, presence(1, "online"), f2.next(t), "online again after the offline")
	u.dir.Detach(1, c.pid)
	time.Sleep(testOfflineDelay / 3)
	d := u.session(1) // a quick reconnect
	time.Sleep(testOfflineDelay)
	f2.none(t)
	u.dir.Detach(1, d.pid)
	require.Equal(t, presence(1, "offline"), f2.next(t))
	s4.none(t)
	require.Equal(t, 2, u.dir.Online(), "the offline friend got no actor")
}

// A local user actor that fails is replaced by one that learns its
// sessions by re-attach: it tells the friends nothing, and still tells
// them offline after the last session.
func TestPresenceSurvivesFailure(t *testing.T) {
	u := newUsers(t)
	u.deps.OfflineDelay = testOfflineDelay
	u.befriend(1, 2)
	f2 := u.session(2)
	a := u.session(1)
	require.Equal(t, presence(1, "online"), f2.next(t))
	u.dir.SendToUser(1, &actortest.Crash{})
	require.Eventually(t, func() bool {
		u.dir.SendToUser(1, event(`"probe"`))
		select {
		case <-a.frames:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}, 5*time.Second, 10*time.Millisecond)
	f2.none(t)
	u.dir.Detach(1, a.pid)
	require.Equal(t, presence(1, "offline"), f2.next(t))
}

// A user grain's sessions are soft state: a blank activation that learns
// them by re-attach tells the friends nothing, nor does a re-attach of a
// known session or a new session beside them; a session attached for the
// first time to a blank grain tells them online; a re-attach after the
// grain told offline tells online again; an offline handed on by a
// leaving node's grain is told after the delay.
func TestGrainPresenceSoftState(t *testing.T) {
	u := newUsers(t)
	u.deps.OfflineDelay = testOfflineDelay
	u.deps.Reattach, u.deps.Idle = time.Minute, time.Minute
	u.befriend(1, 2)
	f2 := u.session(2)
	grain := func() *actor.PID {
		pid := u.root.Spawn(actor.PropsFromProducer(func() actor.Actor { return user.NewGrain(u.deps) }))
		u.root.Send(pid, &pcluster.ClusterInit{Identity: pcluster.NewClusterIdentity(directory.UserIdentity(1), directory.UserKind)})
		t.Cleanup(func() { u.root.Stop(pid) })
		return pid
	}
	sessions := make([]*actor.PID, 4)
	for i := range sessions {
		sessions[i] = u.root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	}

	g := grain()
	u.root.Send(g, &messages.SessionAttached{Session: sessions[0], Reattach: true})
	u.root.Send(g, &messages.SessionAttached{Session: sessions[1], Reattach: true})
	u.root.Send(g, &messages.SessionAttached{Session: sessions[0], Reattach: true})
	u.root.Send(g, &messages.SessionAttached{Session: sessions[2], Friends: []int64{2}})
	f2.none(t)
	for _, s := range sessions[:3] {
		u.root.Send(g, &messages.SessionDetached{Session: s})
	}
	require.Equal(t, presence(1, "offline"), f2.next(t))
	u.root.Send(g, &messages.SessionAttached{Session: sessions[0], Reattach: true})
	require.Equal(t, presence(1, "online"), f2.next(t), "a session it had told offline is back")

	u.root.Send(grain(), &messages.SessionAttached{Session: sessions[3], Friends: []int64{2}}) // as its auth read them
	require.Equal(t, presence(1, "online"), f2.next(t), "a first session to a blank grain")

	u.root.Send(grain(), &messages.OfflinePending{})
	require.Equal(t, presence(1, "offline"), f2.next(t))
	f2.none(t)
}

// TestGrainForgetsSessionsNotAttachedAgain: a grain keeps a session only
// while its node attaches it again within directory.ReattachForget
// re-attach intervals (a session of a node that died is never detached):
// one attached once is forgotten, one attached again goes on getting the
// user's events.
func TestGrainForgetsSessionsNotAttachedAgain(t *testing.T) {
	u := newUsers(t)
	u.deps.Reattach, u.deps.Idle = 20*time.Millisecond, time.Minute
	g := u.root.Spawn(actor.PropsFromProducer(func() actor.Actor { return user.NewGrain(u.deps) }))
	t.Cleanup(func() { u.root.Stop(g) })
	u.root.Send(g, &pcluster.ClusterInit{Identity: pcluster.NewClusterIdentity(directory.UserIdentity(1), directory.UserKind)})
	gone, kept := u.probe(), u.probe()
	u.root.Send(g, &messages.SessionAttached{Session: gone.pid, Reattach: true})
	u.root.Send(g, &messages.SessionAttached{Session: kept.pid, Reattach: true})
	u.root.Send(g, event("before"))
	require.Equal(t, "before", gone.next(t))
	require.Equal(t, "before", kept.next(t))

	// 10 intervals, kept re-attached every half interval.
	for range 20 {
		time.Sleep(10 * time.Millisecond)
		u.root.Send(g, &messages.SessionAttached{Session: kept.pid, Reattach: true})
	}
	u.root.Send(g, event("after"))
	require.Equal(t, "after", kept.next(t))
	gone.none(t)
}

// probe is a session actor that only records what it is pushed.
func (u *users) probe() *session {
	s := &session{frames: make(chan []byte, 16)}
	s.pid = u.root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(*messages.Push); ok {
			s.frames <- m.Frame
		}
	}))
	return s
}
