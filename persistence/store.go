// Package persistence defines the storage contract of REWIND. The two
// implementations, persistence/sqlite and persistence/postgres, pass the
// same conformance suite (persistence/storetest).
//
// # Chat sequence numbers
//
// Every room numbers its changes 1, 2, 3, ... (protocol.md §4.1): a send
// takes the room's next number as Message.Seq, an edit or a delete as
// Message.EditSeq (a message keeps only its latest). The store assigns them,
// never the caller, in the transaction that writes the change, from a
// counter in the room's row (rooms.seq, beside rooms.activity_at, the time
// of that change) that the same transaction raises.
//
// No holes: a change takes a number only when it is written, and the
// counter rises by exactly the numbers written, in the same transaction.
// An op that changes nothing (a refused op, an edit of a missing or
// deleted message or by another author, a nonce duplicate) takes none: the
// PostgreSQL store leaves duplicates out before it numbers a run of sends,
// rather than letting the insert skip rows that have numbers already, and
// the SQLite store counts an op only once its statement changed a row. A
// statement, savepoint or transaction that rolls back takes its numbers
// and the counter's rise back with it.
//
// No duplicates, though two writers may write one room at once (two
// activations of a room actor in a cluster; the writer's concurrent
// transactions): a transaction numbers a room only while it holds the
// room's lock, until its commit. In PostgreSQL a batch first locks the
// rows of its rooms (SELECT ... FOR NO KEY UPDATE, in id order so that two
// batches cannot deadlock); the next writer of a room waits, and each of
// its statements then sees what the first committed (READ COMMITTED takes
// a snapshot per statement), its counter and its nonces included. In
// SQLite the lock is the one write transaction at a time. The unique index
// messages_room_change_key on (room_id, coalesce(edit_seq, seq)), every
// message's latest number, is the database's own guarantee: of two writes
// that took one number, the second fails.
//
// Changes reads a room's changes after a position in number order (§4.1's
// catch-up); Chats lists a user's rooms by the time of their latest
// change; MarkRead keeps a read position per user and room (§4.2). Their
// queries read indexes only (each store's TestChatPlans).
//
// # Guilds
//
// GuildStore keeps protocol.md §3 in four tables (migration 0006):
//
//   - guilds (id, name, owner_id, member_count, created_at): member_count
//     is the count of the guild's guild_members rows, kept by the
//     transactions that add and remove them, so that a guild object and
//     the member limit cost no count;
//   - guild_members (guild_id, user_id, joined_at), keyed by (guild_id,
//     user_id): Members pages along the key; guild_members_user_idx
//     (user_id, joined_at, guild_id) gives a user's guilds in membership
//     order (GuildsOf, the guild limit, Chats);
//   - invites (code, guild_id, created_by, max_uses, uses, expires_at,
//     created_at), keyed by the caller's random code;
//   - rooms: a channel IS a room, kind KindChannel, with guild_id and name
//     set and member_low, member_high NULL; a DM keeps its two members
//     and no guild. A CHECK holds exactly these two shapes, and the
//     UNIQUE (kind, member_low, member_high) still makes the DM of two
//     users one row (channels' NULLs are distinct in it). The columns
//     became nullable: PostgreSQL alters them; SQLite rebuilds rooms
//     (its documented twelve steps: a new table, the rows copied, the old
//     one dropped, every index made again) with foreign keys off, which
//     the migration runner turns off for that migration alone and on
//     again, checking PRAGMA foreign_key_check before it commits.
//
// So WriteMessages, MessageByID, History, Changes and their numbering
// serve channels unchanged, by room id; MarkRead and Chats take a
// channel's members to be its guild's. Chats reads a third branch beside
// the two of the DMs: the user's guilds, and for each its channels from
// the cursor on in activity order (rooms_channel_activity_idx); only that
// branch is sorted, at most the guild limit times the channel limit rows,
// since no index orders the channels of several guilds without a row per
// member and channel written at every send.
//
// Deleting a channel or a guild deletes the rooms' messages, then the
// rooms (read_states cascade through read_states_room_idx), then the
// guild (guild_members and invites cascade). A deleted channel is a room
// that does not exist: History and Changes answer nothing (and current
// 0), MessageByID and MarkRead ErrNotFound, and a send to it is refused.
// Leaving or being kicked removes the user's read positions in the
// guild's channels.
//
// Limits hold however many calls race, each checked in the transaction
// that would pass it. In SQLite the one write transaction at a time
// orders every change, so a count read in it stands until its commit. In
// PostgreSQL every change of a guild's members, invites' uses and
// channels runs under the guild row's lock (SELECT ... FOR NO KEY UPDATE,
// which leaves the KEY SHARE of foreign key checks alone), and every
// addition to a user's guilds under the user row's lock, taken after the
// guild's: JoinGuild reads the invite's guild id, locks the guild, and
// only then reads the invite, the membership and member_count (READ
// COMMITTED gives each statement after the lock a snapshot that holds
// what the guild's earlier writers committed), locks the user and counts
// the user's guilds, then inserts the member and raises member_count and
// the invite's uses in the same transaction. The joins of a guild, by any
// of its invites, thus run one at a time from the lock on; a second join
// of the same user finds the membership and consumes no use. CreateGuild
// locks the owner; CreateChannel and DeleteChannel lock the guild and
// count its channels; DeleteGuild and DeleteChannel then lock the
// channels' rooms FOR UPDATE, so that a write that holds a room commits
// before its messages are deleted and one that comes after finds no room.
// The order is always guild, then user or rooms, so none of these
// deadlock with each other or with WriteMessages, which locks rooms only
// (and, writing a room twice in one transaction, takes KEY SHARE on its
// guild, which the guild lock leaves alone).
package persistence

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// Errors every Store returns, wrapped or not; compare with errors.Is.
var (
	// ErrNotFound: the row asked for does not exist (or has expired).
	ErrNotFound = errors.New("persistence: not found")
	// ErrNameTaken: a user already has this name, as NameKey compares.
	ErrNameTaken = errors.New("persistence: name taken")
	// ErrEmailTaken: a user already has this email, without regard to case.
	ErrEmailTaken = errors.New("persistence: email taken")
	// ErrTooManyMails: the email address had its MailQuota of
	// verification mails; nothing was stored.
	ErrTooManyMails = errors.New("persistence: too many verification mails")
	// ErrSeqAhead: MarkRead of a position beyond the room's latest change;
	// nothing was stored.
	ErrSeqAhead = errors.New("persistence: seq beyond the room's latest change")
)

// UnreadCap bounds ChatSummary.Unread (protocol.md §4.2): counting stops
// there, so that a long unread chat costs no more than this many rows.
const UnreadCap = 1000

// User is a verified account.
type User struct {
	ID           int64
	Name         string
	Email        string
	PasswordHash string // argon2id PHC string, or auth.LegacyHash until an imported user first logs in; never a plain password
	Profile      *string
	// TokenGeneration is written into every token; bumping it revokes them.
	TokenGeneration int64
	CreatedAt       time.Time
}

// PendingRegistration is an account waiting for its e-mail to be verified.
type PendingRegistration struct {
	// KeyHash identifies the registration. The key itself travels only in
	// the mail; the store sees a keyed hash of it (see auth.VerificationKeys).
	KeyHash      []byte
	Name         string
	Email        string
	PasswordHash string
	ExpiresAt    time.Time
	CreatedAt    time.Time
}

// MailQuota bounds the verification mails one email address receives: at
// most Max within any Window. Each PutPendingRegistration is one mail. A
// zero Max means no bound.
type MailQuota struct {
	Max    int
	Window time.Duration
}

// Admit reads record (the times of an address's recent mails, as stores
// keep them: unix microseconds, comma-separated), drops the times at or
// before now less the window, and reports whether a mail at now is within
// the quota; if it is, the record returned includes it.
func (q MailQuota) Admit(record string, now time.Time) (string, bool) {
	if q.Max <= 0 {
		return "", true
	}
	since := now.Add(-q.Window).UnixMicro()
	var kept []string
	for _, f := range strings.Split(record, ",") {
		us, err := strconv.ParseInt(f, 10, 64)
		if err == nil && us > since {
			kept = append(kept, f)
		}
	}
	if len(kept) >= q.Max {
		return record, false
	}
	return strings.Join(append(kept, strconv.FormatInt(now.UnixMicro(), 10)), ","), true
}

// Store is what the server keeps. Every method is safe for concurrent use.
// Names are compared as NameKey gives them (PRECIS, then full case
// folding) and emails as Fold gives them (Go's Unicode lower case),
// identically in every implementation. Where both a name and an email are
// taken, ErrEmailTaken wins. A zero CreatedAt is stored as now.
type Store interface {
	// Migrate applies the embedded migrations that are not applied yet.
	Migrate(ctx context.Context) error
	// Ping answers nil when the database serves queries.
	Ping(ctx context.Context) error
	Close() error

	// CreateUser inserts a verified user (u.ID set by the caller).
	// ErrEmailTaken or ErrNameTaken when either is in use.
	CreateUser(ctx context.Context, u User) error
	UserByID(ctx context.Context, id int64) (User, error)
	UserByEmail(ctx context.Context, email string) (User, error)
	UserByName(ctx context.Context, name string) (User, error)
	// BumpTokenGeneration increments the user's token generation and
	// returns the new value, revoking every token issued before.
	BumpTokenGeneration(ctx context.Context, userID int64) (int64, error)
	// ReplacePasswordHash sets userID's password hash to newHash if it is
	// still oldHash, in one statement, and reports whether it did: of two
	// logins that replace the same hash one wins, and a hash changed
	// meanwhile is never overwritten. False, not an error, when there is no
	// such user.
	ReplacePasswordHash(ctx context.Context, userID int64, oldHash, newHash string) (bool, error)

	// PutPendingRegistration stores p, replacing the pending registration
	// with the same email, whose key stops working. A pending registration
	// reserves nothing: several with one name may wait, the first verified
	// takes it, and the others then fail with ErrNameTaken. ErrEmailTaken or
	// ErrNameTaken when a verified user already holds either;
	// ErrTooManyMails, storing nothing, when quota is spent for the email
	// address at p.CreatedAt.
	PutPendingRegistration(ctx context.Context, p PendingRegistration, quota MailQuota) error
	// VerifyRegistration turns the pending registration with keyHash that
	// has not expired at now into a user with id userID, in one
	// transaction, and deletes the pending row: a key works once.
	// ErrNotFound when there is no such live registration; ErrEmailTaken or
	// ErrNameTaken when a user took either meanwhile (the pending row is
	// deleted then too, since it can never succeed).
	VerifyRegistration(ctx context.Context, keyHash []byte, now time.Time, userID int64) (User, error)
	// DeleteExpiredRegistrations removes registrations expired at now and
	// returns how many.
	DeleteExpiredRegistrations(ctx context.Context, now time.Time) (int64, error)

	// Secret returns the secret stored under name, storing generate()'s
	// value (non-empty) first when there is none. Concurrent callers get
	// one value.
	Secret(ctx context.Context, name string, generate func() ([]byte, error)) ([]byte, error)

	ChatStore
	GuildStore
}

// ErrAlreadyFriends: a friend request to someone who is a friend already.
var ErrAlreadyFriends = errors.New("persistence: already friends")

// ErrNotAuthor: an edit that names an author who did not write the message.
var ErrNotAuthor = errors.New("persistence: not the author")

// ErrRefused wraps the database's error in the result of one MessageOp
// that the database refused (a string it cannot store, such as U+0000 or
// invalid UTF-8 in PostgreSQL; a room or author that does not exist; an id
// taken). The op changed nothing; the other ops of its batch still apply.
var ErrRefused = errors.New("persistence: write refused")

// ErrOutcomeUnknown wraps an error of WriteMessages after which the batch
// may have been committed all the same: the connection died after COMMIT
// was sent, or the time limit passed while the database had it. Every other
// error of WriteMessages means that nothing was applied.
var ErrOutcomeUnknown = errors.New("persistence: outcome unknown")

// DMOpen asks OpenDMs for the state of the DM room of users Low < High.
type DMOpen struct {
	Low, High int64
	// NewID is the id the room takes if OpenDMs creates it.
	NewID int64
}

// DMState is what OpenDMs found for one DMOpen.
type DMState struct {
	// Members: both users exist.
	Members bool
	// Friends: the two users are friends.
	Friends bool
	// RoomID is the room's id; 0 when there is no room, which happens only
	// when they are not friends.
	RoomID int64
	// Seq is the number of the room's latest change (0: none, or no room).
	Seq int64
}

// Message is one message of a room, a DM or a channel. A deleted message keeps its row (with
// empty Content and DeletedAt set) and leaves history.
type Message struct {
	ID        int64
	RoomID    int64
	AuthorID  int64
	Content   string
	Nonce     string // the author's idempotency key for the send in its room; "" for none
	CreatedAt time.Time
	EditedAt  *time.Time
	DeletedAt *time.Time
	// Seq is the number of the change that created the message in its
	// room, EditSeq that of its latest edit or delete (0: never edited);
	// see the package comment. The store assigns both; WriteMessages
	// ignores them in its ops.
	Seq, EditSeq int64
}

// ChangeSeq is the number of m's latest change: EditSeq, or else Seq.
func (m Message) ChangeSeq() int64 {
	if m.EditSeq != 0 {
		return m.EditSeq
	}
	return m.Seq
}

// Room kinds: rooms.kind, ChatSummary.Kind.
const (
	// KindDM is a direct-message room of two users.
	KindDM = 1
	// KindChannel is a text channel of a guild.
	KindChannel = 2
)

// ChatSummary is one chat of Chats.
type ChatSummary struct {
	RoomID int64
	// Kind is KindDM or KindChannel.
	Kind int
	// GuildID is the channel's guild (0 for a DM).
	GuildID int64
	// Low < High are the DM's members (0 for a channel).
	Low, High int64
	// Seq is the number of the room's latest change; ReadSeq the user's
	// read position (0 when never marked).
	Seq, ReadSeq int64
	// Unread counts the messages after ReadSeq that the user did not
	// write and that are not deleted, up to UnreadCap.
	Unread int
	// LastMessage is the room's newest message (highest Seq) that is not
	// deleted; nil when there is none.
	LastMessage *Message
	// Activity is the time of the room's latest change (the send's
	// CreatedAt, the edit's EditedAt).
	Activity time.Time
}

// MessageOpKind is what a MessageOp does.
type MessageOpKind uint8

const (
	// OpSend inserts Message (ID, RoomID, AuthorID, Content, Nonce,
	// CreatedAt set by the caller).
	OpSend MessageOpKind = iota + 1
	// OpEdit sets Content and EditedAt of message Message.ID in room
	// Message.RoomID; an empty Content deletes it (DeletedAt = EditedAt).
	// A non-zero Message.AuthorID must be the message's author, or the op
	// does nothing and its result's Err is ErrNotAuthor.
	OpEdit
)

// MessageOp is one write of WriteMessages.
type MessageOp struct {
	Kind    MessageOpKind
	Message Message
}

// MessageResult is what one MessageOp did.
type MessageResult struct {
	// Message is the row as stored: after the op for an edit; the inserted
	// row for a send; when Duplicate, the earlier row with the same author,
	// room and nonce as it is at the end of the batch (with the batch's
	// edits).
	Message Message
	// Duplicate: the send's author already had a message with this nonce
	// in this room; nothing was inserted. The same nonce in another room is
	// another message. Nonces are kept as long as their message.
	Duplicate bool
	// Err is ErrNotFound for an edit of a message that is not in that room
	// or is deleted, ErrNotAuthor for an edit by someone else, and wraps
	// ErrRefused for an op the database refused; the op changed nothing,
	// the other ops still apply.
	Err error
}

// Cursor is a position in a room's history: messages strictly older than
// (Time, ID) in (created_at, id) order. ID 0 means "older than Time".
type Cursor struct {
	Time time.Time
	ID   int64
}

// Bound returns c as the exclusive upper bound of (created_at, id) that
// stores compare with, their times being whole microseconds: a Time between
// two microseconds is rounded up, and then, as for ID 0, the id is the
// smallest there is, which makes the bound "created_at < Time".
func (c Cursor) Bound() (time.Time, int64) {
	t := c.Time.Truncate(time.Microsecond)
	switch {
	case !t.Equal(c.Time):
		return t.Add(time.Microsecond), math.MinInt64
	case c.ID == 0:
		return t, math.MinInt64
	}
	return t, c.ID
}

// FriendResult is what RequestFriend did.
type FriendResult uint8

const (
	// FriendRequested: the request is stored.
	FriendRequested FriendResult = iota + 1
	// FriendRequestRepeated: the same request was pending; nothing changed.
	FriendRequestRepeated
	// FriendAccepted: the other user had asked first; they are friends now.
	FriendAccepted
)

// ChatStore is the part of Store behind the WebSocket gateway: DM rooms,
// messages (of DMs and channels alike), friends and profiles.
type ChatStore interface {
	// EnsureDMRoom returns the id of the DM room of users a and b (either
	// order), creating it with id newID when there is none; concurrent
	// callers get one id. ErrNotFound when a or b is not a user; a == b is
	// an error.
	EnsureDMRoom(ctx context.Context, a, b, newID int64) (int64, error)
	// OpenDMs answers each DMOpen (Low < High) in one round trip: whether
	// both users exist, whether they are friends, the room's id and Seq,
	// creating the room with NewID when they are friends and it has none
	// (concurrent callers get one id). It is how a room actor activates;
	// the activations of many rooms share one call.
	OpenDMs(ctx context.Context, dms []DMOpen) ([]DMState, error)
	// FindDMRoom returns the id of the DM room of a and b; ErrNotFound
	// when there is none.
	FindDMRoom(ctx context.Context, a, b int64) (int64, error)
	// WriteMessages applies ops in order in one transaction and returns one
	// result per op. An op that the database refuses (a send to a room or
	// by an author that does not exist, a send whose ID is taken, a string
	// that is not valid UTF-8 or holds U+0000) fails alone: its result's Err
	// wraps ErrRefused and the other ops apply, so that one user's write
	// never fails another's. An error of the call means nothing was applied,
	// unless it wraps ErrOutcomeUnknown (the commit may have happened); an
	// op of unknown Kind and an edit without EditedAt are such errors.
	// Each send that inserts and each edit that applies takes its room's
	// next number (Message.Seq, Message.EditSeq; the package comment), the
	// ops of one room in op order; an op that changes nothing takes none.
	WriteMessages(ctx context.Context, ops []MessageOp) ([]MessageResult, error)
	// MessageByID returns message id of room roomID, deleted or not;
	// ErrNotFound when it is not in that room.
	MessageByID(ctx context.Context, roomID, id int64) (Message, error)
	// History returns up to limit (> 0) messages of roomID that are older
	// than before and not deleted, newest first.
	History(ctx context.Context, roomID int64, before Cursor, limit int) ([]Message, error)
	// Changes returns current, the number of roomID's latest change (0
	// when there is no such room), and up to limit (> 0) messages of the
	// room changed after since, in the order of their latest change
	// (Message.ChangeSeq), from one snapshot: protocol.md §4.1's catch-up.
	// A message created after since (Seq > since, which the caller sends as
	// a send) is left out if it is deleted by now; one created at or
	// before since and changed after it (an edit) comes deleted or not.
	// since > current is the caller's error to report; the store answers
	// no messages and current.
	Changes(ctx context.Context, roomID, since int64, limit int) (msgs []Message, current int64, err error)
	// Chats returns up to limit (> 0) of userID's rooms that have a change
	// (Seq > 0), DMs and the channels of userID's guilds mixed, most recent
	// activity first (ChatSummary.Activity, then room id, both
	// descending). before, a room id, continues after that room in this
	// order (0: from the newest); ErrNotFound when it is not a room of
	// userID (a DM of another pair, a channel of a guild userID is not in);
	// none when it has no change.
	Chats(ctx context.Context, userID, before int64, limit int) ([]ChatSummary, error)
	// MarkRead moves userID's read position in roomID forward to seq
	// (protocol.md §4.2) and returns the position stored after the call and
	// whether it moved: a seq at or below it changes nothing. ErrSeqAhead,
	// storing nothing, when seq is beyond the room's latest change;
	// ErrNotFound when there is no such room or userID is not one of its
	// members (of the DM, or of the channel's guild).
	MarkRead(ctx context.Context, userID, roomID, seq int64) (readSeq int64, moved bool, err error)

	// FriendLists returns the users who asked userID to be friends, the
	// users userID asked, and userID's friends, each oldest first (by the
	// request's or friendship's time, then by user id).
	FriendLists(ctx context.Context, userID int64) (incoming, outgoing, friends []User, err error)
	// Friends returns userID's friends, oldest friendship first, then by
	// user id.
	Friends(ctx context.Context, userID int64) ([]User, error)
	// AreFriends reports whether a and b are friends.
	AreFriends(ctx context.Context, a, b int64) (bool, error)
	// RequestFriend records that from asks to to be friends, in one
	// transaction that locks both users: if to had asked from already,
	// that request is removed and they become friends (FriendAccepted).
	// ErrAlreadyFriends when they are friends; ErrNotFound when either is
	// not a user; from == to is an error.
	RequestFriend(ctx context.Context, from, to int64, now time.Time) (FriendResult, error)
	// AcceptFriend makes me and from friends, removing from's request to
	// me, under the same locks as RequestFriend; ErrNotFound when from has
	// not asked me.
	AcceptFriend(ctx context.Context, me, from int64, now time.Time) error
	// RemoveFriendRequest removes other's request to me, or else my request
	// to other; ErrNotFound when there is neither.
	RemoveFriendRequest(ctx context.Context, me, other int64) error
	// DeleteFriend ends the friendship of a and b (both rows); ErrNotFound
	// when they are not friends.
	DeleteFriend(ctx context.Context, a, b int64) error
	// SetProfile sets userID's profile URL (nil clears it) and returns the
	// user; ErrNotFound when there is no such user.
	SetProfile(ctx context.Context, userID int64, profile *string) (User, error)
}

// Errors of GuildStore.
var (
	// ErrGuildFull: JoinGuild into a guild that has its maximum of members.
	ErrGuildFull = errors.New("persistence: guild full")
	// ErrTooManyGuilds: the user is in the maximum of guilds already
	// (CreateGuild, JoinGuild).
	ErrTooManyGuilds = errors.New("persistence: too many guilds")
	// ErrTooManyChannels: CreateChannel in a guild that has its maximum of
	// channels.
	ErrTooManyChannels = errors.New("persistence: too many channels")
	// ErrLastChannel: DeleteChannel of a guild's only channel.
	ErrLastChannel = errors.New("persistence: last channel of the guild")
	// ErrInviteNotFound: JoinGuild with a code that does not exist, has
	// expired or is used up.
	ErrInviteNotFound = errors.New("persistence: invite not found")
	// ErrOwner: LeaveGuild or KickMember of the guild's owner, who cannot
	// leave.
	ErrOwner = errors.New("persistence: the guild's owner")
)

// GeneralChannel is the name of the channel that CreateGuild makes.
const GeneralChannel = "general"

// Guild is a group of users with text channels (protocol.md §3).
type Guild struct {
	ID        int64
	Name      string
	OwnerID   int64
	CreatedAt time.Time
	// Channels are the guild's channels, oldest first (CreatedAt, then ID).
	Channels []Channel
	// MemberCount counts the members, the owner included.
	MemberCount int
}

// Channel is a text channel of a guild. It is a room (its ID is the
// room's id, kind KindChannel): WriteMessages, MessageByID, History,
// Changes, Chats and MarkRead treat it as they treat a DM room.
type Channel struct {
	ID, GuildID int64
	Name        string
	// Seq is the number of the channel room's latest change (0: none).
	Seq       int64
	CreatedAt time.Time
}

// Invite lets users join a guild by its code.
type Invite struct {
	// Code is random and unique, chosen by the caller.
	Code               string
	GuildID, CreatedBy int64
	// MaxUses bounds the joins by this invite (0: no bound); Uses counts
	// them.
	MaxUses, Uses        int
	ExpiresAt, CreatedAt time.Time
}

// GuildStore is the part of Store behind guilds (protocol.md §3): guilds,
// their members, invites and channels. Names are the caller's to validate;
// the store enforces the limits that it is given, in the transaction that
// would exceed them (the package comment). A limit of 0 means no bound.
type GuildStore interface {
	// CreateGuild stores g (ID, Name, OwnerID, CreatedAt set by the caller),
	// makes the owner its first member and a first channel GeneralChannel
	// with id channelID, in one transaction, and returns the guild.
	// ErrTooManyGuilds when the owner is in maxGuilds guilds already;
	// ErrNotFound when the owner is not a user.
	CreateGuild(ctx context.Context, g Guild, channelID int64, maxGuilds int) (Guild, error)
	// Guild returns the guild with its channels and member count;
	// ErrNotFound when there is none.
	Guild(ctx context.Context, guildID int64) (Guild, error)
	// GuildsOf returns userID's guilds, oldest membership first (then by
	// guild id), each with its channels and member count; none for a user
	// in no guild or no user.
	GuildsOf(ctx context.Context, userID int64) ([]Guild, error)
	// IsMember reports whether userID is a member of guildID (false when
	// either does not exist).
	IsMember(ctx context.Context, guildID, userID int64) (bool, error)
	// GuildMemberIDs returns the ids of all of guildID's members, ascending
	// (at most the member limit): a channel room's state. ErrNotFound when
	// there is no such guild.
	GuildMemberIDs(ctx context.Context, guildID int64) ([]int64, error)
	// Members returns up to limit (> 0) of guildID's members whose ids are
	// above after, ordered by user id. ErrNotFound when there is no such
	// guild.
	Members(ctx context.Context, guildID, after int64, limit int) ([]User, error)
	// CreateInvite stores inv (Uses is stored as 0). inv.Code must be
	// unique: the caller makes it random. ErrNotFound when the guild or the
	// creator does not exist.
	CreateInvite(ctx context.Context, inv Invite) error
	// InviteByCode returns the invite with code, expired or used up or
	// not; ErrNotFound when there is none (its guild was deleted).
	InviteByCode(ctx context.Context, code string) (Invite, error)
	// JoinGuild makes userID a member of the invite's guild and counts a
	// use of the invite, in one transaction that cannot exceed maxMembers
	// or the invite's MaxUses however many joins race, and returns the
	// guild and joined = true. A user who is a member already gets the
	// guild and joined = false, consuming no use (even when the invite
	// has expired or is used up meanwhile: the join is idempotent).
	// ErrInviteNotFound when there is no such code, or it expired at or
	// before now, or it is used up; ErrGuildFull when the guild has
	// maxMembers members; ErrTooManyGuilds when userID is in maxGuilds
	// guilds; ErrNotFound when userID is not a user.
	JoinGuild(ctx context.Context, code string, userID int64, now time.Time, maxMembers, maxGuilds int) (g Guild, joined bool, err error)
	// LeaveGuild removes userID from guildID (and their read positions in
	// its channels). ErrOwner for the owner; ErrNotFound when userID is not
	// a member (or there is no such guild).
	LeaveGuild(ctx context.Context, guildID, userID int64) error
	// KickMember is LeaveGuild on the owner's behalf: ErrOwner when userID
	// is the owner; ErrNotFound when userID is not a member.
	KickMember(ctx context.Context, guildID, userID int64) error
	// RenameGuild sets the guild's name and returns the guild; ErrNotFound
	// when there is no such guild.
	RenameGuild(ctx context.Context, guildID int64, name string) (Guild, error)
	// DeleteGuild removes the guild, its channels (their rooms, messages
	// and read states), members and invites, in one transaction, and
	// returns the former members' ids, ascending. ErrNotFound when there is
	// no such guild. Afterwards a deleted channel is a room that does not
	// exist: History answers no messages, Changes none and current 0,
	// MessageByID and MarkRead ErrNotFound, a send to it is refused.
	DeleteGuild(ctx context.Context, guildID int64) ([]int64, error)
	// CreateChannel adds channel channelID named name, created at now, to
	// guildID and returns it. ErrTooManyChannels when the guild has
	// maxChannels channels; ErrNotFound when there is no such guild.
	CreateChannel(ctx context.Context, guildID, channelID int64, name string, now time.Time, maxChannels int) (Channel, error)
	// DeleteChannel removes the channel, its room's messages and read
	// states, and returns it as it was. ErrLastChannel when it is its
	// guild's only channel; ErrNotFound when there is no such channel.
	DeleteChannel(ctx context.Context, channelID int64) (Channel, error)
	// ChannelByID returns the channel; ErrNotFound when there is none.
	ChannelByID(ctx context.Context, channelID int64) (Channel, error)
}
