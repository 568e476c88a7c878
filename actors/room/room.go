// Package room is the actor of one DM: it serializes the sends, edits and
// deletes of that DM, hands them to the writer, and only after the commit
// answers the sender ("echo means stored") and emits the event to both
// members' user actors.
package room

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
)

// Deps are what a room needs; shared by all rooms.
type Deps struct {
	Store     persistence.Store
	Directory *directory.Directory
	NewID     func() int64
	Location  *time.Location
	Now       func() time.Time
	// Idle is how long a room waits without messages before it stops.
	Idle time.Duration
	// Timeout bounds the room's own reads (membership, the edited message).
	Timeout time.Duration
	Log     zerolog.Logger
}

// The errors of protocol.md §2.3 the room answers.
var (
	errNotFriends = &messages.Error{Code: 4005, Reason: "Not a mutual user."}
	errNoMessage  = &messages.Error{Code: 4004, Reason: "Message not exist."}
	errNotAuthor  = &messages.Error{Code: 4005, Reason: "Not the author."}
)

// friendship is what the room knows of its members' friendship.
type friendship uint8

const (
	unknown friendship = iota
	friends
	strangers
)

// Actor is one DM room. Its fields are its own: only Receive touches them.
type Actor struct {
	key     messages.RoomKey
	deps    *Deps
	roomID  int64 // 0 until the room row is known
	friends friendship
	ticket  uint64
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

// Receive implements actor.Actor.
func (a *Actor) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*idleCheck); !ok {
		a.active = time.Now()
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if a.deps.Idle > 0 { // as with ReceiveTimeout, 0 means never idle
			self, root := ctx.Self(), ctx.ActorSystem().Root
			a.idle = time.AfterFunc(a.deps.Idle, func() { root.Send(self, &idleCheck{}) })
		}
	case *actor.Stopped:
		if a.idle != nil {
			a.idle.Stop()
		}
	case *idleCheck:
		switch left := a.deps.Idle - time.Since(a.active); {
		case left > 0:
			a.idle.Reset(left)
		case len(a.inflight) > 0:
			a.idle.Reset(a.deps.Idle)
		default:
			a.deps.Directory.RetireRoom(a.key, ctx.Self(), &retire{})
		}
	case *retire:
		a.retired = true
		a.stopIfDone(ctx)
	case *messages.FriendshipChanged:
		a.friends = unknown
	case *messages.ChatWrite:
		var err *messages.Error
		if m.MessageID == 0 {
			err = a.send(ctx, m)
		} else {
			err = a.edit(ctx, m)
		}
		if err != nil {
			ctx.Send(m.Session, &messages.Reply{Seq: m.Seq, Frames: [][]byte{messages.ErrorFrame(err, m.Nonce)}})
		}
	case *messages.Written:
		a.written(ctx, m)
		a.stopIfDone(ctx)
	}
}

func (a *Actor) stopIfDone(ctx actor.Context) {
	if a.retired && len(a.inflight) == 0 {
		ctx.Stop(ctx.Self())
	}
}

func (a *Actor) other(me int64) int64 {
	if me == a.key.Low {
		return a.key.High
	}
	return a.key.Low
}

func (a *Actor) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), a.deps.Timeout)
}

// unavailable logs a store failure and gives the answer for it.
func (a *Actor) unavailable(err error) *messages.Error {
	a.deps.Log.Warn().Err(err).Int64("low", a.key.Low).Int64("high", a.key.High).Msg("room: store failed")
	return messages.ErrUnavailable
}

func (a *Actor) send(ctx actor.Context, w *messages.ChatWrite) *messages.Error {
	c, cancel := a.ctx()
	defer cancel()
	store := a.deps.Store
	if a.friends == unknown {
		if _, err := store.UserByID(c, a.other(w.Author)); errors.Is(err, persistence.ErrNotFound) {
			return messages.ErrUserNotExist
		} else if err != nil {
			return a.unavailable(err)
		}
		ok, err := store.AreFriends(c, a.key.Low, a.key.High)
		if err != nil {
			return a.unavailable(err)
		}
		a.friends = strangers
		if ok {
			a.friends = friends
		}
	}
	if a.friends != friends {
		return errNotFriends
	}
	if a.roomID == 0 {
		id, err := store.EnsureDMRoom(c, a.key.Low, a.key.High, a.deps.NewID())
		if err != nil {
			return a.unavailable(err)
		}
		a.roomID = id
	}
	a.write(ctx, w, persistence.MessageOp{Kind: persistence.OpSend, Message: persistence.Message{
		ID: a.deps.NewID(), RoomID: a.roomID, AuthorID: w.Author, Content: w.Content,
		Nonce: w.Nonce, CreatedAt: a.deps.Now().Truncate(time.Microsecond),
	}})
	return nil
}

func (a *Actor) edit(ctx actor.Context, w *messages.ChatWrite) *messages.Error {
	c, cancel := a.ctx()
	defer cancel()
	store := a.deps.Store
	if a.roomID == 0 {
		id, err := store.FindDMRoom(c, a.key.Low, a.key.High)
		if errors.Is(err, persistence.ErrNotFound) {
			return errNoMessage
		} else if err != nil {
			return a.unavailable(err)
		}
		a.roomID = id
	}
	msg, err := store.MessageByID(c, a.roomID, w.MessageID)
	switch {
	case errors.Is(err, persistence.ErrNotFound) || err == nil && msg.DeletedAt != nil:
		return errNoMessage
	case err != nil:
		return a.unavailable(err)
	case msg.AuthorID != w.Author:
		return errNotAuthor
	}
	now := a.deps.Now().Truncate(time.Microsecond)
	msg.Content, msg.EditedAt = w.Content, &now
	a.write(ctx, w, persistence.MessageOp{Kind: persistence.OpEdit, Message: msg})
	return nil
}

func (a *Actor) write(ctx actor.Context, w *messages.ChatWrite, op persistence.MessageOp) {
	a.ticket++
	a.inflight[a.ticket] = w
	ctx.Send(a.deps.Directory.Writer(a.key), &messages.Write{Op: op, Room: ctx.Self(), Ticket: a.ticket})
}

// written answers the sender of a committed (or failed) write and, for a
// new message or an edit, emits the event to both members.
func (a *Actor) written(ctx actor.Context, m *messages.Written) {
	w := a.inflight[m.Ticket]
	if w == nil {
		return
	}
	delete(a.inflight, m.Ticket)
	reply := func(frame []byte) {
		ctx.Send(w.Session, &messages.Reply{Seq: w.Seq, Frames: [][]byte{frame}})
	}
	switch {
	case m.Err != nil:
		reply(messages.ErrorFrame(a.unavailable(m.Err), w.Nonce))
		return
	case errors.Is(m.Result.Err, persistence.ErrNotFound):
		reply(messages.ErrorFrame(errNoMessage, w.Nonce))
		return
	}
	stored := &m.Result.Message
	kind := "send"
	if w.MessageID != 0 {
		kind = "edit"
	}
	chat := &messages.Chat{
		ID: stored.ID, AuthorID: stored.AuthorID, ChatID: w.ChatID,
		Content: stored.Content, CreatedAt: stored.CreatedAt, EditedAt: stored.EditedAt,
	}
	event := messages.AppendChat(nil, kind, chat, a.deps.Location, "")
	echo := event
	if w.Nonce != "" {
		echo = messages.AppendChat(nil, kind, chat, a.deps.Location, w.Nonce)
	}
	if m.Result.Duplicate {
		reply(echo)
		return // a retried send: its events went out the first time
	}
	// The echo goes through the author's user actor with the events to
	// the author's other sessions: sent straight to the session, it could
	// overtake an event of an earlier message still on that detour.
	dir := a.deps.Directory
	answer := &messages.Reply{Seq: w.Seq, Frames: [][]byte{echo}}
	if !dir.SendToUser(w.Author, &messages.Deliver{Frame: event, Except: w.Session, Echo: answer}) {
		ctx.Send(w.Session, answer)
	}
	dir.SendToUser(a.other(w.Author), &messages.Deliver{Frame: event})
}
