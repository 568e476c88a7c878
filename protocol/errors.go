package protocol

import "strconv"

// This file is the one table of the WebSocket protocol's errors and close
// codes (protocol.md §2): every error frame a session, user or room actor
// answers, and every close a session makes, is defined here and nowhere
// else. The reasons are the exact texts of protocol.md, byte for byte: the
// shipped client and the tests compare them.

// Error is an error frame's code and reason (protocol.md §2.1), encoded by
// ErrorFrame.
type Error struct {
	Code   int
	Reason string
}

func (e *Error) Error() string { return strconv.Itoa(e.Code) + " " + e.Reason }

// §2.1 Frames: a frame the session does not accept. The connection stays
// open.
var (
	ErrBinary        = &Error{1003, "Binary data not supported."}
	ErrNotJSON       = &Error{1007, "Data should be JSON."}
	ErrFrameTooLarge = &Error{1009, "Frame too large."}
	ErrInvalid       = &Error{4000, "Invalid request."} // no or empty type, a bad nonce, \u0000
	ErrUnknownType   = &Error{4000, "Unknown type."}
)

// §2.1 Error codes any request may get: the store could not apply it.
var (
	// ErrUnavailable (5000): nothing was applied; the client may retry.
	ErrUnavailable = &Error{5000, "The server could not apply the request; nothing was applied."}
	// ErrUnknownResult (5001): the write may have been applied; a retry
	// with the same nonce stores it or answers the stored message.
	ErrUnknownResult = &Error{5001, "Outcome unknown; retry with the same nonce."}
)

// §2.2 Lifecycle: heartbeat and auth.
var (
	ErrFirstBeat     = &Error{4003, "First heartbeat payload was not received."} // then closed with CloseHeartbeat
	ErrAlreadyAuthed = &Error{4000, "Already authenticated."}                    // a token of another user
	ErrAuthRequired  = &Error{4001, "Authentication required."}                  // any other type before auth
)

// TokenRefused is the error 4000 of §2.2 for a token that auth refuses,
// reason being the auth.TokenError's: auth defines those four texts once
// (not provided, signature mismatch, expired, invalid payload), since the
// HTTP API answers them too, with 401.
func TokenRefused(reason string) *Error { return &Error{4000, reason} }

// §2.3 chat: direct messages.
var (
	ErrChatType        = &Error{4000, "Unknown chat type."}
	ErrNoChatID        = &Error{4000, "chat_id is not provided."}
	ErrNoMessageID     = &Error{4000, "id is not provided."}
	ErrNoContent       = &Error{4000, "content is not provided."}
	ErrLongContent     = &Error{4000, "content is too long."}
	ErrUserNotExist    = &Error{4004, "User not exist."} // the other member; also §2.6
	ErrMessageNotExist = &Error{4004, "Message not exist."}
	ErrNotMutual       = &Error{4005, "Not a mutual user."}
	ErrNotAuthor       = &Error{4005, "Not the author."}
)

// §2.4 load: history and the friends list.
var (
	ErrLoadType        = &Error{4000, "Unknown load type."}
	ErrNoLoadID        = &Error{4000, "load_id is not provided."}
	ErrInvalidDatetime = &Error{4000, "Invalid datetime."}
	ErrInvalidBefore   = &Error{4000, "Invalid before."}
	ErrInvalidCount    = &Error{4000, "Invalid count."}
	ErrDMNotOpened     = &Error{4004, "provided DM is not opened."} // also load changes, load chats and read (v2)
)

// §4.1, §4.2 (v2): catch-up and read state. A chat that is not a DM of an
// existing other member is ErrDMNotOpened, as for load chat; load changes
// and load chats are unknown load types (ErrLoadType) to v1, read an
// unknown type.
var (
	ErrInvalidSince = &Error{4000, "Invalid since."} // load changes: since missing, not an integer, negative or beyond the chat's seq
	ErrInvalidSeq   = &Error{4000, "Invalid seq."}   // read: seq missing, not an integer, negative or beyond the chat's seq
)

// §2.5 mutual_users: friends.
var (
	ErrFriendType        = &Error{4000, "Unknown mutual_users type."}
	ErrNoName            = &Error{4000, "name is not provided."}
	ErrTargetSelf        = &Error{4000, "cannot target yourself."}
	ErrAlreadyFriend     = &Error{4000, "select named user is already friend."}
	ErrNamedUserNotExist = &Error{4004, "select named user is not exist."}
	ErrNotRequested      = &Error{4004, "targeted name was not requested."}
	ErrNotFriend         = &Error{4004, "select named user was not friend."}
)

// §2.6 user (an unknown user is ErrUserNotExist).
var (
	ErrNoUserKey = &Error{4000, "id or name is not provided."}
	ErrProfile   = &Error{4000, "profile must be an http or https URL of at most 512 bytes."}
)

// §2.7 Limits: the request was dropped, not applied.
var (
	ErrRateLimited     = &Error{4029, "rate limited."}
	ErrTooManySessions = &Error{4029, "Too many sessions."} // an auth past REWIND_WS_MAX_SESSIONS
)

// §2.1 Close codes, with their reasons, that sessions close with. The
// gateway closes with the RFC 6455 codes it finds itself (1001, 1002,
// 1007, 1009) and with 4009 for a write that timed out: net/gateway, a
// transport that knows no chat protocol, keeps its own CloseSlowConsumer
// and SlowConsumerReason, which TestGatewaySlowConsumerIsCloseSlow holds
// equal to CloseSlow and ReasonSlow.
const (
	CloseLoggedOut   = 4000 // the user logged out (on another device)
	CloseAuthTimeout = 4001 // no successful auth within REWIND_WS_AUTH_TIMEOUT
	CloseHeartbeat   = 4003 // heartbeat deadline passed, or auth before the first heartbeat
	CloseRateLimited = 4008 // over the rate limit for 10 s
	CloseSlow        = 4009 // the outbound queue overflowed
	// CloseInternal is RFC 6455's 1011, not in protocol.md: the session
	// actor failed.
	CloseInternal = 1011

	ReasonLoggedOut   = "Logged out elsewhere."
	ReasonAuthTimeout = "Authentication timed out."
	ReasonHeartbeat   = "Heartbeat missing. Websocket session closed."
	ReasonRateLimit   = "Rate limit exceeded."
	ReasonSlow        = "Slow consumer."
	ReasonInternal    = "Internal error."
)

// §3 guilds (v2). A guild that does not exist and one the user is not in
// are one answer (ErrGuildNotExist), as are a channel that does not exist
// and one of a guild the user is not in (ErrChannelNotExist): a
// non-member learns nothing, content least of all. A name (a guild's, a
// channel's) is 1 to 100 characters once trimmed of white space, valid
// UTF-8 without U+0000 (GuildName); any other is ErrGuildName. The
// request fields the section names get their own 4000 when missing or
// malformed.
var (
	ErrGuildType        = &Error{4000, "Unknown guild type."}
	ErrGuildName        = &Error{4000, "name must be 1 to 100 characters."}
	ErrNoGuildID        = &Error{4000, "guild_id is not provided."}
	ErrNoChannelID      = &Error{4000, "channel_id is not provided."}
	ErrNoUserID         = &Error{4000, "user_id is not provided."}
	ErrNoCode           = &Error{4000, "code is not provided."}
	ErrInvalidMaxUses   = &Error{4000, "Invalid max_uses."}
	ErrInvalidExpiresIn = &Error{4000, "Invalid expires_in."}
	ErrInvalidAfter     = &Error{4000, "Invalid after."}
	ErrGuildFull        = &Error{4000, "Guild is full."}
	ErrTooManyGuilds    = &Error{4000, "Too many guilds."}
	ErrTooManyChannels  = &Error{4000, "Too many channels."}
	ErrLastChannel      = &Error{4000, "Cannot delete the last channel."}
	ErrGuildNotExist    = &Error{4004, "Guild not exist."}
	ErrInviteNotExist   = &Error{4004, "Invite not exist."}
	ErrChannelNotExist  = &Error{4004, "Channel not exist."}
	ErrNotOwner         = &Error{4005, "Not the owner."}
	ErrOwnerCannotLeave = &Error{4005, "Owner cannot leave."}
)
