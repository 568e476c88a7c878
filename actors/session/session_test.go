package session_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/actors/actortest"
	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/actors/session"
	"github.com/rewind-chat/rewind/actors/user"
	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/storetest"
	"github.com/rewind-chat/rewind/protocol"
	"github.com/rewind-chat/rewind/setting"
)

// conn is a fake connection: it records the frames a session sends.
type conn struct {
	mu     sync.Mutex
	frames chan []byte
	closed uint16
}

func (c *conn) Send(frame []byte) bool { c.frames <- frame; return true }

func (c *conn) SendAll(frames [][]byte) bool {
	for _, f := range frames {
		c.frames <- f
	}
	return true
}

func (c *conn) Close(code uint16, _ string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = code
}

func (c *conn) Abort(code uint16, reason string) { c.Close(code, reason) }

func (c *conn) next(t *testing.T) map[string]any {
	t.Helper()
	f := c.raw(t)
	var m map[string]any
	require.NoError(t, json.Unmarshal(f, &m), string(f))
	return m
}

// raw is the next frame as the session sent it.
func (c *conn) raw(t *testing.T) []byte {
	t.Helper()
	select {
	case f := <-c.frames:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no frame")
		return nil
	}
}

type fixture struct {
	store *storetest.Gate
	dir   *directory.Directory
	root  *actor.RootContext
	deps  *session.Deps
	token string
}

func newFixture(t *testing.T) *fixture {
	s := actortest.Store(t, 3)
	u, err := s.UserByID(t.Context(), 1)
	require.NoError(t, err)
	gate := storetest.NewGate(s)
	system := actortest.System(t)
	tokens := auth.NewTokens([]byte("0123456789abcdef0123456789abcdef"), time.Hour, gate, time.Now)
	token, err := tokens.Issue(u)
	require.NoError(t, err)
	f := &fixture{store: gate, root: system.Root, token: token}
	userDeps := &user.Deps{Store: gate, Now: time.Now, Timeout: 5 * time.Second, Log: zerolog.Nop()}
	f.dir = directory.New(f.root, directory.Config{
		User: func(id int64) actor.Producer { return func() actor.Actor { return user.New(id, userDeps) } },
	})
	userDeps.Directory = f.dir
	f.deps = session.NewDeps(session.Deps{
		Config: session.Config{
			HeartbeatInterval: time.Minute, HeartbeatGrace: time.Minute, Location: time.UTC,
			RequestTimeout: 10 * time.Second, AuthTimeout: setting.Off, Rate: setting.Off,
		},
		Store: gate, Tokens: tokens, Directory: f.dir, Log: zerolog.Nop(),
	})
	return f
}

// start starts a session speaking protocol version.
func (f *fixture) start(version int) (*session.Peer, *conn) {
	c := &conn{frames: make(chan []byte, 256)}
	return session.Start(session.NewRoot(f.root.ActorSystem()), c, version, f.deps), c
}

func text(typ string, payload any, nonce string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "payload": payload, "nonce": nonce})
	return b
}

// The session's reads run off the actor: while its auth or its history
// read waits in the store, the requests behind it wait their turn (answers
// stay in request order) but events pushed to it go out at once.
func TestSessionReadsKeepOrderAndLetEventsThrough(t *testing.T) {
	f := newFixture(t)
	peer, c := f.start(2)
	peer.Text(text("heartbeat", 1, "h1"))
	require.Equal(t, "h1", c.next(t)["nonce"])

	f.store.Hold("FriendLists")
	peer.Text(text("auth", map[string]string{"auth": f.token}, "a"))
	peer.Text(text("heartbeat", 2, "h2"))
	require.True(t, f.store.AwaitWaiting("FriendLists", 1, 5*time.Second))
	select {
	case fr := <-c.frames:
		t.Fatalf("answered out of order while auth waits: %s", fr)
	case <-time.After(50 * time.Millisecond):
	}
	f.store.Release("FriendLists")
	require.Equal(t, "auth", c.next(t)["type"])
	require.Equal(t, "h2", c.next(t)["nonce"])

	f.store.Hold("History")
	// The DM has no room yet, so hold the room's read by making one.
	_, err := f.store.RequestFriend(t.Context(), 1, 2, time.Now())
	require.NoError(t, err)
	require.NoError(t, f.store.AcceptFriend(t.Context(), 2, 1, time.Now()))
	_, err = f.store.OpenDMs(t.Context(), []persistence.DMOpen{{Low: 1, High: 2, NewID: 77}})
	require.NoError(t, err)
	peer.Text(text("load", map[string]any{"type": "chat", "load_id": "3"}, "l"))
	peer.Text(text("heartbeat", 3, "h3"))
	require.True(t, f.store.AwaitWaiting("History", 1, 5*time.Second))
	for i := range 5 {
		f.dir.SendToUser(1, &messages.Deliver{Frame: fmt.Appendf(nil, `{"type":"event","payload":%d}`, i)})
		require.Equal(t, "event", c.next(t)["type"], "an event waited for the session's read")
	}
	f.store.Release("History")
	end := c.next(t)
	require.Equal(t, "load", end["type"])
	require.Equal(t, "l", end["nonce"])
	require.Equal(t, "h3", c.next(t)["nonce"])
}

// A message over the gateway's frame limit is answered 1009 in its turn,
// counts against the rate limit like any frame, and the session goes on.
func TestTooLargeAnswersInTurnAndCounts(t *testing.T) {
	f := newFixture(t)
	f.deps.Rate, f.deps.Burst = 0.001, 3
	peer, c := f.start(2)
	peer.Text(text("heartbeat", 1, "h1"))
	peer.TooLarge()
	peer.Text(text("heartbeat", 2, "h2"))
	peer.TooLarge() // the fourth frame: over the burst
	require.Equal(t, "h1", c.next(t)["nonce"])
	require.Equal(t, map[string]any{"type": "error", "payload": map[string]any{"code": 1009.0, "reason": "Frame too large."}}, c.next(t))
	require.Equal(t, "h2", c.next(t)["nonce"])
	require.Equal(t, map[string]any{"type": "error", "payload": map[string]any{"code": 4029.0, "reason": "rate limited."}}, c.next(t))
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Zero(t, c.closed)
}

// A session's version picks the rules every frame it sends obeys
// (protocol.md §2.9). A v1 session shows no profile anywhere, receives of
// the events only new messages and friend events about other users (their
// profile null), and a new message as the very bytes every other v1
// session gets, the v1 form its maker encoded without seq (none: dropped,
// never the v2 bytes); a v2 session receives everything as it is.
func TestV1RulesFilterWhatTheSessionSends(t *testing.T) {
	f := newFixture(t)
	pic := "https://example.test/p.png"
	for _, id := range []int64{1, 2} {
		_, err := f.store.SetProfile(t.Context(), id, &pic)
		require.NoError(t, err)
	}
	_, err := f.store.RequestFriend(t.Context(), 1, 2, time.Now())
	require.NoError(t, err)
	require.NoError(t, f.store.AcceptFriend(t.Context(), 2, 1, time.Now()))

	p1, c1 := f.start(1)
	p2, c2 := f.start(2)
	other := map[string]any{"id": "2", "name": "user2", "profile": pic}
	otherV1 := map[string]any{"id": "2", "name": "user2", "profile": nil}
	for _, s := range []struct {
		peer *session.Peer
		c    *conn
	}{{p1, c1}, {p2, c2}} {
		s.peer.Text(text("heartbeat", 0, ""))
		s.c.next(t)
		s.peer.Text(text("auth", map[string]string{"auth": f.token}, ""))
	}
	auth := c1.next(t)["payload"].(map[string]any)
	require.Equal(t, map[string]any{"id": "1", "name": "user1", "profile": nil}, auth["self_user"])
	require.JSONEq(t, `[{"id":"2","name":"user2","profile":null}]`, auth["mutual_users"].(string))
	auth = c2.next(t)["payload"].(map[string]any)
	require.Equal(t, map[string]any{"id": "1", "name": "user1", "profile": pic}, auth["self_user"])
	require.Equal(t, []any{map[string]any{"id": "2", "name": "user2", "profile": pic, "status": "offline"}}, auth["mutual_users"],
		"a v2 friend carries its status (protocol.md §4.4); v1's (above) none")

	send := []byte(`{"type":"chat","payload":{"type":"send","id":"9","user_id":"2","chat_id":"3","content":"hi","created_at":"2026-12-01 00:00:00.000000"}}`)
	sendV2 := []byte(`{"type":"chat","payload":{"type":"send","id":"9","user_id":"2","chat_id":"3","content":"hi","created_at":"2026-12-01 00:00:00.000000","seq":4}}`)
	friend := protocol.Frame("mutual_users", protocol.FriendEvent{Type: "request", User: protocol.User{ID: "2", Name: "user2", Profile: &pic}}, "")
	plainFriend := protocol.Frame("mutual_users", protocol.FriendEvent{Type: "delete", User: protocol.User{ID: "2", Name: "user2"}}, "")
	events := []*messages.Deliver{
		{Frame: sendV2, FrameV1: send, Kind: messages.EventChatSend},
		{Frame: sendV2, Kind: messages.EventChatSend}, // no v1 form: not to v1
		{Frame: []byte(`{"type":"chat","payload":{"type":"edit"}}`), Kind: messages.EventChatEdit},
		{Frame: protocol.ReadFrame(3, 2, 4), Kind: messages.EventRead},
		{Frame: friend, Kind: messages.EventFriend},
		{Frame: plainFriend, Kind: messages.EventFriend},
		{Frame: []byte(`{"type":"mutual_users","payload":{"type":"request","origin":"self"}}`), Kind: messages.EventFriendSelf},
		{Frame: []byte(`{"type":"user","payload":{}}`), Kind: messages.EventProfile},
		{Frame: protocol.TypingFrame(3, 2), Kind: messages.EventTyping},
		{Frame: protocol.PresenceFrame(2, protocol.StatusOnline), Kind: messages.EventPresence},
		{Frame: protocol.PresenceFrame(2, protocol.StatusOffline), Kind: messages.EventPresence},
		{Frame: []byte(`{"type":"typing","payload":{}}`)},                                  // no kind
		{Frame: []byte(`{"type":"presence","payload":{}}`), Kind: messages.EventKind(200)}, // a later kind
		{Frame: sendV2, FrameV1: send, Kind: messages.EventChatSend},
	}
	for _, e := range events {
		f.dir.SendToUser(1, e)
	}
	for _, e := range events {
		require.Equal(t, string(e.Frame), string(c2.raw(t)))
	}
	got := c1.raw(t)
	require.Same(t, &send[0], &got[0], "a v1 session copied a new message's frame")
	require.Equal(t, map[string]any{"type": "request", "user": otherV1}, c1.next(t)["payload"])
	got = c1.raw(t)
	require.Same(t, &plainFriend[0], &got[0], "a friend event without a profile was encoded again")
	got = c1.raw(t) // the last send: everything between was dropped
	require.Same(t, &send[0], &got[0])

	// The answers the session builds show a user as its version does: a
	// lookup, the friends list, the user's own profile set.
	for _, s := range []struct {
		peer *session.Peer
		c    *conn
		want map[string]any
	}{{p1, c1, otherV1}, {p2, c2, other}} {
		s.peer.Text(text("user", map[string]string{"id": "2"}, "u"))
		require.Equal(t, s.want, s.c.next(t)["payload"])
		s.peer.Text(text("load", map[string]string{"type": "mutual_users"}, "l"))
		require.Equal(t, []any{s.want}, s.c.next(t)["payload"])
	}
	p1.Text(text("user", map[string]any{"profile": pic}, "p1"))
	require.Equal(t, map[string]any{"type": "user", "nonce": "p1", "payload": map[string]any{"id": "1", "name": "user1", "profile": nil}}, c1.next(t))
	p2.Text(text("user", map[string]any{"profile": pic}, "p2"))
	require.Equal(t, map[string]any{"type": "user", "nonce": "p2", "payload": map[string]any{"id": "1", "name": "user1", "profile": pic}}, c2.next(t))
}

// A typing request has no answer unless it is refused, and the requests
// behind it are answered in their turn: the room ends the session's wait
// with a Reply without frames. One whose room never answers ends without
// a frame at the session's RequestTimeout (not 5001: there is nothing to
// retry). A v1 session does not know the type (protocol.md §2.9).
func TestTypingHasNoAnswerAndKeepsOrder(t *testing.T) {
	f := newFixture(t)
	typed := make(chan *messages.Typing, 16)
	var silent atomic.Bool // the room answers no typing
	f.dir = directory.New(f.root, directory.Config{
		User: func(int64) actor.Producer {
			return func() actor.Actor { return actor.ReceiveFunc(func(actor.Context) {}) }
		},
		Room: func(messages.RoomKey) actor.Producer {
			return func() actor.Actor {
				return actor.ReceiveFunc(func(c actor.Context) {
					if m, ok := c.Message().(*messages.Typing); ok {
						typed <- m
						if !silent.Load() {
							c.Send(m.Session, &messages.Reply{Seq: m.Seq})
						}
					}
				})
			}
		},
	})
	f.deps.Directory = f.dir
	f.deps.RequestTimeout = 300 * time.Millisecond
	p2, c2 := f.start(2)
	p1, c1 := f.start(1)
	for _, s := range []struct {
		peer *session.Peer
		c    *conn
	}{{p1, c1}, {p2, c2}} {
		s.peer.Text(text("heartbeat", 0, ""))
		s.c.next(t)
		s.peer.Text(text("auth", map[string]string{"auth": f.token}, ""))
		require.Equal(t, "auth", s.c.next(t)["type"])
	}

	p2.Text(text("typing", map[string]string{"chat_id": "3"}, "t1"))
	p2.Text(text("heartbeat", 1, "h1"))
	require.Equal(t, "h1", c2.next(t)["nonce"], "the typing was answered")
	m := <-typed
	require.Equal(t, messages.DMKey(1, 2), m.Key())
	require.Equal(t, int64(3), m.ChatId)
	require.Equal(t, int64(1), m.Author)

	for _, bad := range []struct {
		payload any
		code    float64
		reason  string
	}{
		{map[string]string{}, 4000, "chat_id is not provided."},
		{map[string]string{"chat_id": "x"}, 4000, "chat_id is not provided."},
		{map[string]string{"chat_id": "1"}, 4004, "User not exist."}, // chat_id XOR my id is me
	} {
		p2.Text(text("typing", bad.payload, "tb"))
		require.Equal(t, map[string]any{"type": "error", "nonce": "tb", "payload": map[string]any{"code": bad.code, "reason": bad.reason}}, c2.next(t))
	}

	silent.Store(true)
	start := time.Now()
	p2.Text(text("typing", map[string]string{"chat_id": "3"}, "t2"))
	p2.Text(text("heartbeat", 2, "h2"))
	<-typed
	require.Equal(t, map[string]any{"type": "heartbeat", "nonce": "h2", "payload": 2.0}, c2.next(t), "no 5001 for an unanswered typing")
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "the heartbeat waited its turn")

	p1.Text(text("typing", map[string]string{"chat_id": "3"}, "tv1"))
	require.Equal(t, map[string]any{"type": "error", "nonce": "tv1", "payload": map[string]any{"code": 4000.0, "reason": "Unknown type."}}, c1.next(t))
	select {
	case m := <-typed:
		t.Fatalf("a v1 typing reached the room: %v", m)
	case <-time.After(50 * time.Millisecond):
	}
}

// A v2 auth answer shows each friend online while the friend has a
// session (or its last one ended within the offline delay), offline
// otherwise; the directory answers without starting an actor.
func TestAuthShowsFriendsStatus(t *testing.T) {
	f := newFixture(t)
	for _, id := range []int64{2, 3} {
		_, err := f.store.RequestFriend(t.Context(), 1, id, time.Now())
		require.NoError(t, err)
		require.NoError(t, f.store.AcceptFriend(t.Context(), id, 1, time.Now()))
	}
	friend := f.root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	require.Equal(t, directory.Attached, f.dir.Attach(2, time.Now(), friend, nil))
	p, c := f.start(2)
	p.Text(text("heartbeat", 0, ""))
	c.next(t)
	p.Text(text("auth", map[string]string{"auth": f.token}, ""))
	status := map[string]any{}
	for _, u := range c.next(t)["payload"].(map[string]any)["mutual_users"].([]any) {
		status[u.(map[string]any)["id"].(string)] = u.(map[string]any)["status"]
	}
	require.Equal(t, map[string]any{"2": "online", "3": "offline"}, status)
	require.Equal(t, 2, f.dir.Online(), "user 3's status started no actor")
}
