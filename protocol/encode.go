package protocol

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// WireTimeLayout is the time format on the wire: six fraction digits, no
// offset, in the server's zone.
const WireTimeLayout = "2006-01-02 15:04:05.000000"

// AppendFrame appends {"type":typ,"payload":payload,"nonce":nonce}; payload
// is raw JSON and nonce is left out when empty.
func AppendFrame(dst []byte, typ string, payload []byte, nonce string) []byte {
	dst = append(dst, `{"type":`...)
	dst = AppendString(dst, typ)
	dst = append(dst, `,"payload":`...)
	dst = append(dst, payload...)
	return appendNonce(dst, nonce)
}

func appendNonce(dst []byte, nonce string) []byte {
	if nonce != "" {
		dst = append(dst, `,"nonce":`...)
		dst = AppendString(dst, nonce)
	}
	return append(dst, '}')
}

// WithNonce returns a copy of frame, a frame AppendFrame or AppendChat made
// without a nonce, with nonce added: the echo of a broadcast event without
// encoding the event twice.
func WithNonce(frame []byte, nonce string) []byte {
	dst := make([]byte, 0, len(frame)+len(nonce)+12)
	return appendNonce(append(dst, frame[:len(frame)-1]...), nonce)
}

// ChatSize is room for a chat frame of content: AppendChat or AppendChatV2
// into a buffer of this capacity does not grow it unless the content needs
// escapes.
func ChatSize(content string) int { return 288 + len(content) }

// Frame encodes a frame whose payload is any JSON-marshalable value.
func Frame(typ string, payload any, nonce string) []byte {
	p, err := json.Marshal(payload)
	if err != nil {
		// Only our own types are marshaled here; failing is a bug.
		panic("protocol: " + err.Error())
	}
	return AppendFrame(make([]byte, 0, len(p)+len(typ)+len(nonce)+40), typ, p, nonce)
}

// ErrorFrame encodes {"type":"error","payload":{"code":c,"reason":r}}.
func ErrorFrame(e *Error, nonce string) []byte {
	dst := make([]byte, 0, 64+len(e.Reason)+len(nonce))
	dst = append(dst, `{"type":"error","payload":{"code":`...)
	dst = strconv.AppendInt(dst, int64(e.Code), 10)
	dst = append(dst, `,"reason":`...)
	dst = AppendString(dst, e.Reason)
	dst = append(dst, '}')
	return appendNonce(dst, nonce)
}

// OKFrame is {"type":"ok","payload":null}.
func OKFrame(nonce string) []byte {
	return AppendFrame(nil, "ok", []byte("null"), nonce)
}

// Chat is a message as the chat frames show it. Seq and EditSeq are its
// sequence numbers (protocol.md §4.1: the change that created it, its
// latest edit or delete, 0 when never edited), which only the v2 forms
// carry.
type Chat struct {
	ID, AuthorID, ChatID int64
	Content              string
	CreatedAt            time.Time
	EditedAt             *time.Time
	Seq, EditSeq         int64
}

// chatPrefix opens every chat frame, before its payload.
const chatPrefix = `{"type":"chat","payload":`

// AppendChat appends a chat frame as version 1 shows it:
// {"type":"chat","payload":{"type":kind,"id":…,"user_id":…,"chat_id":…,
// "content":…,"created_at":…[,"edited_at":…]}} with kind "send", "edit" or
// "load", times in loc; c.Seq and c.EditSeq are left out (protocol.md
// §2.9). It allocates nothing when dst has room: this is the encoding of
// every message and broadcast.
func AppendChat(dst []byte, kind string, c *Chat, loc *time.Location, nonce string) []byte {
	dst = append(dst, chatPrefix...)
	dst = appendChatPayload(dst, kind, c, loc, false)
	return appendNonce(dst, nonce)
}

// AppendChatV2 appends a chat frame as version 2 shows it: AppendChat's
// with "seq" and, when c.EditSeq is set, "edit_seq" last in the payload
// (protocol.md §4.1).
func AppendChatV2(dst []byte, kind string, c *Chat, loc *time.Location, nonce string) []byte {
	dst = append(dst, chatPrefix...)
	dst = appendChatPayload(dst, kind, c, loc, true)
	return appendNonce(dst, nonce)
}

// AppendChatPayloadV2 appends the payload of AppendChatV2's frame alone,
// the chat object of a v2 chats list's last_message.
func AppendChatPayloadV2(dst []byte, kind string, c *Chat, loc *time.Location) []byte {
	return appendChatPayload(dst, kind, c, loc, true)
}

func appendChatPayload(dst []byte, kind string, c *Chat, loc *time.Location, seqs bool) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, kind...)
	dst = append(dst, `","id":"`...)
	dst = strconv.AppendInt(dst, c.ID, 10)
	dst = append(dst, `","user_id":"`...)
	dst = strconv.AppendInt(dst, c.AuthorID, 10)
	dst = append(dst, `","chat_id":"`...)
	dst = strconv.AppendInt(dst, c.ChatID, 10)
	dst = append(dst, `","content":`...)
	dst = AppendString(dst, c.Content)
	dst = append(dst, `,"created_at":"`...)
	dst = c.CreatedAt.In(loc).AppendFormat(dst, WireTimeLayout)
	dst = append(dst, '"')
	if c.EditedAt != nil {
		dst = append(dst, `,"edited_at":"`...)
		dst = c.EditedAt.In(loc).AppendFormat(dst, WireTimeLayout)
		dst = append(dst, '"')
	}
	if seqs {
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendInt(dst, c.Seq, 10)
		if c.EditSeq != 0 {
			dst = append(dst, `,"edit_seq":`...)
			dst = strconv.AppendInt(dst, c.EditSeq, 10)
		}
	}
	return append(dst, '}')
}

const hex = "0123456789abcdef"

// AppendString appends s as a JSON string the way encoding/json writes it
// without HTML escaping: invalid UTF-8 becomes U+FFFD, and U+2028/U+2029
// are escaped so the output is also valid JavaScript.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// TypingFrame is the typing event of protocol.md §4.3:
// {"type":"typing","payload":{"chat_id":…,"user_id":…}}, user typing in
// chat.
func TypingFrame(chat, user int64) []byte {
	dst := make([]byte, 0, 96)
	dst = append(dst, `{"type":"typing","payload":{"chat_id":"`...)
	dst = strconv.AppendInt(dst, chat, 10)
	dst = append(dst, `","user_id":"`...)
	dst = strconv.AppendInt(dst, user, 10)
	return append(dst, `"}}`...)
}

// PresenceFrame is the presence event of protocol.md §4.4:
// {"type":"presence","payload":{"user_id":…,"status":…}}, status
// StatusOnline or StatusOffline.
func PresenceFrame(user int64, status string) []byte {
	dst := make([]byte, 0, 96)
	dst = append(dst, `{"type":"presence","payload":{"user_id":"`...)
	dst = strconv.AppendInt(dst, user, 10)
	dst = append(dst, `","status":`...)
	dst = AppendString(dst, status)
	return append(dst, `}}`...)
}
