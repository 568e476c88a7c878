package messages_test

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/rewind-chat/rewind/messages"
)

// Every message of messages.proto, the ones that cross nodes, goes
// through proto.Marshal and comes back equal, PIDs included, and is found
// by its full name as protoactor's remote looks it up to decode it.
func TestCrossingMessagesRoundTrip(t *testing.T) {
	pid := &actor.PID{Address: "10.0.0.7:8090", Id: "$42", RequestId: 3}
	profile, empty := "https://example.test/p.png", ""
	samples := []proto.Message{
		&messages.User{Id: 7, Name: "user7", Profile: &profile},
		&messages.Reply{Seq: 9, Frames: [][]byte{[]byte(`{"type":"ok"}`), []byte(`{"type":"load"}`)}},
		&messages.Reply{Seq: 10, User: &messages.User{Id: 7, Name: "user7"}},
		&messages.Deliver{Frame: []byte(`{"type":"chat"}`), Kind: messages.EventChatSend, Except: pid,
			Echo: &messages.Reply{Seq: 11, Frames: [][]byte{[]byte(`{"type":"chat","nonce":"n"}`)}}},
		&messages.Deliver{Frame: []byte(`{"type":"user"}`), Kind: messages.EventProfile},
		&messages.Deliver{Frame: []byte(`{"type":"chat","payload":{"seq":1}}`), FrameV1: []byte(`{"type":"chat","payload":{}}`), Kind: messages.EventChatSend},
		&messages.Push{Frame: []byte(`{"type":"chat","payload":{"seq":1}}`), FrameV1: []byte(`{"type":"chat","payload":{}}`), Kind: messages.EventChatSend},
		&messages.Deliver{Frame: []byte(`{"type":"read"}`), Kind: messages.EventRead},
		&messages.Push{Frame: []byte(`{"type":"mutual_users"}`), Kind: messages.EventFriendSelf},
		&messages.Push{Frame: []byte(`{}`), Kind: messages.EventKind(200)}, // a kind this build does not know
		&messages.CloseSession{Code: 4000, Reason: "Logged out elsewhere."},
		&messages.SessionAttached{Session: pid},
		&messages.SessionAttached{Session: pid, SinceUnixNano: 5, Reattach: true},
		&messages.SessionDetached{Session: pid},
		&messages.Logout{},
		&messages.FriendOp{Kind: "request", TargetName: "user2", Session: pid, Nonce: "f", Seq: 12},
		&messages.SetProfile{Profile: &profile, Session: pid, Nonce: "p", Seq: 13},
		&messages.SetProfile{Profile: &empty, Session: pid, Seq: 14}, // set but empty is not absent
		&messages.SetProfile{Session: pid, Seq: 15},
		&messages.ChatWrite{RoomLow: 1, RoomHigh: 2, ChatId: 3, Author: 1, MessageId: 99, Content: "héllo",
			Nonce: "c", Session: pid, Seq: 16, ReceivedUnixNano: time.Now().UnixNano(), Version: 2},
		&messages.FriendshipChanged{},
		&messages.FriendshipChanged{Ack: pid},
		&messages.FriendshipChangedSeen{},
		&messages.MemberLeaving{Address: "10.0.0.8:8090"},
		&messages.MemberLeavingSeen{},
		&messages.RequestLost{Seq: 17},
		&messages.Typing{RoomLow: 1, RoomHigh: 2, ChatId: 3, Author: 2, Nonce: "t", Session: pid, Seq: 18},
		&messages.OfflinePending{},
		&messages.PresenceQuery{UserIds: []int64{1, 2, 3}},
		&messages.PresenceAnswer{Online: []int64{2}},
		&messages.PresenceAnswer{},
		&messages.PushToUsers{UserIds: []int64{4, 5}, Frame: []byte(`{"type":"presence"}`), Kind: messages.EventPresence},
		&messages.Push{Frame: []byte(`{"type":"typing"}`), Kind: messages.EventTyping},
		&messages.ChatWrite{RoomHigh: 7, ChatId: 7, Author: 1, Content: "c", Session: pid, Seq: 19, Version: 2, Channel: true},
		&messages.Typing{RoomHigh: 7, ChatId: 7, Author: 2, Session: pid, Seq: 20, Channel: true},
		&messages.GuildOp{Kind: "kick", GuildId: 5, UserId: 1, Target: 2, Name: "n", Session: pid, Nonce: "g", Seq: 21},
		&messages.ChannelMembership{UserId: 3, Joined: true, Ack: pid},
		&messages.ChannelMembership{Deleted: true},
		&messages.Push{Frame: []byte(`{"type":"guild"}`), Kind: messages.EventGuild},
	}
	covered := map[protoreflect.FullName]bool{}
	for _, m := range samples {
		name := m.ProtoReflect().Descriptor().FullName()
		covered[name] = true
		b, err := proto.Marshal(m)
		require.NoError(t, err, name)
		typ, err := protoregistry.GlobalTypes.FindMessageByName(name)
		require.NoError(t, err, name)
		got := typ.New().Interface()
		require.NoError(t, proto.Unmarshal(b, got), name)
		require.True(t, proto.Equal(m, got), "%s: sent %v, got %v", name, m, got)
	}
	all := messages.File_messages_messages_proto.Messages()
	for i := range all.Len() {
		require.True(t, covered[all.Get(i).FullName()], "no sample of %s", all.Get(i).FullName())
	}

	// What the receiving actors read back.
	var w messages.ChatWrite
	at := time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)
	b, err := proto.Marshal(&messages.ChatWrite{RoomLow: 1, RoomHigh: 2, ReceivedUnixNano: at.UnixNano(), Session: pid})
	require.NoError(t, err)
	require.NoError(t, proto.Unmarshal(b, &w))
	require.Equal(t, messages.DMKey(2, 1), w.Key())
	require.True(t, w.ReceivedAt().Equal(at))
	require.True(t, w.Session.Equal(pid))
	require.True(t, (&messages.ChatWrite{}).ReceivedAt().IsZero(), "0 is not known, not 1970")
	require.Equal(t, messages.DMKey(2, 1), (&messages.Typing{RoomLow: 1, RoomHigh: 2}).Key())
}

// A user object reads back as the wire shows it, no profile as null.
func TestUserWire(t *testing.T) {
	profile := "https://example.test/p.png"
	u := &messages.User{Id: 7, Name: "user7", Profile: &profile}
	require.Equal(t, "7", u.Wire().ID)
	require.Equal(t, &profile, u.Wire().Profile)
	require.Nil(t, (&messages.User{Id: 7}).Wire().Profile)
}
