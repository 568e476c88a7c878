package room

import (
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/protocol"
)

// Deps are what a room needs; shared by all rooms. Make them with
// NewDeps, which resolves the zero values (package setting has the
// convention).
type Deps struct {
	Directory *directory.Directory
	// Loader is the room-state loader (actors/roomstate).
	Loader *actor.PID
	// Store is where a channel's room loads its channel and members
	// (channel.go); DM rooms use the Loader.
	Store persistence.Store
	// LoadTimeout bounds a channel's load; default DefaultLoadTimeout.
	LoadTimeout time.Duration
	NewID       func() int64
	// Location is the zone of wire times; required (server resolves
	// REWIND_TIMEZONE).
	Location *time.Location
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Idle is how long a room waits without messages before it stops;
	// default DefaultIdle (2m); setting.Off: never.
	Idle time.Duration
	// TypingInterval is the least time between two typing events of one
	// author in one chat (protocol.md §4.3); the ones between are dropped.
	// Default DefaultTypingInterval (3s).
	TypingInterval time.Duration
	// Activations counts room actors started (cold rooms); optional.
	Activations prometheus.Counter
	Log         zerolog.Logger
}

// DefaultIdle is the default of Deps.Idle.
const DefaultIdle = 2 * time.Minute

// DefaultLoadTimeout is the default of Deps.LoadTimeout.
const DefaultLoadTimeout = 10 * time.Second

// DefaultTypingInterval is the default of Deps.TypingInterval.
const DefaultTypingInterval = 3 * time.Second

// NewDeps returns d with its zero values resolved.
func NewDeps(d Deps) *Deps {
	if d.Idle == 0 {
		d.Idle = DefaultIdle
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.LoadTimeout <= 0 {
		d.LoadTimeout = DefaultLoadTimeout
	}
	if d.TypingInterval <= 0 {
		d.TypingInterval = DefaultTypingInterval
	}
	return &d
}

// Actor is one DM room. Its fields are its own: only Receive touches them.
type Actor struct {
	key  messages.RoomKey
	deps *Deps

	// state is what the store said of the room; valid while loaded.
	state persistence.DMState
	// ch is a channel's state instead (key.IsChannel()); valid while
	// loaded.
	ch      channelState
	loaded  bool
	loading bool   // an OpenRoom is out
	gen     uint64 // bumped when the friendship changes: older loads are stale
	// waiting holds the writes that arrived while the state was not
	// loaded, typists the typing requests.
	waiting []*messages.ChatWrite
	typists []*messages.Typing
	// typed is when each author's last typing event went out.
	typed map[int64]time.Time

	ticket uint64
	// inflight holds the writes handed to the writer and not yet answered.
	inflight map[uint64]*messages.ChatWrite
	retired  bool // the directory forgot this actor: stop once inflight drains
	// The room's own idle timer: protoactor's ReceiveTimeout races its
	// timer goroutine against the actor's (go test -race), and it does not
	// re-arm after firing while a write is in flight.
	active time.Time   // last message other than idleCheck
	idle   *time.Timer // sends idleCheck
}

type (
	retire    struct{}
	idleCheck struct{}
)

// New returns the actor of room key.
func New(key messages.RoomKey, deps *Deps) *Actor {
	return &Actor{key: key, deps: deps, inflight: map[uint64]*messages.ChatWrite{}}
}

// NewGrain returns a room grain, which learns its key from its cluster
// identity.
func NewGrain(deps *Deps) *Actor {
	return &Actor{deps: deps, inflight: map[uint64]*messages.ChatWrite{}}
}

// Receive implements actor.Actor.
func (a *Actor) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*idleCheck); !ok {
		a.active = time.Now()
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if a.deps.Activations != nil {
			a.deps.Activations.Inc()
		}
		if a.deps.Idle > 0 { // setting.Off (negative): never idle
			self, root := ctx.Self(), ctx.ActorSystem().Root
			a.idle = time.AfterFunc(a.deps.Idle, func() { root.Send(self, &idleCheck{}) })
		}
	case *pcluster.ClusterInit:
		directory.TagGrain(ctx, directory.RoomKind, m.Identity.GetIdentity())
		if key, err := directory.ParseRoomIdentity(m.Identity.GetIdentity()); err == nil {
			a.key = key
		}
	case *actor.Stopping:
		a.abandon(ctx)
	case *actor.Restarting: // a grain that failed: its parent restarts it blank
		a.abandon(ctx)
		if a.idle != nil {
			a.idle.Stop()
		}
	case *actor.Stopped:
		if a.idle != nil {
			a.idle.Stop()
		}
		a.deps.Directory.RoomStopped(a.key, ctx.Self())
	case *idleCheck:
		if a.idle == nil {
			return
		}
		switch left := a.deps.Idle - time.Since(a.active); {
		case left > 0:
			a.idle.Reset(left)
		case !a.done():
			a.idle.Reset(a.deps.Idle)
		default:
			a.deps.Directory.RetireRoom(a.key, ctx.Self(), &retire{})
		}
	case *retire:
		a.retired = true
		a.stopIfDone(ctx)
	case *messages.FriendshipChanged:
		a.gen++
		a.loaded = false
		switch {
		case a.deps.Directory.Leaving():
			a.deps.Directory.NotifyRoom(a.key, m) // the next activation answers
		case m.Ack != nil:
			ctx.Send(m.Ack, &messages.FriendshipChangedSeen{})
		}
	case *messages.ChatWrite:
		if a.deps.Directory.Leaving() {
			// This node leaves the cluster: the room's next activation,
			// on another node, takes the write (directory.Leave).
			a.deps.Directory.SendToRoom(a.key, m)
			return
		}
		if !a.loaded {
			a.waiting = append(a.waiting, m)
			a.load(ctx)
			return
		}
		a.apply(ctx, m)
	case *messages.Typing:
		if a.deps.Directory.Leaving() {
			a.deps.Directory.SendToRoom(a.key, m) // as a write (above)
			return
		}
		if !a.loaded {
			a.typists = append(a.typists, m)
			a.load(ctx)
			return
		}
		a.typing(ctx, m)
	case *messages.RoomOpened:
		a.opened(ctx, m)
		a.stopIfDone(ctx)
	case *messages.ChannelMembership:
		a.membership(ctx, m)
	case *channelLoaded:
		a.channelOpened(ctx, m)
		a.stopIfDone(ctx)
	case *messages.Written:
		a.written(ctx, m)
		a.stopIfDone(ctx)
	}
}

// done reports whether nothing is waiting on the room.
func (a *Actor) done() bool {
	return len(a.inflight) == 0 && len(a.waiting) == 0 && len(a.typists) == 0 && !a.loading
}

func (a *Actor) stopIfDone(ctx actor.Context) {
	if a.retired && a.done() {
		ctx.Stop(ctx.Self())
	}
}

// abandon answers what the room still holds when it stops before it is
// done, which a failure does, or a grain's node leaving the cluster: the
// waiting writes were never handed to the writer (5000; a leaving node
// hands them to the room's next activation), the inflight ones may have
// been committed (5001; a leaving node has the next activation retry
// those that can be retried).
func (a *Actor) abandon(ctx actor.Context) {
	a.forwardWaiting()
	for _, w := range a.waiting {
		a.reply(ctx, w, protocol.ErrorFrame(protocol.ErrUnavailable, w.Nonce))
	}
	for _, t := range a.typists {
		a.dropTyping(ctx, t)
	}
	a.typists = nil
	leaving := a.deps.Directory.Leaving()
	for _, w := range a.inflight {
		if leaving && (w.Nonce != "" || w.MessageId != 0) {
			// The node leaves the cluster and its grains stop (at once,
			// when it sees its own leave): the room's next activation
			// retries the write, as the client would on 5001. A send
			// with a nonce is stored once or answers the stored message
			// (protocol.md §2.3); an edit sets the same content again.
			a.deps.Directory.SendToRoom(a.key, w)
			continue
		}
		a.reply(ctx, w, protocol.ErrorFrame(protocol.ErrUnknownResult, w.Nonce))
	}
	a.deps.Directory.Working(-len(a.inflight))
	a.waiting, a.inflight = nil, map[uint64]*messages.ChatWrite{}
}

func (a *Actor) reply(ctx actor.Context, w *messages.ChatWrite, frame []byte) {
	ctx.Send(w.Session, &messages.Reply{Seq: w.Seq, Frames: [][]byte{frame}})
}

func (a *Actor) other(me int64) int64 {
	if me == a.key.Low {
		return a.key.High
	}
	return a.key.Low
}

// forwardWaiting hands the writes that wait for the room's state to the
// room's next activation when this node leaves the cluster.
func (a *Actor) forwardWaiting() {
	if !a.deps.Directory.Leaving() {
		return
	}
	for _, w := range a.waiting {
		a.deps.Directory.SendToRoom(a.key, w)
	}
	for _, t := range a.typists {
		a.deps.Directory.SendToRoom(a.key, t)
	}
	a.waiting, a.typists = nil, nil
}

// load asks the loader for the room's state, unless a load is out.
func (a *Actor) load(ctx actor.Context) {
	if a.loading {
		return
	}
	a.loading = true
	if a.key.IsChannel() {
		a.loadChannel(ctx)
		return
	}
	ctx.Send(a.deps.Loader, &messages.OpenRoom{Key: a.key, NewID: a.deps.NewID(), Room: ctx.Self(), Gen: a.gen})
}

// opened takes the loaded state and applies the writes that waited for it.
func (a *Actor) opened(ctx actor.Context, m *messages.RoomOpened) {
	a.loading = false
	switch {
	case m.Gen != a.gen: // the friendship changed while it loaded
		if len(a.waiting) > 0 || len(a.typists) > 0 {
			a.load(ctx)
		}
		return
	case m.Err != nil:
		a.deps.Log.Warn().Err(m.Err).Int64("low", a.key.Low).Int64("high", a.key.High).Msg("room: loading its state failed")
		for _, w := range a.waiting {
			a.reply(ctx, w, protocol.ErrorFrame(protocol.ErrUnavailable, w.Nonce))
		}
		for _, t := range a.typists {
			a.dropTyping(ctx, t) // best effort: a typing is not worth a 5000
		}
		a.waiting, a.typists = nil, nil
		// Nothing loaded, nothing held: the next write starts afresh.
		a.deps.Directory.RetireRoom(a.key, ctx.Self(), &retire{})
		return
	}
	a.state, a.loaded = m.State, true
	a.applyWaiting(ctx)
	if a.state.RoomID == 0 {
		// Not a DM anyone can write to (a made-up chat_id, a stranger):
		// every write was refused, and the next one loads afresh. Staying
		// until idle would let sends to made-up ids pile up rooms
		// (TestMadeUpChatIDsDoNotPileUpRooms in server).
		a.deps.Directory.RetireRoom(a.key, ctx.Self(), &retire{})
	}
}

// applyWaiting applies the writes and typing that waited for the state.
func (a *Actor) applyWaiting(ctx actor.Context) {
	a.forwardWaiting()
	waiting, typists := a.waiting, a.typists
	a.waiting, a.typists = nil, nil
	for _, w := range waiting {
		a.apply(ctx, w)
	}
	for _, t := range typists {
		a.typing(ctx, t)
	}
}

// apply checks a write against the loaded state and hands it to the writer.
func (a *Actor) apply(ctx actor.Context, w *messages.ChatWrite) {
	if a.key.IsChannel() {
		a.applyChannel(ctx, w)
		return
	}
	now := a.deps.Now().Truncate(time.Microsecond)
	var op persistence.MessageOp
	switch {
	case !a.state.Members && w.Version >= 2 && !w.Channel:
		// chat_id XOR the author is no user: a v2 chat_id may be a
		// channel the session did not know of (protocol.md §3: a
		// channel of a guild I am in first, then a DM); its room
		// answers, as a DM's would when there is no such channel.
		a.deps.Directory.SendToRoom(messages.ChannelKey(w.ChatId), w)
		return
	case w.MessageId != 0:
		if a.state.RoomID == 0 {
			a.reply(ctx, w, protocol.ErrorFrame(protocol.ErrMessageNotExist, w.Nonce))
			return
		}
		op = persistence.MessageOp{Kind: persistence.OpEdit, Message: persistence.Message{
			ID: w.MessageId, RoomID: a.state.RoomID, AuthorID: w.Author, Content: w.Content, EditedAt: &now,
		}}
	case !a.state.Members:
		a.reply(ctx, w, protocol.ErrorFrame(protocol.ErrUserNotExist, w.Nonce))
		return
	case !a.state.Friends:
		a.reply(ctx, w, protocol.ErrorFrame(protocol.ErrNotMutual, w.Nonce))
		return
	default:
		op = persistence.MessageOp{Kind: persistence.OpSend, Message: persistence.Message{
			ID: a.deps.NewID(), RoomID: a.state.RoomID, AuthorID: w.Author, Content: w.Content,
			Nonce: w.Nonce, CreatedAt: now,
		}}
	}
	a.send(ctx, op, w)
}

// send hands op, made of w, to the writer; written answers w.
func (a *Actor) send(ctx actor.Context, op persistence.MessageOp, w *messages.ChatWrite) {
	a.ticket++
	a.inflight[a.ticket] = w
	a.deps.Directory.Working(1)
	ctx.Send(a.deps.Directory.Writer(a.key), &messages.Write{Op: op, Room: ctx.Self(), Ticket: a.ticket, Received: w.ReceivedAt()})
}

// typing checks a typing request against the loaded state as a send is
// checked, and relays it to the other member unless its author's last
// one went out less than TypingInterval ago. Only a refusal is answered
// with a frame; the session waits for the Reply all the same.
func (a *Actor) typing(ctx actor.Context, t *messages.Typing) {
	if a.key.IsChannel() {
		a.typingChannel(ctx, t)
		return
	}
	switch {
	case !a.state.Members && !t.Channel: // as a write (apply)
		a.deps.Directory.SendToRoom(messages.ChannelKey(t.ChatId), t)
		return
	case !a.state.Members:
		a.replyTyping(ctx, t, protocol.ErrorFrame(protocol.ErrUserNotExist, t.Nonce))
		return
	case !a.state.Friends:
		a.replyTyping(ctx, t, protocol.ErrorFrame(protocol.ErrNotMutual, t.Nonce))
		return
	}
	a.dropTyping(ctx, t)
	now := a.deps.Now()
	if last, ok := a.typed[t.Author]; ok && now.Sub(last) < a.deps.TypingInterval {
		return // dropped without an answer
	}
	if a.typed == nil {
		a.typed = map[int64]time.Time{}
	}
	a.typed[t.Author] = now
	a.deps.Directory.SendToUser(a.other(t.Author), &messages.Deliver{
		Frame: protocol.TypingFrame(t.ChatId, t.Author), Kind: messages.EventTyping,
	})
}

// dropTyping ends a typing request's wait without an answer.
func (a *Actor) dropTyping(ctx actor.Context, t *messages.Typing) {
	ctx.Send(t.Session, &messages.Reply{Seq: t.Seq})
}

func (a *Actor) replyTyping(ctx actor.Context, t *messages.Typing, frame []byte) {
	ctx.Send(t.Session, &messages.Reply{Seq: t.Seq, Frames: [][]byte{frame}})
}

// written answers the sender of a committed (or failed) write and, for a
// new message or an edit, emits the event to both members.
func (a *Actor) written(ctx actor.Context, m *messages.Written) {
	w := a.inflight[m.Ticket]
	if w == nil {
		return
	}
	delete(a.inflight, m.Ticket)
	defer a.deps.Directory.Working(-1) // once answered
	switch {
	case m.Err != nil:
		a.deps.Log.Warn().Err(m.Err).Int64("low", a.key.Low).Int64("high", a.key.High).Msg("room: write failed")
		answer := protocol.ErrUnavailable // nothing was applied
		if errors.Is(m.Err, persistence.ErrOutcomeUnknown) {
			answer = protocol.ErrUnknownResult
		}
		a.reply(ctx, w, protocol.ErrorFrame(answer, w.Nonce))
		return
	case errors.Is(m.Result.Err, persistence.ErrRefused):
		// The database refused this write alone (a string it cannot
		// store, which the frame decoder lets through only by mistake).
		a.deps.Log.Warn().Err(m.Result.Err).Int64("low", a.key.Low).Int64("high", a.key.High).Msg("room: write refused")
		a.reply(ctx, w, protocol.ErrorFrame(protocol.ErrInvalid, w.Nonce))
		return
	case errors.Is(m.Result.Err, persistence.ErrNotFound):
		a.reply(ctx, w, protocol.ErrorFrame(protocol.ErrMessageNotExist, w.Nonce))
		return
	case errors.Is(m.Result.Err, persistence.ErrNotAuthor):
		a.reply(ctx, w, protocol.ErrorFrame(protocol.ErrNotAuthor, w.Nonce))
		return
	}
	stored := &m.Result.Message
	kind, eventKind := "send", messages.EventChatSend
	if w.MessageId != 0 {
		kind, eventKind = "edit", messages.EventChatEdit
	}
	// The numbers are the store's, taken at commit (doc.go). The event
	// is encoded once per version: v2 with seq and edit_seq, v1 without
	// (protocol.md §2.9), which only a send's event and a v1 author's
	// echo need (v1 sessions get no edit events).
	chat := protocol.ChatOf(stored, w.ChatId)
	event := protocol.AppendChatV2(make([]byte, 0, protocol.ChatSize(chat.Content)), kind, chat, a.deps.Location, "")
	var eventV1 []byte
	v1Author := w.Version <= 1
	if eventKind == messages.EventChatSend || v1Author {
		eventV1 = protocol.AppendChat(make([]byte, 0, protocol.ChatSize(chat.Content)), kind, chat, a.deps.Location, "")
	}
	echo := event
	if v1Author {
		echo = eventV1
	}
	if w.Nonce != "" {
		echo = protocol.WithNonce(echo, w.Nonce)
	}
	if m.Result.Duplicate {
		a.reply(ctx, w, echo)
		return // a retried send: its events went out the first time
	}
	if eventKind != messages.EventChatSend {
		eventV1 = nil
	}
	// The echo goes through the author's user actor with the events to
	// the author's other sessions: sent straight to the session, it could
	// overtake an event of an earlier message still on that detour.
	dir := a.deps.Directory
	answer := &messages.Reply{Seq: w.Seq, Frames: [][]byte{echo}}
	if a.key.IsChannel() {
		a.fanOut(ctx, w, event, eventKind, answer)
		return
	}
	if !dir.SendToUser(w.Author, &messages.Deliver{Frame: event, FrameV1: eventV1, Kind: eventKind, Except: w.Session, Echo: answer}) {
		ctx.Send(w.Session, answer)
	}
	dir.SendToUser(a.other(w.Author), &messages.Deliver{Frame: event, FrameV1: eventV1, Kind: eventKind})
}
