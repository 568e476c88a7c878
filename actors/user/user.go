// Package user is the actor of one online user: the set of that user's
// sessions, the fan-out of events to all of them, and the user's friend
// and profile operations, serialized.
package user

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

// Deps are what a user actor needs; shared by all of them.
type Deps struct {
	Store     persistence.Store
	Directory *directory.Directory
	Now       func() time.Time
	Timeout   time.Duration // bounds one operation's store calls
	Log       zerolog.Logger
}

// The errors of protocol.md §2.5.
var (
	errNoSuchUser    = &messages.Error{Code: 4004, Reason: "select named user is not exist."}
	errSelf          = &messages.Error{Code: 4000, Reason: "cannot target yourself."}
	errAlreadyFriend = &messages.Error{Code: 4000, Reason: "select named user is already friend."}
	errNotRequested  = &messages.Error{Code: 4004, Reason: "targeted name was not requested."}
	errNotFriend     = &messages.Error{Code: 4004, Reason: "select named user was not friend."}
	closeLoggedOut   = &messages.CloseSession{Code: 4000, Reason: "Logged out elsewhere."}
)

// Actor is one online user. Its fields are its own: only Receive touches them.
type Actor struct {
	id       int64
	deps     *Deps
	sessions map[string]*actor.PID // by PID id
}

// New returns the actor of user id.
func New(id int64, deps *Deps) *Actor {
	return &Actor{id: id, deps: deps, sessions: map[string]*actor.PID{}}
}

// Receive implements actor.Actor.
func (a *Actor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.SessionAttached:
		a.sessions[m.Session.Id] = m.Session
	case *messages.SessionDetached:
		delete(a.sessions, m.Session.Id)
	case *messages.Deliver:
		a.deliver(ctx, m.Frame, m.Except)
		if m.Echo != nil {
			ctx.Send(m.Except, m.Echo)
		}
	case *messages.Logout:
		for _, s := range a.sessions {
			ctx.Send(s, closeLoggedOut)
		}
	case *messages.FriendOp:
		a.reply(ctx, m.Session, m.Seq, m.Nonce, a.friendOp(ctx, m))
	case *messages.SetProfile:
		a.setProfile(ctx, m)
	}
}

func (a *Actor) deliver(ctx actor.Context, frame []byte, except *actor.PID) {
	push := &messages.Push{Frame: frame}
	for id, s := range a.sessions {
		if except == nil || id != except.Id {
			ctx.Send(s, push)
		}
	}
}

// reply answers ok, or err, to the session that asked.
func (a *Actor) reply(ctx actor.Context, session *actor.PID, seq uint64, nonce string, err *messages.Error) {
	frame := messages.OKFrame(nonce)
	if err != nil {
		frame = messages.ErrorFrame(err, nonce)
	}
	ctx.Send(session, &messages.Reply{Seq: seq, Frames: [][]byte{frame}})
}

func (a *Actor) unavailable(err error) *messages.Error {
	a.deps.Log.Warn().Err(err).Int64("user", a.id).Msg("user: store failed")
	return messages.ErrUnavailable
}

// friendOp applies one mutual_users request, then tells the other user's
// sessions and this user's other sessions what changed.
func (a *Actor) friendOp(ctx actor.Context, op *messages.FriendOp) *messages.Error {
	c, cancel := context.WithTimeout(context.Background(), a.deps.Timeout)
	defer cancel()
	store := a.deps.Store
	target, err := store.UserByName(c, op.TargetName)
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		return errNoSuchUser
	case err != nil:
		return a.unavailable(err)
	case target.ID == a.id:
		return errSelf
	}
	me, err := store.UserByID(c, a.id)
	if err != nil {
		return a.unavailable(err)
	}
	event, changed := op.Kind, false
	switch op.Kind {
	case "request":
		var res persistence.FriendResult
		res, err = store.RequestFriend(c, a.id, target.ID, a.deps.Now())
		if errors.Is(err, persistence.ErrAlreadyFriends) {
			return errAlreadyFriend
		}
		if res == persistence.FriendRequestRepeated {
			return nil // nothing changed: nobody to tell
		}
		if res == persistence.FriendAccepted {
			event, changed = "response", true
		}
	case "response":
		err = store.AcceptFriend(c, a.id, target.ID, a.deps.Now())
		if errors.Is(err, persistence.ErrNotFound) {
			return errNotRequested
		}
		changed = true
	case "remove":
		err = store.RemoveFriendRequest(c, a.id, target.ID)
		if errors.Is(err, persistence.ErrNotFound) {
			return errNotRequested
		}
	case "delete":
		err = store.DeleteFriend(c, a.id, target.ID)
		if errors.Is(err, persistence.ErrNotFound) {
			return errNotFriend
		}
		changed = true
	}
	if err != nil {
		return a.unavailable(err)
	}
	if changed {
		// Before the answer, so that a send made after it sees the change.
		a.deps.Directory.NotifyRoom(messages.DMKey(a.id, target.ID), &messages.FriendshipChanged{})
	}
	a.deps.Directory.SendToUser(target.ID, &messages.Deliver{
		Frame: messages.Frame("mutual_users", messages.FriendEvent{Type: event, User: messages.UserOf(me)}, ""),
	})
	a.deliver(ctx, messages.Frame("mutual_users",
		messages.FriendEvent{Type: event, User: messages.UserOf(target), Origin: "self"}, ""), op.Session)
	return nil
}

// setProfile stores the profile URL, answers the user object and shows it
// to the user's online friends.
func (a *Actor) setProfile(ctx actor.Context, m *messages.SetProfile) {
	c, cancel := context.WithTimeout(context.Background(), a.deps.Timeout)
	defer cancel()
	u, err := a.deps.Store.SetProfile(c, a.id, m.Profile)
	if err != nil {
		a.reply(ctx, m.Session, m.Seq, m.Nonce, a.unavailable(err))
		return
	}
	ctx.Send(m.Session, &messages.Reply{Seq: m.Seq, Frames: [][]byte{messages.Frame("user", messages.UserOf(u), m.Nonce)}})
	friends, err := a.deps.Store.Friends(c, a.id)
	if err != nil {
		a.deps.Log.Warn().Err(err).Int64("user", a.id).Msg("user: profile change not shown to friends")
		return
	}
	event := &messages.Deliver{Frame: messages.Frame("user", messages.UserOf(u), "")}
	for _, f := range friends {
		a.deps.Directory.SendToUser(f.ID, event)
	}
}
