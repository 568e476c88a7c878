// Package actors holds REWIND's actors, one package each: session (one per
// connection), user (one per online user), room (one per active DM or
// guild channel), guild (one per active guild),
// roomstate (loads the state rooms start from), writer (group commit),
// directory (the one lookup of user and room actors) and mailer. They talk
// to each other in the types of package messages (protobuf for what passes
// between sessions, user and room actors, which a cluster puts on
// different nodes; Go structs for what stays on one: messages/doc.go), and
// answer clients with the frames and errors of package protocol (its
// errors.go is the one table of protocol.md §2's error codes, reasons and
// close codes).
//
// Who owns which state: a session owns its connection's lifecycle, rate
// limit and request queue; a user actor owns the set of its user's
// sessions, and so its presence, and runs the user's friend and profile
// operations one at a time; a room owns what it loaded of its DM
// (members, friendship, room id), its writes in flight and its members'
// typing throttle; the writer owns the queue of writes not yet committed;
// the directory owns the maps from ids to live actors. State in actors is
// a cache of the store, never the only copy, or else never stored at all
// (typing and presence, protocol.md §4.3, §4.4).
//
// The route of one chat message: the gateway hands a frame to its session,
// which validates it and sends a ChatWrite to the room (through the
// directory). A cold room asks roomstate first, queueing what arrives
// meanwhile. The room hands a Write to the writer, which commits it with
// other rooms' writes and answers Written; the room then sends the event
// and the echo to the author's user actor (which pushes the event to the
// author's other sessions and the echo to the sender) and the event to the
// other member's user actor. A typing request goes the same way as far as
// the room, which answers it at once (loaded) and tells the other
// member's user actor; a user's presence starts in its user actor, which
// tells its friends through the directory.
//
// The rules, each with the test that guards it:
//
//   - No actor waits on I/O inside Receive: store calls run in goroutines
//     that answer with a message, and the actor goes on with its mailbox
//     meanwhile (TestStalledStoreHoldsOnlyItsCaller in server,
//     TestRoomActivationHoldsOnlyItsRoom, TestFriendOpsDoNotHoldDeliveries,
//     TestSessionReadsKeepOrderAndLetEventsThrough).
//   - Answers go out in request order: a session handles one request at a
//     time and queues the rest (TestSessionReadsKeepOrderAndLetEventsThrough,
//     TestAnswersKeepRequestOrder in server).
//   - Echo means stored: a room answers a write only after the writer's
//     commit (TestRoomEchoesAfterCommit, TestWriterBatchesWhileCommitting).
//   - A room's writes commit in the order it made them, though the writer
//     runs several transactions at once (TestWriterKeepsRoomOrder); only a
//     write answered 5001 (below) may commit after its room's later ones.
//   - A write the database refuses fails alone, never its batch: the
//     store applies the others and the room answers it 4000
//     (WriteRefusedAlone and WriteRefusedMany in persistence/storetest,
//     TestPoisonedWriteFailsAlone in server).
//   - 5000 means nothing was applied. A write whose outcome is unknown
//     (the connection died after COMMIT was sent, the time limit passed
//     while the database had it) is answered 5001. A write's time limit
//     counts from its request's arrival, and a queued write whose limit
//     passes is answered at once, so that while the database stalls the
//     writes queued behind a stuck one fail together within one limit
//     (TestWriterQueuedWritesExpireTogether,
//     TestStalledDatabaseAnswersUnknownOutcome in server).
//   - No session outlives its user's logout: the directory refuses to
//     attach a session whose token check began before a logout of its user,
//     and the session checks the token again (TestAttachAfterLogout,
//     TestAuthDuringLogoutDoesNotSurvive in server).
//   - Abuse is bounded: a user has at most REWIND_WS_MAX_SESSIONS sessions
//     (TestAttachCapsSessions, TestMaxSessionsPerUser in server), and a
//     room that no one can write to (a made-up chat_id, a stranger)
//     answers and retires at once (TestRoomNoOneCanWriteToRetiresAtOnce,
//     TestMadeUpChatIDsDoNotPileUpRooms in server).
//   - The echo never overtakes an event: it travels with the events through
//     the author's user actor (TestConcurrentSendersIntoOneDM in server).
//   - A broadcast is built once: a user actor sends one Push, holding one
//     encoded frame, to every session it reaches (TestDeliverSharesOnePush).
//   - A v1 session never receives what protocol.md §2.9 lists (edit
//     events, origin:self friend events, profile events and every v2-only
//     kind, typing, presence and read among them, a profile other than
//     null anywhere, a friend's status, seq and edit_seq, the chats list):
//     each event carries its kind (messages.EventKind), and the session's
//     rules, chosen once by its version when it starts, decide every
//     frame it sends; a kind the v1 rules do not list is dropped, and a
//     frame passed on is the very bytes every session of its version gets
//     (TestV1RulesFilterWhatTheSessionSends in session;
//     TestV1EditsNeverReachTheMobileClient,
//     TestV1OwnDevicesGetNoOriginSelf, TestV1ProfilesStayNull,
//     TestV2TypingReachesTheOtherMember, TestV2PresenceOnlineOffline,
//     TestV2ReadState in server). The rules also say which requests a
//     version knows: typing and read are unknown types to v1, load
//     changes and load chats unknown load types
//     (TestTypingHasNoAnswerAndKeepsOrder, TestV2ReadState).
//   - A chat event is encoded once per version, never per session: the
//     room encodes the v2 frame with seq and edit_seq and, for a send,
//     the v1 frame without them, and hands both in one Deliver (Frame,
//     FrameV1) that the user actor passes on as one Push; the v1 rules
//     send FrameV1 (none: dropped, never the v2 bytes). The echo is
//     encoded for the sender's version (ChatWrite.Version)
//     (TestV1RulesFilterWhatTheSessionSends, TestV1MobileClientReplay in
//     server, whose client fails on a seq anywhere).
//   - A change's number is the store's, taken at commit under the room
//     row's lock: a room keeps no counter, and the echo and the events
//     carry the numbers of the writer's result, so a refused or failed
//     write leaves no hole and two activations of a room cannot number
//     one change twice (room's doc; TestV2SeqUniqueUnderConcurrentSenders,
//     TestV2SeqUnderDatabaseFault in server).
//   - A catch-up is one answer queued whole, so it cannot overflow the
//     connection's send queue by itself: a load changes page has at most
//     500 frames and at most half the queue's bytes (session.Config.SendBytes;
//     more then says there is more), and an answer's frames count against
//     the bytes only (gateway.Conn.SendAll), in change order, from one
//     snapshot of the store (TestV2CatchUpAfterOffline in server: pages of
//     500 with the default 256-frame queue, after a restart too;
//     TestSendAllQueuesAnAnswerWhole in gateway).
//   - A read moves only forward and tells only when it moved: the
//     session's goroutine stores it (MarkRead, off the actor) and, when it
//     moved, hands the read event to the reader's user actor (all its
//     sessions but this one) and the other member's, before the answer
//     (TestV2ReadState in server).
//   - A request with no answer does not stall the session: a typing
//     waits for its room like any request, and the room ends the wait
//     with a Reply without frames unless it refuses it (4004, 4005 as a
//     send); a lost or late one ends at the RequestTimeout without a
//     frame, not 5001 (TestTypingHasNoAnswerAndKeepsOrder,
//     TestRoomTypingThrottledPerAuthor).
//   - Typing is throttled where all of a user's typing in a chat passes,
//     whichever device it comes from: the chat's room, by author, at most
//     one event per room.DefaultTypingInterval (3 s), the others dropped
//     without an answer; the event goes to the other member's user actor
//     only, so the typist's own devices never get it (room state, not
//     stored: a room that retires forgets it)
//     (TestRoomTypingThrottledPerAuthor,
//     TestV2TypingReachesTheOtherMember in server).
//   - Presence is counted where the user's sessions are counted: its user
//     actor (its grain in a cluster, which holds the sessions of every
//     node). The first session tells the friends its auth read that the
//     user is online; after the last, the actor waits
//     directory.DefaultOfflineDelay (5 s) and tells the friends it reads
//     then that the user is offline, unless a session came back meanwhile
//     (nothing is told then). A local user actor stays for that delay
//     after its last session and then retires through the directory
//     (RetireUser, as an idle room does), which refuses while a session
//     attaches (TestPresenceCountsSessions, TestPresenceSurvivesFailure,
//     TestV2PresenceOnlineOffline in server).
//   - Presence wakes no one: the event goes through
//     directory.PushToUsers, which reaches only the friends online (a
//     node alone: their user actors; a cluster: each node's directory
//     pushes to its own sessions of them, one message per node), and the
//     v2 auth answer's statuses come from directory.OnlineAmong (a node
//     alone: its map; a cluster: every node's directory is asked, within
//     directory.StatusTimeout, and the users of a node that does not
//     answer count as offline); neither starts an actor or activates a
//     grain (TestAuthShowsFriendsStatus in session,
//     TestClusterPresenceCountsSessionsAcrossNodes in server).
//   - Nothing is sent to a retired actor: the directory forgets an idle
//     room, or a user actor that told its user offline, before it sends
//     it its last message (TestRoomRetiresWhenIdle, TestRetireUser,
//     TestPresenceCountsSessions, TestIdleRoomStopsAndRestarts in
//     server).
//   - A guild's changes are serialized by its guild actor (actors/guild;
//     one per guild, started on use, retiring when idle; a grain of kind
//     "guild" in a cluster): join, leave, kick, rename, delete and channel
//     create/delete run one at a time, their store calls off the actor,
//     and the store enforces the limits in the transaction that would pass
//     them (TestV2GuildJoinLimits in server: 50 concurrent joins on an
//     invite of 10 uses, exactly 10 join; TestV2GuildMemberLimit).
//   - A channel is a room (messages.ChannelKey: Low 0, no DM's) that
//     checks its members against the state it keeps, loaded at
//     activation and changed by its guild actor's ChannelMembership,
//     which the guild actor waits for before it answers: a kicked or
//     departed member's next send is refused and no event reaches it, a
//     deleted guild or channel refuses everything; never a query per
//     message (TestV2GuildRowsAndErrors in server; across three nodes,
//     guild, channel and user grains wherever the cluster puts them,
//     TestClusterGuild).
//   - A channel's event is encoded once and reaches each member's
//     sessions once, in the channel's order: the author's user actor with
//     the echo, the others by directory.PushToUsers, online ones only;
//     it has no v1 form, and guild events are a kind (EventGuild) the v1
//     rules do not list (TestV2ChannelFanOutAndRestart,
//     TestV2GuildV1SeesNothing in server).
//   - chat_id is first a channel of a guild I am in, then a DM: the
//     session routes by the channels it knows (its auth's guilds, kept by
//     guild answers and events), a v2 write or typing that is no DM's
//     reaches the channel's room through the DM's, and the v2 reads
//     resolve by the store; a non-member gets 4004 Channel not exist.,
//     never the content (TestV2GuildRowsAndErrors in server).
//   - An actor that fails stops and is forgotten; the next message starts a
//     fresh one that loads its state again (supervision in the props the
//     directory spawns with; TestRoomFailureIsReplaced,
//     TestUserFailureIsReplaced). What the failed actor held is answered
//     5000 if it was never handed on, 5001 if it may have been applied.
//
// # In a cluster
//
// With REWIND_CLUSTER_ETCD, user and room actors are cluster grains
// (directory.NewClustered; kinds "user" and "room", identities the user id
// and "low-high", placed by disthash); sessions stay on the node that
// holds their socket and are reached by PID over protoactor's remote. A
// room grain hands its writes to the writer of the node it runs on. What
// holds while a node joins or leaves:
//
//   - Echo means stored, whichever activation made the write: a room
//     answers only after its own commit; a request in flight when the
//     node of its grain dies is answered as soon as the directory that
//     sent it there sees that member leave (or its lookup fails): 5001,
//     outcome unknown (messages.RequestLost to the session, which treats
//     it as its timeout), or, for the echo of a committed write that went
//     to the author's user grain there, that echo (measured: 2.3–2.6 s
//     after a SIGKILL, the dead member's etcd lease; clustertest's
//     TestKilledNodeDuringTraffic asserts 8 s); a request whose answer is
//     lost otherwise is answered 5001 by the session's RequestTimeout;
//     a retry with the same nonce stores it once or answers the stored
//     message (TestClusterNodeLeavesDuringTraffic in
//     server: every acknowledged message in history exactly once).
//   - A graceful leave drops no request and answers none 5000/5001
//     (TestClusterGracefulLeaveDropsNothing: a steady stream into rooms on
//     the leaving node, none answered later than 1 s;
//     TestClusterNodeLeavesDuringTraffic). The leaving node's directory
//     first routes nothing to its own grains and tells every other
//     node's directory (messages.MemberLeaving to DirectoryActor), which
//     does the same and answers; the answer comes on the stream that
//     carried what that node sent before, so once all answered nothing
//     is on its way to the leaving node, whose grains still run. It waits
//     next for its rooms, guilds and users to answer what they had
//     started (directory.Working: writes at the writer, queued guild,
//     friend and profile operations),
//     within a write's time limit, so that a send without a nonce in
//     flight is answered its echo, not 5001
//     (TestClusterGracefulLeaveAnswersWritesInFlight). Then
//     its key leaves etcd and its grains stop: a grain hands what it has
//     not started (a write waiting for its room's state, a queued friend
//     or profile operation) to its identity's next activation, and a
//     room whose writes outlived that wait has the next activation retry
//     them (a send with a nonce is stored once, an edit sets the same
//     content; only a send without a nonce is answered 5001). Lookups of
//     a node that leaves, or whose leave it was told, place identities
//     over the other members and ask the owner's placement actor
//     directly, as the others will once etcd tells them.
//   - No message is lost to a stale PID: a directory forgets a grain's
//     PID when protoactor broadcasts its ActivationTerminated or its
//     member leaves; a message that still reaches a stopped grain (a dead
//     letter on its node) or was left in its mailbox as it stopped
//     (directory.GrainMailbox) is sent again by identity, which activates
//     the grain afresh (TestClusterChat: a room retired by idleness and
//     used again from another node, three times, echoed and delivered).
//   - Lookups never block an actor or the directory's lock: a grain whose
//     PID is not known yet gets its messages queued, in order, behind one
//     lookup in a goroutine.
//   - Soft state only (protoactor-go#799: one identity can briefly live on
//     two nodes): a room grain loads its state from the store as a local
//     room does; a user grain's set of sessions is rebuilt by the nodes.
//     A node re-attaches its sessions of a user at once when the user's
//     grain may have moved or restarted: on a membership change (a member
//     left, leaves or joined) for every user whose identity is now placed
//     on another member (the directory's placement: disthash's rendezvous
//     over the members but those leaving), and on the ActivationTerminated
//     of the user's identity (a user grain that fails stops rather than
//     restart blank, so that its activation ends too). As the safety net
//     against what no event tells (#799), every node also attaches all
//     its sessions again every re-attach interval (directory.DefaultReattach,
//     30 s), and a grain forgets a session not attached again within
//     directory.ReattachForget (3) intervals (90 s;
//     TestGrainForgetsSessionsNotAttachedAgain in user). So a user grain that
//     moved or restarted knows its sessions within a lookup (tens of
//     milliseconds) of each node seeing the change: within 1 s of a
//     graceful leave (TestClusterNodeLeavesDuringTraffic, whose nodes
//     re-attach periodically only every minute); after a SIGKILL, within
//     the dead member's etcd lease (3 s) plus a lookup (measured
//     2.4–3.4 s, clustertest's TestKilledNodeDuringTraffic, nodes at the
//     default, which requires every DM between the survivors to deliver
//     an event again within 8 s; the directory knows the members from
//     Join on, so that the first topology after it, a kill's, re-attaches
//     too);
//     in what no event tells, within one re-attach interval. Until then
//     events to that user may be missed (protocol.md §2.8: found again by
//     the catch-up), but an echo still reaches its sender, as it travels
//     with the session's PID. The same holds in the first milliseconds
//     after an auth, whose attach is not waited for: an event sent from
//     another node can reach the user's grain before the attach does
//     (crossPairs in server's tests waits for the attach for that reason).
//     A user grain with no session stops after user.DefaultIdle, never
//     while its offline delay runs.
//   - Presence survives soft state without spamming friends: a session
//     a node attaches for the first time says so
//     (messages.SessionAttached.reattach unset), and only such a one
//     makes a user grain that knew no session tell the friends online; a
//     blank grain that learns sessions by re-attach tells nothing (the
//     previous activation told them), a re-attach of a known session
//     changes nothing, and a re-attach to a grain that told offline (it
//     forgot the session) tells online again. A new session that reaches
//     a moved grain before the other nodes' re-attaches makes one extra
//     online event at worst. A grain whose node leaves with an offline
//     pending hands it to its next activation (messages.OfflinePending)
//     (TestGrainPresenceSoftState in user,
//     TestClusterPresenceCountsSessionsAcrossNodes in server). A user
//     whose sessions were all on a node that died is told offline the
//     delay after the others see that member leave: each node tells its
//     user grains of the members that left (messages.MembersLeft), and
//     they forget the sessions there (TestClusterPresenceAfterANodeIsLost
//     in server). What it does not cover: a user whose grain died with
//     those sessions is not told offline at all (no grain remembers them).
//   - A friendship change is seen by the next send from any node: the
//     user grain answers a request, response or delete only after the
//     DM's room took the change in (directory.ChangeFriendship: the room
//     answers FriendshipChanged.ack; the wait runs in the operation's
//     goroutine, bounded by its time limit), so a send after the ok
//     loads the friendship again (TestClusterUnfriendThenSendAcrossNodes
//     in server: delete on node 1, then a send from node 2 is 4005).
//   - Logout on any node reaches the user's grain, which closes the
//     user's sessions on every node with 4000 and refuses a session whose
//     token check began before the logout (TestClusterChat).
//   - REWIND_WS_MAX_SESSIONS is enforced per node: each node counts the
//     sessions it holds.
//   - A node's leave (SIGTERM): stop accepting, close its sessions 1001,
//     directory.Leave (above), its key out of etcd (cluster.Node.Leave:
//     its grains stop; the others take their identities over within tens
//     of milliseconds), drain its writer (every write it was handed
//     commits and is answered), stop the remote (protoactor also stops
//     the actor system then), close the store
//     (TestClusterNodeLeavesDuringTraffic).
//   - A second node with a held REWIND_NODE_ID refuses to start, in one
//     line (TestClusterSecondNodeWithTheSameIDRefused); a node that loses
//     its claim exits.
package actors
