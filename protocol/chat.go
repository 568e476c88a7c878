package protocol

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/rewind-chat/rewind/persistence"
)

// ChatOf is message m of chat chatID as the chat frames show it, its
// sequence numbers included (which only the v2 forms write).
func ChatOf(m *persistence.Message, chatID int64) *Chat {
	return &Chat{
		ID: m.ID, AuthorID: m.AuthorID, ChatID: chatID, Content: m.Content,
		CreatedAt: m.CreatedAt, EditedAt: m.EditedAt, Seq: m.Seq, EditSeq: m.EditSeq,
	}
}

// KindDM is a chats entry's kind for a DM (protocol.md §4.1; KindChannel
// is §3's).
const KindDM = "dm"

// ChatEntry is one entry of a v2 chats list (the auth answer's "chats",
// and a load chats answer): protocol.md §4.1.
type ChatEntry struct {
	ChatID  string `json:"chat_id"`
	Kind    string `json:"kind"`
	Seq     int64  `json:"seq"`
	ReadSeq int64  `json:"read_seq"`
	Unread  int    `json:"unread"`
	// LastMessage is the chat object's payload (AppendChatPayloadV2) of
	// the newest message not deleted; nil encodes as null.
	LastMessage json.RawMessage `json:"last_message"`
}

// ChatsOf is chats, as persistence.Chats lists them, as the wire shows
// them, times in loc; never nil, so it encodes as []. A last message
// shows "type":"edit" once it was edited, "send" otherwise.
func ChatsOf(chats []persistence.ChatSummary, loc *time.Location) []ChatEntry {
	out := make([]ChatEntry, len(chats))
	for i := range chats {
		s := &chats[i]
		chatID, kind := s.Low^s.High, KindDM
		if s.GuildID != 0 { // a guild's channel: its chat_id is its room's id (protocol.md §3)
			chatID, kind = s.RoomID, KindChannel
		}
		out[i] = ChatEntry{ChatID: strconv.FormatInt(chatID, 10), Kind: kind, Seq: s.Seq, ReadSeq: s.ReadSeq, Unread: s.Unread}
		if m := s.LastMessage; m != nil {
			kind := "send"
			if m.EditSeq != 0 {
				kind = "edit"
			}
			out[i].LastMessage = AppendChatPayloadV2(make([]byte, 0, ChatSize(m.Content)), kind, ChatOf(m, chatID), loc)
		}
	}
	return out
}

// ReadFrame is the read event of protocol.md §4.2:
// {"type":"read","payload":{"chat_id":…,"user_id":…,"seq":…}}, user's
// read position in chat moved to seq.
func ReadFrame(chat, user, seq int64) []byte {
	dst := make([]byte, 0, 112)
	dst = append(dst, `{"type":"read","payload":{"chat_id":"`...)
	dst = strconv.AppendInt(dst, chat, 10)
	dst = append(dst, `","user_id":"`...)
	dst = strconv.AppendInt(dst, user, 10)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	return append(dst, `}}`...)
}
