package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/rewind-chat/rewind/actors/guild"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/protocol"
)

// Guild requests (protocol.md §3, v2). create, invite and members are
// the session's own (a new guild has nothing to race; the others read);
// the changes of a guild go to its actor (actors/guild) as a
// messages.GuildOp, which answers the Reply.
//
// The session keeps the channels of its user's guilds (channels), loaded
// by its auth and kept by the guild answers and events it passes on, so
// that a chat or typing request names a channel's room at once (§3: a
// chat_id is first a channel of a guild I am in, then a DM). It is a
// hint, not the check: a channel's room checks its members itself, and a
// v2 chat_id that is not in it and is no DM reaches the channel's room
// through the DM's (actors/room), so a channel the session did not hear
// of still works.

// Guild request limits (protocol.md §3).
const (
	defaultInviteExpiry = 86400  // s
	maxInviteExpiry     = 604800 // s
	defaultMembers      = 100
	maxMembers          = 1000
)

// inviteCodeBytes: a code is its guild's id (8 bytes) and 12 random bytes
// (96 bits, protocol.md §3: at least 64), URL-safe base64 without
// padding. The id lets the session send a join to its guild's actor.
const inviteRandomBytes = 12

// newInviteCode makes an invite code of guild id.
func newInviteCode(id int64) (string, error) {
	b := make([]byte, 8+inviteRandomBytes)
	binary.BigEndian.PutUint64(b, uint64(id))
	if _, err := rand.Read(b[8:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// inviteGuild is the guild an invite code names; false for a string that
// is no code.
func inviteGuild(code string) (int64, bool) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(code)
	if err != nil || len(b) != 8+inviteRandomBytes {
		return 0, false
	}
	id := int64(binary.BigEndian.Uint64(b))
	return id, id > 0
}

// guildRequest is a guild request's payload.
type guildRequest struct {
	Type      string          `json:"type"`
	Name      *string         `json:"name"`
	GuildID   json.RawMessage `json:"guild_id"`
	UserID    json.RawMessage `json:"user_id"`
	ChannelID json.RawMessage `json:"channel_id"`
	Code      *string         `json:"code"`
	MaxUses   json.RawMessage `json:"max_uses"`
	ExpiresIn json.RawMessage `json:"expires_in"`
	After     json.RawMessage `json:"after"`
	Count     json.RawMessage `json:"count"`
}

func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// guildName is a request's name, trimmed, or ErrGuildName.
func guildName(name *string) (string, *protocol.Error) {
	if name == nil {
		return "", protocol.ErrGuildName
	}
	n, ok := protocol.GuildName(*name)
	if !ok {
		return "", protocol.ErrGuildName
	}
	return n, nil
}

// guildRequest answers a guild request, or routes it to its guild's actor.
func (a *Actor) guildRequest(req protocol.Request) *protocol.Error {
	var p guildRequest
	payload(req, &p)
	me, nonce := a.user.ID, req.Nonce
	op := &messages.GuildOp{Kind: p.Type, UserId: me, Session: a.self, Nonce: nonce}
	switch p.Type {
	case "create":
		name, err := guildName(p.Name)
		if err != nil {
			return err
		}
		return a.createGuild(name, nonce)
	case "join":
		if p.Code == nil || *p.Code == "" {
			return protocol.ErrNoCode
		}
		id, ok := inviteGuild(*p.Code)
		if !ok {
			return protocol.ErrInviteNotExist
		}
		op.GuildId, op.Name = id, *p.Code
		return a.toGuild(op)
	case "channel_delete":
		ch, ok := protocol.ParseID(p.ChannelID)
		if !ok {
			return protocol.ErrNoChannelID
		}
		op.Target = ch
		return a.channelDelete(op)
	case "invite", "members", "leave", "kick", "rename", "delete", "channel_create":
	default:
		return protocol.ErrGuildType
	}
	id, ok := protocol.ParseID(p.GuildID)
	if !ok {
		return protocol.ErrNoGuildID
	}
	op.GuildId = id
	switch p.Type {
	case "invite":
		return a.invite(id, p, nonce)
	case "members":
		return a.members(id, p, nonce)
	case "kick":
		if op.Target, ok = protocol.ParseID(p.UserID); !ok {
			return protocol.ErrNoUserID
		}
	case "rename", "channel_create":
		name, err := guildName(p.Name)
		if err != nil {
			return err
		}
		op.Name = name
	}
	return a.toGuild(op)
}

// toGuild hands op to its guild's actor, which answers it.
func (a *Actor) toGuild(op *messages.GuildOp) *protocol.Error {
	op.Seq = a.await(op.Nonce)
	a.waitingGuild = true
	a.deps.Directory.SendToGuild(op.GuildId, op)
	return nil
}

// channelDelete finds the channel's guild (off the actor) and hands op to
// that guild's actor; a channel that does not exist is answered here.
func (a *Actor) channelDelete(op *messages.GuildOp) *protocol.Error {
	op.Seq = a.await(op.Nonce)
	a.waitingGuild = true
	store, dir, log, timeout, self, root := a.deps.Store, a.deps.Directory, a.deps.Log, a.deps.StoreTimeout, a.self, a.root
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		ch, err := store.ChannelByID(c, op.Target)
		switch {
		case errors.Is(err, persistence.ErrNotFound):
			root.Send(self, &messages.Reply{Seq: op.Seq, Frames: errorFrames(protocol.ErrChannelNotExist, op.Nonce)})
		case err != nil:
			root.Send(self, &messages.Reply{Seq: op.Seq, Frames: answerErr(log, op.UserId, err, op.Nonce)})
		default:
			op.GuildId = ch.GuildID
			dir.SendToGuild(ch.GuildID, op)
		}
	}()
	return nil
}

// createGuild stores a new guild with its general channel.
func (a *Actor) createGuild(name, nonce string) *protocol.Error {
	me, store, log, loc, newID := a.user.ID, a.deps.Store, a.deps.Log, a.deps.Location, a.deps.NewID
	a.async(nonce, func(c context.Context) [][]byte {
		g, err := store.CreateGuild(c, persistence.Guild{ID: newID(), Name: name, OwnerID: me, CreatedAt: time.Now().Truncate(time.Microsecond)}, newID(), guild.MaxGuilds)
		if errors.Is(err, persistence.ErrTooManyGuilds) {
			return errorFrames(protocol.ErrTooManyGuilds, nonce)
		} else if err != nil {
			return answerErr(log, me, err, nonce)
		}
		return [][]byte{protocol.GuildFrame(g, loc, nonce)}
	})
	a.waitingGuild = true
	return nil
}

// isMember reports a guild that does not exist, or one that me is not
// in, as ErrGuildNotExist.
func isMember(c context.Context, store persistence.Store, guildID, me int64) error {
	ok, err := store.IsMember(c, guildID, me)
	switch {
	case err != nil:
		return err
	case !ok:
		return protocol.ErrGuildNotExist
	}
	return nil
}

// invite makes an invite of a guild I am in.
func (a *Actor) invite(guildID int64, p guildRequest, nonce string) *protocol.Error {
	maxUses, expiresIn := int64(0), int64(defaultInviteExpiry)
	if present(p.MaxUses) {
		n, ok := parseSeq(p.MaxUses)
		if !ok || n > 1<<31-1 {
			return protocol.ErrInvalidMaxUses
		}
		maxUses = n
	}
	if present(p.ExpiresIn) {
		n, ok := parseSeq(p.ExpiresIn)
		if !ok || n < 1 || n > maxInviteExpiry {
			return protocol.ErrInvalidExpiresIn
		}
		expiresIn = n
	}
	me, store, log, loc := a.user.ID, a.deps.Store, a.deps.Log, a.deps.Location
	a.async(nonce, func(c context.Context) [][]byte {
		if err := isMember(c, store, guildID, me); err != nil {
			return answerErr(log, me, err, nonce)
		}
		code, err := newInviteCode(guildID)
		if err != nil {
			return answerErr(log, me, err, nonce)
		}
		now := time.Now().Truncate(time.Microsecond)
		inv := persistence.Invite{
			Code: code, GuildID: guildID, CreatedBy: me, MaxUses: int(maxUses),
			ExpiresAt: now.Add(time.Duration(expiresIn) * time.Second), CreatedAt: now,
		}
		if err := store.CreateInvite(c, inv); errors.Is(err, persistence.ErrNotFound) {
			return errorFrames(protocol.ErrGuildNotExist, nonce)
		} else if err != nil {
			return answerErr(log, me, err, nonce)
		}
		return [][]byte{protocol.InviteFrame(inv, loc, nonce)}
	})
	return nil
}

// members answers a page of a guild's members, ordered by id.
func (a *Actor) members(guildID int64, p guildRequest, nonce string) *protocol.Error {
	var after int64
	if present(p.After) {
		var ok bool
		if after, ok = protocol.ParseID(p.After); !ok {
			return protocol.ErrInvalidAfter
		}
	}
	count := defaultMembers
	if present(p.Count) {
		n, ok := parseCount(string(p.Count))
		if !ok {
			return protocol.ErrInvalidCount
		}
		count = n
		if n == maxCount { // parseCount cuts at the history's bound
			if m, err := strconv.ParseInt(string(p.Count), 10, 64); err != nil || m > maxMembers {
				count = maxMembers
			} else {
				count = int(m)
			}
		}
	}
	me, store, log, rules := a.user.ID, a.deps.Store, a.deps.Log, a.rules
	a.async(nonce, func(c context.Context) [][]byte {
		if err := isMember(c, store, guildID, me); err != nil {
			return answerErr(log, me, err, nonce)
		}
		users, err := store.Members(c, guildID, after, count)
		if errors.Is(err, persistence.ErrNotFound) {
			return errorFrames(protocol.ErrGuildNotExist, nonce)
		} else if err != nil {
			return answerErr(log, me, err, nonce)
		}
		return [][]byte{protocol.MembersFrame(guildID, rules.users(users), nonce)}
	})
	return nil
}

// learnGuilds adds the channels of guilds to the session's.
func (a *Actor) learnGuilds(guilds []protocol.Guild) {
	for _, g := range guilds {
		gid, _ := strconv.ParseInt(g.ID, 10, 64)
		for _, ch := range g.Channels {
			if id, err := strconv.ParseInt(ch.ID, 10, 64); err == nil {
				a.channels[id] = gid
			}
		}
	}
}

// forgetGuild drops the channels of guild id.
func (a *Actor) forgetGuild(id int64) {
	for ch, g := range a.channels {
		if g == id {
			delete(a.channels, ch)
		}
	}
}

// guildFrame is a guild answer or event as the session reads it to keep
// its channels: the fields of a guild object, a channel object and an
// event at once.
type guildFrame struct {
	Payload struct {
		Type     string             `json:"type"`
		ID       string             `json:"id"`
		GuildID  string             `json:"guild_id"`
		Channels []protocol.Channel `json:"channels"`
		Name     string             `json:"name"`
		User     *protocol.User     `json:"user"`
		Channel  *protocol.Channel  `json:"channel"`
	} `json:"payload"`
}

// learnGuildFrame keeps the session's channels by a guild answer or event
// frame (rare: decoded in full).
func (a *Actor) learnGuildFrame(frame []byte) {
	var f guildFrame
	if json.Unmarshal(frame, &f) != nil {
		return
	}
	p := &f.Payload
	gid, _ := strconv.ParseInt(p.GuildID, 10, 64)
	me := strconv.FormatInt(a.user.ID, 10)
	switch {
	case p.Type == "" && p.Channels != nil: // a guild object (create, join, rename)
		a.learnGuilds([]protocol.Guild{{ID: p.ID, Channels: p.Channels}})
	case p.Type == "" && p.GuildID != "" && p.ID != "": // a channel object (channel_create)
		if id, err := strconv.ParseInt(p.ID, 10, 64); err == nil {
			a.channels[id] = gid
		}
	case p.Type == protocol.GuildChannelCreate && p.Channel != nil:
		if id, err := strconv.ParseInt(p.Channel.ID, 10, 64); err == nil {
			a.channels[id] = gid
		}
	case p.Type == protocol.GuildChannelDelete && p.Channel != nil:
		if id, err := strconv.ParseInt(p.Channel.ID, 10, 64); err == nil {
			delete(a.channels, id)
		}
	case p.Type == protocol.GuildRemoved, p.Type == protocol.GuildDelete,
		p.Type == protocol.GuildMemberLeave && p.User != nil && p.User.ID == me:
		a.forgetGuild(gid)
	}
}

// channelOf resolves chatID for a v2 read (load chat, load changes, read)
// by the store, as protocol.md §3 says: a channel of a guild me is in
// (found: true), ErrChannelNotExist for a channel of another guild, and
// found false (no error) when it is no channel: then it is a DM's.
func channelOf(c context.Context, store persistence.Store, me, chatID int64) (found bool, err error) {
	ch, err := store.ChannelByID(c, chatID)
	if errors.Is(err, persistence.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	ok, err := store.IsMember(c, ch.GuildID, me)
	switch {
	case err != nil:
		return false, err
	case !ok:
		return false, protocol.ErrChannelNotExist
	}
	return true, nil
}
