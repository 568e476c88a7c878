package messages

import (
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/protocol"
)

// This file holds the Go side of the messages: the helpers of the
// generated ones of messages.proto, and the messages that stay within a
// node (doc.go says which, and why).

// RoomKey names a DM room by its ordered members, never by their XOR:
// two pairs whose XOR collide stay two rooms. A Go value, so that it is a
// map key; a message that crosses nodes carries its two ids
// (ChatWrite.RoomLow, RoomHigh).
type RoomKey struct{ Low, High int64 }

// DMKey is the room of users a and b.
func DMKey(a, b int64) RoomKey {
	if a > b {
		a, b = b, a
	}
	return RoomKey{a, b}
}

// The kinds of event frames, by shorter names than the generated ones.
const (
	EventChatSend   = EventKind_EVENT_KIND_CHAT_SEND
	EventChatEdit   = EventKind_EVENT_KIND_CHAT_EDIT
	EventFriend     = EventKind_EVENT_KIND_FRIEND
	EventFriendSelf = EventKind_EVENT_KIND_FRIEND_SELF
	EventProfile    = EventKind_EVENT_KIND_PROFILE
	EventTyping     = EventKind_EVENT_KIND_TYPING
	EventPresence   = EventKind_EVENT_KIND_PRESENCE
	EventRead       = EventKind_EVENT_KIND_READ
	EventGuild      = EventKind_EVENT_KIND_GUILD
)

// UserOf is u as a Reply carries it.
func UserOf(u persistence.User) *User {
	return &User{Id: u.ID, Name: u.Name, Profile: u.Profile}
}

// Wire is u as protocol.User, for the session to encode.
func (u *User) Wire() protocol.User {
	return protocol.User{ID: strconv.FormatInt(u.GetId(), 10), Name: u.GetName(), Profile: u.Profile}
}

// ChannelKey is the room of guild channel id (protocol.md §3): its Low is
// 0, which no DM's is (a DM's members are positive ids), so channels and
// DMs share the room actors, their directory and their grain kind
// without ever sharing a room.
func ChannelKey(id int64) RoomKey { return RoomKey{0, id} }

// IsChannel reports whether k is a channel's room (ChannelKey).
func (k RoomKey) IsChannel() bool { return k.Low == 0 }

// Key is the room w is for.
func (w *ChatWrite) Key() RoomKey { return RoomKey{w.RoomLow, w.RoomHigh} }

// Key is the room t is for.
func (t *Typing) Key() RoomKey { return RoomKey{t.RoomLow, t.RoomHigh} }

// ReceivedAt is ReceivedUnixNano as a time; zero when it is 0.
func (w *ChatWrite) ReceivedAt() time.Time {
	if w.ReceivedUnixNano == 0 {
		return time.Time{}
	}
	return time.Unix(0, w.ReceivedUnixNano)
}

// Write asks the writer to apply Op in its next transaction; it answers
// Room with Written carrying the same Ticket.
type Write struct {
	Op     persistence.MessageOp
	Room   *actor.PID
	Ticket uint64
	// Received is ChatWrite.ReceivedAt(); zero: when the writer gets it.
	Received time.Time
}

// Written is the outcome of a Write: Err non-nil means nothing was
// applied, unless it wraps persistence.ErrOutcomeUnknown (it may have been).
type Written struct {
	Ticket uint64
	Result persistence.MessageResult
	Err    error
}

// OpenRoom asks the room-state loader for the state a DM room actor starts
// from; it answers Room with RoomOpened carrying the same Gen.
type OpenRoom struct {
	Key   RoomKey
	NewID int64 // the room's id if it is created now
	Room  *actor.PID
	Gen   uint64
}

// RoomOpened answers OpenRoom: Err non-nil means the store could not say.
type RoomOpened struct {
	Gen   uint64
	State persistence.DMState
	Err   error
}

// MembersLeft tells a user grain that the cluster members at Addresses
// left (a topology's Left): its sessions there are gone with them, which
// no detach will say when a member dies.
type MembersLeft struct{ Addresses []string }
