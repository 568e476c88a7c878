// Package room is the actor of one DM: it serializes the sends, edits and
// deletes of that DM, hands them to the writer, and only after the commit
// answers the sender ("echo means stored") and emits the event to both
// members' user actors.
//
// A room also relays its members' typing (protocol.md §4.3): refused as
// a send would be, at most one per TypingInterval per author (the room is
// where all of a user's typing in a chat passes, whichever device it
// comes from), to the other member's user actor and never to the
// author's; never stored.
//
// A room never waits on the store inside Receive. It starts cold: the first
// write asks the room-state loader (actors/roomstate) whether both members
// exist, whether they are friends and what the room's id is, and writes
// that arrive meanwhile queue behind it in order. An edit needs no read of
// its own: the writer's transaction checks the message and its author.
//
// Made with NewGrain a room is a cluster grain (kind directory.RoomKind)
// that learns its key from its identity (directory.RoomIdentity); it runs
// on the node disthash places it on and hands its writes to that node's
// writer. Its state is loaded from the store as a local room's is, so a
// second activation during a membership change (cluster's doc) is
// harmless: each write is acknowledged only after its own commit.
//
// # Sequence numbers
//
// Every change of a DM, a send, an edit or a delete, has the DM's next
// number (protocol.md §4.1: 1, 2, 3, ... with no gaps in what is
// committed). The room does not assign them: the store does, at commit,
// in the transaction that writes the change and under the room row's lock
// (persistence's package comment), and the room learns each write's
// numbers from the writer's result (Written: Message.Seq, and EditSeq for
// an edit or delete) and puts them in the echo and the events. The issue
// suggested the room count them, from the Seq its state loads with; that
// would be wrong twice:
//
//   - A number taken before the commit leaves a hole when the write is
//     refused (ErrRefused, an edit of a message that is not there, by
//     someone else, a nonce duplicate) or fails (5000, 5001): the room
//     would have to give numbers back, and cannot for a write whose
//     outcome is unknown. Taken in the transaction, a number exists only
//     if its change does; a rollback takes it back.
//   - A cluster can briefly run two activations of one room (protoactor-go
//     #799, cluster's doc; the writer also runs several transactions at
//     once), each with its own counter loaded from the store: both would
//     hand out the same next number. The store numbers a room only while
//     it holds the room's row lock, so the second writer waits and reads
//     what the first committed, and the unique indexes on (room_id, seq)
//     and (room_id, coalesce(edit_seq, seq)) refuse a number taken twice whatever the
//     actors do.
//
// So a room keeps no counter: what it loads (DMState.Seq) is not used to
// number anything, and the order of a room's numbers is the order of its
// commits, which is the order it made its writes (the writer keeps it;
// actors/doc.go) except for a write answered 5001.
//
// # Versions
//
// An event is encoded once per protocol version (actors/doc.go: a
// broadcast is built once): the v2 frame with seq and edit_seq
// (protocol.AppendChatV2) and, for a send, the v1 frame without them
// (protocol.AppendChat), both in one Deliver (Frame, FrameV1) that the
// user actor hands on as one Push to every session, whose rules pick the
// form. The echo is one frame, encoded for the version of the sending
// session (ChatWrite.Version).
package room
