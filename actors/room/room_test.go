package room_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/bwmarrin/snowflake"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/actors/actortest"
	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/actors/room"
	"github.com/rewind-chat/rewind/actors/roomstate"
	"github.com/rewind-chat/rewind/actors/writer"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/storetest"
)

// rooms is a directory of real room actors over a real SQLite store held
// by a gate, with the real writer and room-state loader, and fake sessions.
type rooms struct {
	t           *testing.T
	root        *actor.RootContext
	store       *storetest.Gate
	dir         *directory.Directory
	activations prometheus.Counter
	// delivered gets what the user actors are handed; offset is added to
	// the rooms' clock.
	delivered chan delivered
	offset    atomic.Int64
}

// delivered is a Deliver a user actor got.
type delivered struct {
	user int64
	msg  *messages.Deliver
}

func newRooms(t *testing.T, idle time.Duration) *rooms {
	s := actortest.Store(t, 4)
	for _, p := range [][2]int64{{1, 2}, {3, 4}} {
		_, err := s.RequestFriend(t.Context(), p[0], p[1], time.Now())
		require.NoError(t, err)
		require.NoError(t, s.AcceptFriend(t.Context(), p[1], p[0], time.Now()))
	}
	gate := storetest.NewGate(s)

	root := actortest.System(t).Root
	ids, _ := snowflake.NewNode(1)
	w := root.Spawn(actor.PropsFromProducer(func() actor.Actor { return writer.New(writer.Config{Store: gate}) }))
	loader := root.Spawn(actor.PropsFromProducer(func() actor.Actor { return roomstate.New(roomstate.Config{Store: gate}) }))
	r := &rooms{t: t, root: root, store: gate, activations: prometheus.NewCounter(prometheus.CounterOpts{Name: "a"}),
		delivered: make(chan delivered, 256)}
	deps := &room.Deps{
		Loader: loader, NewID: func() int64 { return ids.Generate().Int64() }, Location: time.UTC,
		Now:  func() time.Time { return time.Now().Add(time.Duration(r.offset.Load())) },
		Idle: idle, TypingInterval: room.DefaultTypingInterval, Activations: r.activations, Log: zerolog.Nop(),
	}
	r.dir = directory.New(root, directory.Config{
		User: func(id int64) actor.Producer {
			return func() actor.Actor {
				return actor.ReceiveFunc(func(c actor.Context) {
					if m, ok := c.Message().(*messages.Deliver); ok {
						r.delivered <- delivered{id, m}
					}
				})
			}
		},
		Room: func(k messages.RoomKey) actor.Producer {
			return func() actor.Actor { return actortest.Crashing{Actor: room.New(k, deps)} }
		},
		Writers: []*actor.PID{w},
	})
	deps.Directory = r.dir
	return r
}

// session is a fake session: it records the replies it gets.
type session struct {
	pid     *actor.PID
	replies chan *messages.Reply
}

func (r *rooms) session() *session {
	s := &session{replies: make(chan *messages.Reply, 256)}
	s.pid = r.root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(*messages.Reply); ok {
			s.replies <- m
		}
	}))
	return s
}

// send hands the room of author and other a send with seq as its number.
func (r *rooms) send(s *session, author, other int64, seq uint64, content string) {
	key := messages.DMKey(author, other)
	r.dir.SendToRoom(key, &messages.ChatWrite{
		RoomLow: key.Low, RoomHigh: key.High, ChatId: author ^ other, Author: author, Content: content,
		Nonce: fmt.Sprint("n", seq), Session: s.pid, Seq: seq,
	})
}

type chatFrame struct {
	Type    string `json:"type"`
	Nonce   string `json:"nonce"`
	Payload struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		UserID  string `json:"user_id"`
		Content string `json:"content"`
		Code    int    `json:"code"`
	} `json:"payload"`
}

func (s *session) next(t *testing.T) (uint64, chatFrame) {
	t.Helper()
	select {
	case m := <-s.replies:
		if m.Seq == probeSeq {
			return s.next(t)
		}
		var f chatFrame
		require.NoError(t, json.Unmarshal(m.Frames[0], &f))
		return m.Seq, f
	case <-time.After(5 * time.Second):
		t.Fatal("no reply")
		return 0, chatFrame{}
	}
}

func (s *session) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-s.replies:
		t.Fatalf("unexpected reply %s", bytes.Join(m.Frames, nil))
	case <-time.After(d):
	}
}

// The echo comes only after the writer's commit: "echo means stored".
func TestRoomEchoesAfterCommit(t *testing.T) {
	r := newRooms(t, time.Minute)
	s := r.session()
	r.send(s, 1, 2, 1, "warm")
	s.next(t)
	r.store.Hold("WriteMessages")
	r.send(s, 1, 2, 2, "held")
	require.True(t, r.store.AwaitWaiting("WriteMessages", 1, 5*time.Second))
	s.none(t, 100*time.Millisecond)
	r.store.Release("WriteMessages")
	seq, f := s.next(t)
	require.Equal(t, uint64(2), seq)
	require.Equal(t, "chat", f.Type)
	require.Equal(t, "held", f.Payload.Content)
	roomID, err := r.store.FindDMRoom(t.Context(), 1, 2)
	require.NoError(t, err)
	history, err := r.store.History(t.Context(), roomID, persistence.Cursor{Time: time.Now().Add(time.Hour)}, 10)
	require.NoError(t, err)
	require.Equal(t, f.Payload.ID, fmt.Sprint(history[0].ID))
}

// A cold room waiting for its state holds up only itself: a warm room's
// writes are stored and answered meanwhile, and the cold room's writes
// then go in the order they came.
func TestRoomActivationHoldsOnlyItsRoom(t *testing.T) {
	r := newRooms(t, time.Minute)
	warm, cold := r.session(), r.session()
	r.send(warm, 3, 4, 1, "warm")
	warm.next(t)
	r.store.Hold("OpenDMs")
	for i := uint64(1); i <= 3; i++ {
		r.send(cold, 1, 2, i, fmt.Sprint("cold ", i))
	}
	require.True(t, r.store.AwaitWaiting("OpenDMs", 1, 5*time.Second))
	for i := uint64(2); i <= 11; i++ {
		r.send(warm, 3, 4, i, "while held")
		seq, f := warm.next(t)
		require.Equal(t, i, seq)
		require.Equal(t, "chat", f.Type, "a warm room's send failed while another room loads")
	}
	require.Equal(t, 1, r.store.Waiting("OpenDMs"), "the cold room is still loading")
	cold.none(t, 50*time.Millisecond)
	r.store.Release("OpenDMs")
	for i := uint64(1); i <= 3; i++ {
		seq, f := cold.next(t)
		require.Equal(t, i, seq)
		require.Equal(t, fmt.Sprint("cold ", i), f.Payload.Content)
	}
}

// The rooms that activate while a load runs share the next one.
func TestRoomActivationsShareLoads(t *testing.T) {
	r := newRooms(t, time.Minute)
	s := r.session()
	r.store.Hold("OpenDMs")
	r.send(s, 1, 2, 1, "first")
	require.True(t, r.store.AwaitWaiting("OpenDMs", 1, 5*time.Second))
	r.send(s, 3, 4, 2, "second")
	require.True(t, r.store.AwaitWaiting("OpenDMs", 2, 5*time.Second)) // the loader's second slot
	r.store.Release("OpenDMs")
	for range 2 {
		_, f := s.next(t)
		require.Equal(t, "chat", f.Type)
	}
	require.Equal(t, 2.0, testutil.ToFloat64(r.activations))
}

// An idle room retires; the next send starts a fresh one, which loads its
// state again and serves it.
func TestRoomRetiresWhenIdle(t *testing.T) {
	r := newRooms(t, 50*time.Millisecond)
	s := r.session()
	r.send(s, 1, 2, 1, "before")
	_, f := s.next(t)
	require.Equal(t, "chat", f.Type)
	require.Eventually(t, func() bool {
		r.send(s, 1, 2, 2, "after")
		_, f := s.next(t)
		require.Equal(t, "chat", f.Type)
		return testutil.ToFloat64(r.activations) >= 2
	}, 5*time.Second, 100*time.Millisecond)
}

// A room that fails stops; the directory forgets it and the next send
// starts a fresh one that answers each sender with its own message.
func TestRoomFailureIsReplaced(t *testing.T) {
	r := newRooms(t, time.Minute)
	a, b := r.session(), r.session()
	r.send(a, 1, 2, 1, "from 1")
	_, f := a.next(t)
	require.Equal(t, "1", f.Payload.UserID)
	r.dir.SendToRoom(messages.DMKey(1, 2), &actortest.Crash{})
	// A send that reaches the failed actor before it is forgotten is not
	// answered; probe until the fresh one serves.
	require.Eventually(t, func() bool { return probe(r, a) }, 5*time.Second, 10*time.Millisecond)
	for i := uint64(10); i < 20; i++ {
		r.send(a, 1, 2, i, "from 1")
		r.send(b, 2, 1, i, "from 2")
		seq, f := a.next(t)
		require.Equal(t, i, seq)
		require.Equal(t, "1", f.Payload.UserID)
		seq, f = b.next(t)
		require.Equal(t, i, seq)
		require.Equal(t, "2", f.Payload.UserID)
	}
	require.Equal(t, 2.0, testutil.ToFloat64(r.activations))
}

// probeSeq numbers probes, which next skips.
const probeSeq = 99

// probe sends once and reports whether it was answered.
func probe(r *rooms, s *session) bool {
	r.send(s, 1, 2, probeSeq, "probe")
	select {
	case <-s.replies:
		return true
	case <-time.After(200 * time.Millisecond):
		return false
	}
}

// A room that no one can write to (a made-up user, a stranger) answers
// what waited for its state and retires at once, rather than living until
// idle: sends to made-up chat_ids cannot pile up room actors.
func TestRoomNoOneCanWriteToRetiresAtOnce(t *testing.T) {
	r := newRooms(t, time.Minute)
	s := r.session()
	r.send(s, 1, 2, 1, "friends")
	s.next(t)
	for i, other := range []int64{3, 99} { // 1 and 3 are not friends; 99 is no user
		seq := uint64(10 + i)
		r.send(s, 1, other, seq, "hello?")
		got, f := s.next(t)
		require.Equal(t, seq, got)
		require.Equal(t, "error", f.Type)
		require.Equal(t, map[int64]int{3: 4005, 99: 4004}[other], f.Payload.Code)
	}
	require.Eventually(t, func() bool { return r.dir.Rooms() == 1 }, 5*time.Second, 5*time.Millisecond,
		"only the friends' room stays")
}

// typing hands the room of author and other a typing request from s.
func (r *rooms) typing(s *session, author, other int64, seq uint64) {
	key := messages.DMKey(author, other)
	r.dir.SendToRoom(key, &messages.Typing{
		RoomLow: key.Low, RoomHigh: key.High, ChatId: author ^ other, Author: author, Session: s.pid, Seq: seq,
	})
}

// reply is s's next reply, whatever its frames.
func (s *session) reply(t *testing.T) *messages.Reply {
	t.Helper()
	select {
	case m := <-s.replies:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no reply")
		return nil
	}
}

// The room relays typing (protocol.md §4.3) to the other member's user
// actor only, at most one per TypingInterval per author whichever session
// it comes from, the others dropped; every request is answered a Reply
// without frames, unless refused as a send would be (4005 not friends,
// 4004 no such user).
func TestRoomTypingThrottledPerAuthor(t *testing.T) {
	r := newRooms(t, time.Minute)
	watcher := r.root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	for _, id := range []int64{1, 2, 3} {
		require.Equal(t, directory.Attached, r.dir.Attach(id, time.Now(), watcher, nil))
	}
	phone, laptop := r.session(), r.session()
	next := func() delivered {
		t.Helper()
		select {
		case d := <-r.delivered:
			return d
		case <-time.After(5 * time.Second):
			t.Fatal("nothing delivered")
			return delivered{}
		}
	}
	none := func() {
		t.Helper()
		select {
		case d := <-r.delivered:
			t.Fatalf("user %d got %s", d.user, d.msg.Frame)
		case <-time.After(100 * time.Millisecond):
		}
	}
	for i := range 6 {
		s := []*session{phone, laptop}[i%2]
		r.typing(s, 1, 2, uint64(i+1))
		m := s.reply(t)
		require.Equal(t, uint64(i+1), m.Seq)
		require.Empty(t, m.Frames, "a typing has no answer")
	}
	d := next()
	require.Equal(t, int64(2), d.user, "to the other member only")
	require.Equal(t, messages.EventTyping, d.msg.Kind)
	require.JSONEq(t, `{"type":"typing","payload":{"chat_id":"3","user_id":"1"}}`, string(d.msg.Frame))
	none()

	r.typing(phone, 2, 1, 10) // the other author has an interval of its own
	require.Empty(t, phone.reply(t).Frames)
	d = next()
	require.Equal(t, int64(1), d.user)
	require.JSONEq(t, `{"type":"typing","payload":{"chat_id":"3","user_id":"2"}}`, string(d.msg.Frame))

	r.offset.Add(int64(room.DefaultTypingInterval))
	r.typing(laptop, 1, 2, 11)
	require.Empty(t, laptop.reply(t).Frames)
	require.Equal(t, int64(2), next().user, "the interval passed")
	r.typing(laptop, 1, 2, 12)
	require.Empty(t, laptop.reply(t).Frames)
	none()

	for i, other := range []int64{3, 99} { // 1 and 3 are not friends; 99 is no user
		r.typing(phone, 1, other, uint64(20+i))
		m := phone.reply(t)
		require.Len(t, m.Frames, 1)
		require.JSONEq(t, map[int64]string{
			3:  `{"type":"error","payload":{"code":4005,"reason":"Not a mutual user."}}`,
			99: `{"type":"error","payload":{"code":4004,"reason":"User not exist."}}`,
		}[other], string(m.Frames[0]))
	}
	none()
	require.Eventually(t, func() bool { return r.dir.Rooms() == 1 }, 5*time.Second, 5*time.Millisecond,
		"a room no one can type to retires at once")

	// A friendship that ends is seen by the next typing.
	require.NoError(t, r.store.DeleteFriend(t.Context(), 1, 2))
	r.dir.NotifyRoom(messages.DMKey(1, 2), &messages.FriendshipChanged{})
	r.offset.Add(int64(room.DefaultTypingInterval))
	r.typing(phone, 1, 2, 30)
	require.JSONEq(t, `{"type":"error","payload":{"code":4005,"reason":"Not a mutual user."}}`, string(phone.reply(t).Frames[0]))
	none()
}
