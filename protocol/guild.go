package protocol

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rewind-chat/rewind/persistence"
)

// This file holds the frames of protocol.md §3, guilds (v2 only).

// KindChannel is a chats entry's kind for a guild channel (protocol.md §3,
// §4.1).
const KindChannel = "channel"

// MaxGuildName is the most characters a guild's or a channel's name has
// (protocol.md §3).
const MaxGuildName = 100

// GuildName is name as it is stored: trimmed of white space, and ok when
// it then has 1 to MaxGuildName characters and is valid UTF-8 without
// U+0000 (protocol.md §3; ErrGuildName otherwise).
func GuildName(name string) (string, bool) {
	name = strings.TrimSpace(name)
	n := utf8.RuneCountInString(name)
	return name, n >= 1 && n <= MaxGuildName && utf8.ValidString(name) && !strings.ContainsRune(name, 0)
}

// Channel is the channel object of protocol.md §3.
type Channel struct {
	ID      string `json:"id"`
	GuildID string `json:"guild_id"`
	Name    string `json:"name"`
	Seq     int64  `json:"seq"`
}

// ChannelOf is c as the wire shows it.
func ChannelOf(c persistence.Channel) Channel {
	return Channel{ID: strconv.FormatInt(c.ID, 10), GuildID: strconv.FormatInt(c.GuildID, 10), Name: c.Name, Seq: c.Seq}
}

// Guild is the guild object of protocol.md §3.
type Guild struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	OwnerID     string    `json:"owner_id"`
	CreatedAt   string    `json:"created_at"`
	Channels    []Channel `json:"channels"`
	MemberCount int       `json:"member_count"`
}

// GuildOf is g as the wire shows it, its time in loc; Channels is never
// nil, so it encodes as [].
func GuildOf(g persistence.Guild, loc *time.Location) Guild {
	out := Guild{
		ID: strconv.FormatInt(g.ID, 10), Name: g.Name, OwnerID: strconv.FormatInt(g.OwnerID, 10),
		CreatedAt: g.CreatedAt.In(loc).Format(WireTimeLayout), Channels: make([]Channel, len(g.Channels)),
		MemberCount: g.MemberCount,
	}
	for i, c := range g.Channels {
		out.Channels[i] = ChannelOf(c)
	}
	return out
}

// GuildsOf is gs as the wire shows them; never nil.
func GuildsOf(gs []persistence.Guild, loc *time.Location) []Guild {
	out := make([]Guild, len(gs))
	for i, g := range gs {
		out[i] = GuildOf(g, loc)
	}
	return out
}

// GuildFrame is the answer that is a guild object:
// {"type":"guild","payload":<guild>}.
func GuildFrame(g persistence.Guild, loc *time.Location, nonce string) []byte {
	return Frame("guild", GuildOf(g, loc), nonce)
}

// ChannelFrame is the answer that is a channel object:
// {"type":"guild","payload":<channel>}.
func ChannelFrame(c persistence.Channel, nonce string) []byte {
	return Frame("guild", ChannelOf(c), nonce)
}

// InviteFrame is the invite answer:
// {"type":"guild","payload":{"type":"invite","guild_id","code","expires_at"}}.
func InviteFrame(inv persistence.Invite, loc *time.Location, nonce string) []byte {
	return Frame("guild", struct {
		Type      string `json:"type"`
		GuildID   string `json:"guild_id"`
		Code      string `json:"code"`
		ExpiresAt string `json:"expires_at"`
	}{"invite", strconv.FormatInt(inv.GuildID, 10), inv.Code, inv.ExpiresAt.In(loc).Format(WireTimeLayout)}, nonce)
}

// MembersFrame is the members answer:
// {"type":"guild","payload":{"type":"members","guild_id","users":[user...]}}.
// users are as the session's version shows them.
func MembersFrame(guildID int64, users []User, nonce string) []byte {
	if users == nil {
		users = []User{}
	}
	return Frame("guild", struct {
		Type    string `json:"type"`
		GuildID string `json:"guild_id"`
		Users   []User `json:"users"`
	}{"members", strconv.FormatInt(guildID, 10), users}, nonce)
}

// The guild events of protocol.md §3 (GuildEvent's e).
const (
	GuildMemberJoin    = "member_join"
	GuildMemberLeave   = "member_leave"
	GuildRemoved       = "removed"
	GuildUpdate        = "update"
	GuildDelete        = "delete"
	GuildChannelCreate = "channel_create"
	GuildChannelDelete = "channel_delete"
)

// GuildEvent is the payload of a guild event frame:
// {"type":"guild","payload":{"type":E,"guild_id":…,…}} with user
// (member_join, member_leave), guild (update) or channel (channel_create,
// channel_delete); removed and delete carry guild_id alone.
type GuildEvent struct {
	Type    string   `json:"type"`
	GuildID string   `json:"guild_id"`
	User    *User    `json:"user,omitempty"`
	Guild   *Guild   `json:"guild,omitempty"`
	Channel *Channel `json:"channel,omitempty"`
}

// GuildEventFrame encodes a guild event (no nonce: events caused by
// others carry none).
func GuildEventFrame(e GuildEvent) []byte { return Frame("guild", e, "") }
