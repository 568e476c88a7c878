// Package messages holds the messages actors send each other: requests
// routed to user and room actors, their replies, the events they deliver,
// and the writer's and room loader's work. The wire frames they carry are
// encoded by package protocol.
//
// # Which messages are protobuf
//
// The rule: a message is a protobuf message (messages.proto, generated
// into messages.pb.go) when its receiver may be on another node than its
// sender; it stays a Go struct (actor.go) when both ends are always on the
// same node. In the cluster, user and room actors become grains that any
// node reaches, and sessions stay on their node, reached by PID over
// protoactor's remote, which serializes proto messages only. So the
// messages between sessions, user actors and room actors cross nodes, and
// so do the directory's notices to user and room actors: Reply, Deliver,
// Push, CloseSession, SessionAttached, SessionDetached, Logout, FriendOp,
// SetProfile, ChatWrite, Typing, GuildOp, ChannelMembership, FriendshipChanged,
// FriendshipChangedSeen and OfflinePending, and the directories' notices
// to each other: MemberLeaving, MemberLeavingSeen, PresenceQuery,
// PresenceAnswer and PushToUsers. A room's
// writer shard and room-state loader run on the room's node, so Write,
// Written, OpenRoom and RoomOpened stay Go structs (they carry persistence values and
// errors), as do an actor's messages to itself (timers, the outcomes of
// its goroutines) and the directory's RoomKey, a map key. A new message
// that a session, user or room actor sends to another of them goes in
// messages.proto.
//
// What a protobuf message may hold: scalars, strings, bytes and enums;
// *actor.PID (protoactor's actor.proto); and a message of messages.proto
// carried whole (Reply.User, Deliver.Echo), nil meaning absent. Never an
// error value, an interface or a Go pointer to a type of ours:
//
//   - An optional value is a proto3 optional field, which Go sees as a
//     pointer that is nil when absent: a profile (User.Profile,
//     SetProfile.Profile) is *string, nil for none, as persistence.User's
//     is. One field, so a value and its presence cannot disagree.
//   - A time is int64 Unix nanoseconds (ChatWrite.ReceivedUnixNano, 0 for
//     not known; read it with ReceivedAt): no allocation on the chat path,
//     where a google.protobuf.Timestamp would be a message of its own,
//     and exact for 1678 to 2262. Like any time sent between nodes, it is
//     a wall clock reading: the writer takes one from the future as now.
//   - An error crosses as the error frame that answers it (protocol's code
//     and reason, encoded in Reply.Frames); a message that must carry an
//     error unencoded gets its protocol code and reason as two fields.
//   - A RoomKey crosses as its two ids (ChatWrite.RoomLow, RoomHigh;
//     Key() gives the RoomKey), an EventKind as the enum of messages.proto
//     (EventChatSend and the other short names are in actor.go).
//
// Local sends pass the pointer, as before: a Push built once for a
// fan-out goes to every session of the user, and its Frame is the same
// bytes for each; only a send to another node serializes.
//
// `make proto` regenerates messages.pb.go after an edit of messages.proto:
// protoc from Debian's protobuf-compiler, with protoc-gen-go the tool
// pinned in go.mod at the version of google.golang.org/protobuf the code
// runs with. TestCrossingMessagesRoundTrip guards that every message of
// messages.proto goes through proto.Marshal and comes back equal.
package messages
