package session

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/protocol"
)

// rules are what a protocol version shows its client: which events it
// receives and how the user objects and auth lists the session encodes
// look. A session takes its version's rules once, when it starts, and
// every frame it sends goes through them: the v1 rules of protocol.md
// §2.9 live here, not in a check of the version at each place.
type rules struct {
	// events says what happens to a pushed event, by kind: a kind nobody
	// listed is dropped, and so is one past the table (an EventKind is a
	// protobuf enum, any int32 on the wire).
	events [1 << 8]action
	// profiles: user objects show their profile; otherwise it is null.
	profiles bool
	// listsAsText: the auth answer's three lists are JSON text in
	// strings, as the shipped mobile client decodes them.
	listsAsText bool
	// statuses: the auth answer's friends carry their status
	// (protocol.md §4.4).
	statuses bool
	// v2Requests: the requests of protocol.md §4 (typing, read, load
	// changes and load chats) are known; otherwise they are an unknown
	// type (an unknown load type).
	v2Requests bool
	// seqs: chat objects carry seq and edit_seq (§4.1), and the auth
	// answer the chats list.
	seqs bool
	// version is the protocol version, for a room to encode an echo by
	// (messages.ChatWrite.Version).
	version uint32
}

// action is what a session's rules do with a pushed event. A kind whose
// frame carries keys a version does not know (seq, edit_seq: protocol.md
// §4.1) comes with the frame of that version too (Push.FrameV1), which
// v1Form sends; noProfile re-encodes its user.
type action uint8

const (
	drop      action = iota
	pass             // the frame as it is: the same bytes for every session
	noProfile        // a mutual_users event, its user's profile shown as null
	v1Form           // the v1 frame the event's maker encoded (a chat send without seq); none: dropped
)

var (
	// v1 keeps the shipped mobile client working (protocol.md §2.9): it
	// treats every frame type it does not know as an error, shows every
	// chat frame as a new bubble, every mutual_users event but delete as
	// an incoming request, and a profile as an asset path.
	v1 = func() *rules {
		r := &rules{listsAsText: true, version: 1}
		r.events[messages.EventChatSend] = v1Form
		r.events[messages.EventFriend] = noProfile
		return r
	}()
	// v2 receives every event as it is.
	v2 = func() *rules {
		r := &rules{profiles: true, statuses: true, v2Requests: true, seqs: true, version: 2}
		for i := range r.events {
			r.events[i] = pass
		}
		return r
	}()
)

// rulesOf returns the rules of protocol version (1, or 2 for ?v=2).
func rulesOf(version int) *rules {
	if version == 1 {
		return v1
	}
	return v2
}

// event returns the frame to send for m, nil when the client does not
// receive it.
func (r *rules) event(m *messages.Push) []byte {
	if uint32(m.Kind) >= uint32(len(r.events)) {
		return nil
	}
	switch r.events[m.Kind] {
	case pass:
		return m.Frame
	case noProfile:
		return r.withoutProfile(m.Frame)
	case v1Form:
		if len(m.FrameV1) == 0 {
			return nil // never the v2 bytes: they hold keys v1 does not know
		}
		return m.FrameV1
	}
	return nil
}

// chat appends chat frame c of kind as this version shows it: with seq and
// edit_seq in v2 only.
func (r *rules) chat(dst []byte, kind string, c *protocol.Chat, loc *time.Location, nonce string) []byte {
	if r.seqs {
		return protocol.AppendChatV2(dst, kind, c, loc, nonce)
	}
	return protocol.AppendChat(dst, kind, c, loc, nonce)
}

// nullProfile is how the encoder writes a user without a profile. It
// cannot occur inside a string (a quote there is escaped), so a frame that
// holds it holds a user without a profile.
var nullProfile = []byte(`"profile":null`)

// withoutProfile returns the mutual_users event frame with its user's
// profile null: the frame itself when it is null already, the common case,
// else the event encoded again (friend events are rare).
func (r *rules) withoutProfile(frame []byte) []byte {
	if bytes.Contains(frame, nullProfile) {
		return frame
	}
	var f struct {
		Type    string               `json:"type"`
		Payload protocol.FriendEvent `json:"payload"`
	}
	if json.Unmarshal(frame, &f) != nil {
		return nil // not an event this rule knows: not sent
	}
	f.Payload.User = r.user(f.Payload.User)
	return protocol.Frame(f.Type, f.Payload, "")
}

// user is u as this version shows it.
func (r *rules) user(u protocol.User) protocol.User {
	if !r.profiles {
		u.Profile = nil
	}
	return u
}

// users is us as this version shows them; never nil, so it encodes as [].
func (r *rules) users(us []persistence.User) []protocol.User {
	out := protocol.UsersOf(us)
	for i := range out {
		out[i] = r.user(out[i])
	}
	return out
}

// friends is the auth answer's friends list: with each friend's status
// (online among them) when this version shows statuses.
func (r *rules) friends(us []persistence.User, online map[int64]bool) any {
	if !r.statuses {
		return r.users(us)
	}
	out := make([]protocol.Friend, len(us))
	for i, u := range us {
		out[i] = protocol.Friend{User: r.user(protocol.UserOf(u)), Status: protocol.StatusOffline}
		if online[u.ID] {
			out[i].Status = protocol.StatusOnline
		}
	}
	return out
}

// authPayload is the auth answer (protocol.md §2.2); online holds the
// friends online (§4.4), chats the chats list (§4.1) and guilds the
// user's guilds (§3), which only a version with seqs shows.
func (r *rules) authPayload(u persistence.User, incoming, outgoing, friends []persistence.User, online map[int64]bool, chats []protocol.ChatEntry, guilds []protocol.Guild) any {
	lists := [3]any{r.users(incoming), r.users(outgoing), r.friends(friends, online)}
	if r.listsAsText {
		for i, l := range lists {
			b, _ := json.Marshal(l)
			lists[i] = string(b)
		}
	}
	var chatList, guildList any // nil: no key
	if r.seqs {
		if chats == nil {
			chats = []protocol.ChatEntry{}
		}
		if guilds == nil {
			guilds = []protocol.Guild{}
		}
		chatList, guildList = chats, guilds
	}
	return struct {
		Self     protocol.User `json:"self_user"`
		Incoming any           `json:"mutual_requests"`
		Outgoing any           `json:"sent_requests"`
		Friends  any           `json:"mutual_users"`
		Chats    any           `json:"chats,omitempty"`
		Guilds   any           `json:"guilds,omitempty"`
	}{r.user(protocol.UserOf(u)), lists[0], lists[1], lists[2], chatList, guildList}
}
