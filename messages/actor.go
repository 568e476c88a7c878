package messages

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/protocol"
)

// RoomKey names a DM room by its ordered members, never by their XOR:
// two pairs whose XOR collide stay two rooms.
type RoomKey struct{ Low, High int64 }

// DMKey is the room of users a and b.
func DMKey(a, b int64) RoomKey {
	if a > b {
		a, b = b, a
	}
	return RoomKey{a, b}
}

// Reply is a session's answer to one of its requests, encoded: the frames
// go out in order, then the session takes its next request.
type Reply struct {
	Seq    uint64 // the request's Seq
	Frames [][]byte
	// User, set instead of Frames, is an answer that is a user object (a
	// profile set's): the session encodes it, because what a user object
	// shows depends on the session's protocol version (protocol.md §2.9),
	// which only the session knows.
	User *protocol.User
}

// EventKind says what an event frame is, so that a session decides by
// its protocol version whether its client receives the frame without
// reading it (protocol.md §2.9). Every new kind of event (typing,
// presence, read, guild) gets a value of its own; a version 1 session
// drops every kind it does not know, the zero value included.
type EventKind uint8

// The kinds of event frames.
const (
	_ EventKind = iota
	// EventChatSend is a new message: a chat frame of type send.
	EventChatSend
	// EventChatEdit is an edit or a delete: a chat frame of type edit.
	EventChatEdit
	// EventFriend is a mutual_users event to the user acted on; its
	// "user" is the acting user.
	EventFriend
	// EventFriendSelf is a mutual_users event with "origin":"self" to
	// the acting user's other sessions.
	EventFriendSelf
	// EventProfile is a user event: a friend's profile changed.
	EventProfile
)

// Deliver asks a user actor to send Frame, an event of Kind, to every
// session of its user except Except (nil: all of them), and Echo, when
// set, to Except. An echo goes the same way as the events, so that a
// session sees its own messages and those of the user's other sessions in
// the room's order.
type Deliver struct {
	Frame  []byte
	Kind   EventKind
	Except *actor.PID
	Echo   *Reply
}

// Push hands a session an event frame of Kind to send. One Push, and one
// Frame, goes to every receiving session: a broadcast is encoded once.
type Push struct {
	Frame []byte
	Kind  EventKind
}

// CloseSession asks a session to close its connection with Code.
type CloseSession struct {
	Code   uint16
	Reason string
}

// SessionAttached and SessionDetached tell a user actor that one of its
// user's sessions came or went.
type (
	SessionAttached struct{ Session *actor.PID }
	SessionDetached struct{ Session *actor.PID }
)

// Logout closes every session of the user with 4000.
type Logout struct{}

// FriendOp is a mutual_users request (protocol.md §2.5), handled by the
// acting user's actor; it answers Session with a Reply.
type FriendOp struct {
	Kind       string // request, response, remove, delete
	TargetName string
	Session    *actor.PID
	Nonce      string
	Seq        uint64
}

// SetProfile sets the acting user's profile URL (nil clears it); the user
// actor answers Session with a Reply and tells the user's friends.
type SetProfile struct {
	Profile *string
	Session *actor.PID
	Nonce   string
	Seq     uint64
}

// ChatWrite is a send (MessageID 0) or an edit/delete of one DM, handled
// by the room actor of Room; it answers Session with a Reply.
type ChatWrite struct {
	Room      RoomKey
	ChatID    int64
	Author    int64
	MessageID int64 // the message edited; 0 for a send
	Content   string
	Nonce     string // the request's nonce: the send's idempotency key too
	Session   *actor.PID
	Seq       uint64 // the session's number for the request, echoed in the Reply
	// Received is when the request reached the session: the write's time
	// limit counts from there (actors/writer).
	Received time.Time
}

// FriendshipChanged tells a room actor that its members' friendship
// changed, so that it checks again before the next send.
type FriendshipChanged struct{}

// Write asks the writer to apply Op in its next transaction; it answers
// Room with Written carrying the same Ticket.
type Write struct {
	Op     persistence.MessageOp
	Room   *actor.PID
	Ticket uint64
	// Received is ChatWrite.Received; zero: when the writer gets it.
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
