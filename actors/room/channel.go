package room

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/protocol"
)

// This file is a room as a guild channel's (protocol.md §3): the room of
// messages.ChannelKey(id), whose store room is the channel's (its id the
// channel's). It carries chat as a DM's room does (the writer, the
// store's numbers, the echo through the author's user actor), with these
// differences:
//
//   - Its state is the channel's guild and that guild's members, loaded
//     once at activation (ChannelByID, GuildMemberIDs: off the actor) and
//     kept current by the guild's actor, which tells it of every join,
//     leave, kick and deletion (messages.ChannelMembership) and waits for
//     its answer before it answers the request: a write is checked
//     against this state, never by a query of its own, and a kicked
//     member's next send is refused.
//   - A write or typing of a non-member, or to a channel that does not
//     exist, is refused 4004 Channel not exist. (a write that came from a
//     DM's room, chat_id not being a DM of its author's either, gets the
//     DM's answer when there is no such channel: User not exist.).
//   - The event goes to every member's sessions: the author's user actor
//     with the echo (Deliver), the others through
//     directory.PushToUsers, one frame for all, to those online only; it
//     has no v1 form, so v1 sessions never see it.
//   - Typing goes to the other members, throttled per author as in a DM.
//
// A deleted channel (or guild) refuses everything from then on and the
// room retires.

// channelState is what a channel's room knows of its channel.
type channelState struct {
	exists  bool
	guild   int64
	members map[int64]bool
}

// channelLoaded is the outcome of a channel's load.
type channelLoaded struct {
	gen   uint64
	state channelState
	err   error
}

// loadChannel reads the channel and its guild's members off the actor.
func (a *Actor) loadChannel(ctx actor.Context) {
	id, gen, store, timeout := a.key.High, a.gen, a.deps.Store, a.deps.LoadTimeout
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		out := &channelLoaded{gen: gen}
		if store == nil { // a room without guilds (tests of DMs alone)
			root.Send(self, out)
			return
		}
		ch, err := store.ChannelByID(c, id)
		switch {
		case errors.Is(err, persistence.ErrNotFound):
		case err != nil:
			out.err = err
		default:
			ids, err := store.GuildMemberIDs(c, ch.GuildID)
			if err != nil {
				out.err = err
				break
			}
			out.state = channelState{exists: true, guild: ch.GuildID, members: make(map[int64]bool, len(ids))}
			for _, m := range ids {
				out.state.members[m] = true
			}
		}
		root.Send(self, out)
	}()
}

// channelOpened takes a channel's loaded state, as opened a DM's.
func (a *Actor) channelOpened(ctx actor.Context, m *channelLoaded) {
	a.loading = false
	switch {
	case m.gen != a.gen: // the members changed while it loaded
		if len(a.waiting) > 0 || len(a.typists) > 0 {
			a.load(ctx)
		}
		return
	case m.err != nil:
		a.opened(ctx, &messages.RoomOpened{Gen: m.gen, Err: m.err})
		return
	}
	a.ch, a.loaded = m.state, true
	a.applyWaiting(ctx)
	if !a.ch.exists {
		a.deps.Directory.RetireRoom(a.key, ctx.Self(), &retire{})
	}
}

// membership takes in a change of the guild's members, or the channel's
// deletion, and answers its ack. While the state loads, the load is
// stale (it may have read the members before the change): a new one
// follows.
func (a *Actor) membership(ctx actor.Context, m *messages.ChannelMembership) {
	switch {
	case a.deps.Directory.Leaving():
		a.deps.Directory.SendToRoom(a.key, m) // the next activation answers
		return
	case !a.loaded:
		a.gen++
	case m.Deleted:
		a.ch = channelState{}
		a.deps.Directory.RetireRoom(a.key, ctx.Self(), &retire{})
	case m.Joined && a.ch.exists:
		a.ch.members[m.UserId] = true
	default:
		delete(a.ch.members, m.UserId)
	}
	if m.Ack != nil {
		ctx.Send(m.Ack, &messages.FriendshipChangedSeen{})
	}
}

// refusal is the answer to a write or typing of author in this channel
// that it does not take; nil when it takes it.
func (a *Actor) refusal(author int64, channel, edit bool) *protocol.Error {
	switch {
	case !a.ch.exists && !channel && edit:
		return protocol.ErrMessageNotExist // a DM's answer (room.apply): neither a DM nor a channel
	case !a.ch.exists && !channel:
		return protocol.ErrUserNotExist // as for a send
	case !a.ch.exists || !a.ch.members[author]:
		return protocol.ErrChannelNotExist
	}
	return nil
}

// applyChannel checks a write against the channel's members and hands it
// to the writer.
func (a *Actor) applyChannel(ctx actor.Context, w *messages.ChatWrite) {
	if err := a.refusal(w.Author, w.Channel, w.MessageId != 0); err != nil {
		a.reply(ctx, w, protocol.ErrorFrame(err, w.Nonce))
		return
	}
	now := a.deps.Now().Truncate(time.Microsecond)
	op := persistence.MessageOp{Kind: persistence.OpSend, Message: persistence.Message{
		ID: a.deps.NewID(), RoomID: a.key.High, AuthorID: w.Author, Content: w.Content, Nonce: w.Nonce, CreatedAt: now,
	}}
	if w.MessageId != 0 {
		op = persistence.MessageOp{Kind: persistence.OpEdit, Message: persistence.Message{
			ID: w.MessageId, RoomID: a.key.High, AuthorID: w.Author, Content: w.Content, EditedAt: &now,
		}}
	}
	a.send(ctx, op, w)
}

// others are the members but author.
func (a *Actor) others(author int64) []int64 {
	ids := make([]int64, 0, len(a.ch.members))
	for id := range a.ch.members {
		if id != author {
			ids = append(ids, id)
		}
	}
	return ids
}

// fanOut sends a committed change's event to every member: the author's
// user actor with the echo, the others' sessions by PushToUsers. A member
// who left meanwhile gets nothing.
func (a *Actor) fanOut(ctx actor.Context, w *messages.ChatWrite, event []byte, kind messages.EventKind, answer *messages.Reply) {
	dir := a.deps.Directory
	if !dir.SendToUser(w.Author, &messages.Deliver{Frame: event, Kind: kind, Except: w.Session, Echo: answer}) {
		ctx.Send(w.Session, answer)
	}
	dir.PushToUsers(a.others(w.Author), event, kind)
}

// typingChannel relays a member's typing to the other members.
func (a *Actor) typingChannel(ctx actor.Context, t *messages.Typing) {
	if err := a.refusal(t.Author, t.Channel, false); err != nil {
		a.replyTyping(ctx, t, protocol.ErrorFrame(err, t.Nonce))
		return
	}
	a.dropTyping(ctx, t)
	now := a.deps.Now()
	if last, ok := a.typed[t.Author]; ok && now.Sub(last) < a.deps.TypingInterval {
		return
	}
	if a.typed == nil {
		a.typed = map[int64]time.Time{}
	}
	a.typed[t.Author] = now
	a.deps.Directory.PushToUsers(a.others(t.Author), protocol.TypingFrame(t.ChatId, t.Author), messages.EventTyping)
}
