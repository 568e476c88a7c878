package session

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/protocol"
)

// chatKeys are the fields of a chat request, in the order chat reads them.
var chatKeys = []string{"type", "chat_id", "id", "content"}

// typingKeys are the fields of a typing request.
var typingKeys = []string{"chat_id"}

// readKeys are the fields of a read request.
var readKeys = []string{"chat_id", "seq"}

// Request rules of protocol.md §2 and §4.
const (
	maxContent    = 4000 // characters
	defaultCount  = 50
	maxCount      = 100
	maxProfileURL = 512
	maxChanges    = 500 // frames of a load changes page (§4.1)
	maxChats      = 200 // entries of a chats list (§4.1)
)

// handle answers one request, which arrived at at, or routes it to the
// actor that owns its state (then the session waits for that actor's Reply).
func (a *Actor) handle(req protocol.Request, at time.Time) *protocol.Error {
	switch req.Type {
	case "heartbeat":
		payload := []byte(req.Payload)
		if payload == nil {
			payload = []byte("null")
		}
		a.send(protocol.AppendFrame(nil, "heartbeat", payload, req.Nonce))
		return nil
	case "auth":
		return a.auth(req)
	case "chat", "load", "mutual_users", "user":
	case "typing", "read", "guild":
		if !a.rules.v2Requests {
			return protocol.ErrUnknownType
		}
	default:
		return protocol.ErrUnknownType
	}
	if !a.authed {
		return protocol.ErrAuthRequired
	}
	switch req.Type {
	case "chat":
		return a.chat(req, at)
	case "typing":
		return a.typing(req)
	case "read":
		return a.read(req)
	case "guild":
		return a.guildRequest(req)
	case "load":
		return a.load(req)
	case "mutual_users":
		return a.friendOp(req)
	default:
		return a.userRequest(req)
	}
}

// async answers a request with what read returns, read running in a
// goroutine with the store time limit: the session never waits on the
// store inside Receive, and the frames come back as the awaited Reply.
// read must not touch the actor's fields.
func (a *Actor) async(nonce string, read func(c context.Context) [][]byte) {
	seq := a.await(nonce)
	self, root, timeout := a.self, a.root, a.deps.StoreTimeout
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		root.Send(self, &messages.Reply{Seq: seq, Frames: read(c)})
	}()
}

// errorFrames is the answer of a read that failed with err.
func errorFrames(err *protocol.Error, nonce string) [][]byte {
	return [][]byte{protocol.ErrorFrame(err, nonce)}
}

// unavailable logs a store failure of userID's session and gives the
// answer for it.
func unavailable(log zerolog.Logger, userID int64, err error) *protocol.Error {
	log.Warn().Err(err).Int64("user", userID).Msg("session: store failed")
	return protocol.ErrUnavailable
}

// payload decodes a request's payload object into v; a payload that is not
// an object leaves v as it is.
func payload(req protocol.Request, v any) {
	if len(req.Payload) > 0 && req.Payload[0] == '{' {
		_ = json.Unmarshal(req.Payload, v)
	}
}

func (a *Actor) auth(req protocol.Request) *protocol.Error {
	if !a.beaten {
		a.send(protocol.ErrorFrame(protocol.ErrFirstBeat, req.Nonce))
		a.close(protocol.CloseHeartbeat, protocol.ReasonHeartbeat)
		return nil
	}
	var p struct {
		Auth string `json:"auth"`
	}
	payload(req, &p)
	if p.Auth == "" {
		return protocol.TokenRefused(auth.ErrTokenNotProvided.Reason)
	}
	a.resolve(p.Auth, req.Nonce, 1)
	return nil
}

// maxAuthAttempts bounds the checks of one auth's token that a logout of
// its user can make the session start again.
const maxAuthAttempts = 3

// resolve checks token and reads the user's lists off the actor; the
// session waits for the resolved answer.
func (a *Actor) resolve(token, nonce string, attempt int) {
	seq := a.await(nonce)
	self, root, deps, statuses, seqs := a.self, a.root, a.deps, a.rules.statuses, a.rules.seqs
	// Taken before the token is checked: a logout after this instant may
	// have revoked what the check finds valid (Directory.Attach).
	since := time.Now()
	go func() {
		c, cancel := context.WithTimeout(context.Background(), deps.StoreTimeout)
		defer cancel()
		r := &resolved{seq: seq, nonce: nonce, token: token, since: since, attempt: attempt}
		var te *auth.TokenError
		switch u, err := deps.Tokens.Resolve(c, token); {
		case errors.As(err, &te):
			r.err = protocol.TokenRefused(te.Reason)
		case err != nil:
			r.err = unavailable(deps.Log, 0, err)
		default:
			r.user = u
			if r.incoming, r.outgoing, r.friends, err = deps.Store.FriendLists(c, u.ID); err != nil {
				r.err = unavailable(deps.Log, u.ID, err)
				break
			}
			r.friendIDs = make([]int64, len(r.friends))
			for i, f := range r.friends {
				r.friendIDs[i] = f.ID
			}
			if seqs {
				chats, err := deps.Store.Chats(c, u.ID, 0, maxChats)
				if err != nil {
					r.err = unavailable(deps.Log, u.ID, err)
					break
				}
				r.chats = protocol.ChatsOf(chats, deps.Location)
				guilds, err := deps.Store.GuildsOf(c, u.ID)
				if err != nil {
					r.err = unavailable(deps.Log, u.ID, err)
					break
				}
				r.guilds = protocol.GuildsOf(guilds, deps.Location)
			}
			if statuses {
				r.online = deps.Directory.OnlineAmong(r.friendIDs)
			}
		}
		root.Send(self, r)
	}()
}

// resolved is what an auth request's reads found.
type resolved struct {
	seq                         uint64
	nonce, token                string
	since                       time.Time // when the token check began
	attempt                     int
	user                        persistence.User
	incoming, outgoing, friends []persistence.User
	friendIDs                   []int64              // told the user is online if this is its first session
	online                      map[int64]bool       // the friends online, for rules.statuses
	chats                       []protocol.ChatEntry // for rules.seqs
	guilds                      []protocol.Guild     // for rules.seqs (protocol.md §3)
	err                         *protocol.Error
}

// authenticated answers a resolved auth, attaching the session to its
// user the first time. The user may have logged out while the token was
// checked: then the session is not attached and checks the token again,
// which a revoked token fails (TestAuthDuringLogoutDoesNotSurvive in
// server). Past REWIND_WS_MAX_SESSIONS the auth is refused 4029 and the
// connection stays unauthenticated.
func (a *Actor) authenticated(r *resolved) {
	switch {
	case r.err != nil:
		a.send(protocol.ErrorFrame(r.err, r.nonce))
		return
	case a.authed && r.user.ID != a.user.ID:
		a.send(protocol.ErrorFrame(protocol.ErrAlreadyAuthed, r.nonce))
		return
	}
	if !a.authed {
		switch a.deps.Directory.Attach(r.user.ID, r.since, a.self, r.friendIDs) {
		case directory.TooManySessions:
			a.send(protocol.ErrorFrame(protocol.ErrTooManySessions, r.nonce))
			return
		case directory.LoggedOut:
			if r.attempt < maxAuthAttempts {
				a.resolve(r.token, r.nonce, r.attempt+1)
				return
			}
			a.send(protocol.ErrorFrame(protocol.ErrUnavailable, r.nonce))
			return
		}
		a.authed = true
	}
	a.user = r.user
	a.learnGuilds(r.guilds)
	a.send(protocol.Frame("auth", a.rules.authPayload(r.user, r.incoming, r.outgoing, r.friends, r.online, r.chats, r.guilds), r.nonce))
}

func (a *Actor) chat(req protocol.Request, at time.Time) *protocol.Error {
	// The hot path: read the fields in one flat pass rather than through
	// encoding/json.
	var v [4][]byte
	req.PayloadFields(chatKeys, v[:])
	typ, _ := protocol.String(v[0])
	if typ != "send" && typ != "edit" {
		return protocol.ErrChatType
	}
	chatID, ok := protocol.ParseID(v[1])
	if !ok {
		return protocol.ErrNoChatID
	}
	w := &messages.ChatWrite{ChatId: chatID, Author: a.user.ID, Nonce: req.Nonce, Session: a.self, ReceivedUnixNano: at.UnixNano(), Version: a.rules.version}
	if typ == "edit" {
		if w.MessageId, ok = protocol.ParseID(v[2]); !ok {
			return protocol.ErrNoMessageID
		}
	}
	content, ok := protocol.String(v[3])
	switch {
	case !ok || content == "" && typ == "send":
		return protocol.ErrNoContent
	case utf8.RuneCountInString(content) > maxContent:
		return protocol.ErrLongContent
	}
	w.Content = content
	if _, ok := a.channels[chatID]; ok && a.rules.v2Requests {
		// A channel of a guild I am in (protocol.md §3); its room
		// checks that I still am.
		key := messages.ChannelKey(chatID)
		w.RoomLow, w.RoomHigh, w.Channel = key.Low, key.High, true
		w.Seq = a.await(req.Nonce)
		a.deps.Directory.SendToRoom(key, w)
		return nil
	}
	other := chatID ^ a.user.ID
	if other <= 0 || other == a.user.ID {
		return protocol.ErrUserNotExist
	}
	key := messages.DMKey(a.user.ID, other)
	w.RoomLow, w.RoomHigh = key.Low, key.High
	w.Seq = a.await(req.Nonce)
	a.deps.Directory.SendToRoom(key, w)
	return nil
}

// typing hands a typing request (protocol.md §4.3, v2) to its DM's room,
// which refuses it as a send would be refused (4004, 4005), drops it when
// its author typed in the chat within the throttle interval, and tells
// the other member otherwise. It has no answer unless refused: the room
// answers a Reply without frames, which lets the session go on to the
// next request (awaitSilent).
func (a *Actor) typing(req protocol.Request) *protocol.Error {
	var v [1][]byte
	req.PayloadFields(typingKeys, v[:])
	chatID, ok := protocol.ParseID(v[0])
	if !ok {
		return protocol.ErrNoChatID
	}
	if _, ok := a.channels[chatID]; ok {
		key := messages.ChannelKey(chatID)
		m := &messages.Typing{RoomLow: key.Low, RoomHigh: key.High, ChatId: chatID, Author: a.user.ID, Nonce: req.Nonce, Session: a.self, Channel: true}
		m.Seq = a.awaitSilent(req.Nonce)
		a.deps.Directory.SendToRoom(key, m)
		return nil
	}
	other := chatID ^ a.user.ID
	if other <= 0 || other == a.user.ID {
		return protocol.ErrUserNotExist
	}
	key := messages.DMKey(a.user.ID, other)
	m := &messages.Typing{RoomLow: key.Low, RoomHigh: key.High, ChatId: chatID, Author: a.user.ID, Nonce: req.Nonce, Session: a.self}
	m.Seq = a.awaitSilent(req.Nonce)
	a.deps.Directory.SendToRoom(key, m)
	return nil
}

func (a *Actor) load(req protocol.Request) *protocol.Error {
	var p struct {
		Type     string          `json:"type"`
		LoadID   json.RawMessage `json:"load_id"`
		Datetime json.RawMessage `json:"datetime"`
		Before   json.RawMessage `json:"before"`
		Count    json.RawMessage `json:"count"`
		Since    json.RawMessage `json:"since"`
	}
	payload(req, &p)
	me, store, log, nonce, rules := a.user.ID, a.deps.Store, a.deps.Log, req.Nonce, a.rules
	switch p.Type {
	case "changes", "chats": // v2 (protocol.md §4.1)
		switch {
		case !rules.v2Requests:
			return protocol.ErrLoadType
		case p.Type == "changes":
			return a.loadChanges(nonce, p.LoadID, p.Since)
		}
		return a.loadChats(nonce, p.Before)
	case "mutual_users":
		a.async(nonce, func(c context.Context) [][]byte {
			friends, err := store.Friends(c, me)
			if err != nil {
				return errorFrames(unavailable(log, me, err), nonce)
			}
			return [][]byte{protocol.Frame("mutual_users", rules.users(friends), nonce)}
		})
		return nil
	case "chat":
	default:
		return protocol.ErrLoadType
	}
	chatID, ok := protocol.ParseID(p.LoadID)
	if !ok {
		return protocol.ErrNoLoadID
	}
	count := defaultCount
	if len(p.Count) > 0 && string(p.Count) != "null" {
		var ok bool
		if count, ok = parseCount(string(p.Count)); !ok {
			return protocol.ErrInvalidCount
		}
	}
	cursor := persistence.Cursor{Time: time.Now()}
	var before int64
	if len(p.Before) > 0 && string(p.Before) != "null" {
		if before, ok = protocol.ParseID(p.Before); !ok {
			return protocol.ErrInvalidBefore
		}
	} else if present(p.Datetime) {
		// A string of base64; "" is absent, as the shipped client may send.
		var raw string
		if json.Unmarshal(p.Datetime, &raw) != nil {
			return protocol.ErrInvalidDatetime
		}
		if raw != "" {
			t, err := protocol.ParseDatetime(raw, a.deps.Location)
			if err != nil {
				return protocol.ErrInvalidDatetime
			}
			cursor.Time = t
		}
	}
	other := chatID ^ me
	if other <= 0 || other == me {
		return protocol.ErrDMNotOpened
	}
	loc, v2 := a.deps.Location, rules.v2Requests
	a.async(nonce, func(c context.Context) [][]byte {
		var history []persistence.Message
		channel, err := false, error(nil)
		if v2 {
			channel, err = channelOf(c, store, me, chatID)
		}
		switch {
		case err != nil:
		case channel:
			history, err = roomHistory(c, store, chatID, before, cursor, count)
		default:
			history, err = readHistory(c, store, me, other, before, cursor, count)
		}
		if err != nil {
			if e := (*protocol.Error)(nil); errors.As(err, &e) {
				return errorFrames(e, nonce)
			}
			return errorFrames(unavailable(log, me, err), nonce)
		}
		frames := make([][]byte, 0, len(history)+1)
		for i := len(history) - 1; i >= 0; i-- {
			m := &history[i]
			frames = append(frames, rules.chat(nil, "load", protocol.ChatOf(m, chatID), loc, nonce))
		}
		return append(frames, protocol.Frame("load", struct {
			Type   string `json:"type"`
			LoadID string `json:"load_id"`
			Count  int    `json:"count"`
		}{"chat", strconv.FormatInt(chatID, 10), len(history)}, nonce))
	})
	return nil
}

// readHistory reads a page of the DM of me and other, newest first, before
// the message before (when not 0) or else before cursor. Its errors are a
// *protocol.Error to answer, or a store failure.
func readHistory(c context.Context, store persistence.Store, me, other, before int64, cursor persistence.Cursor, count int) ([]persistence.Message, error) {
	if _, err := store.UserByID(c, other); errors.Is(err, persistence.ErrNotFound) {
		return nil, protocol.ErrDMNotOpened
	} else if err != nil {
		return nil, err
	}
	roomID, err := store.FindDMRoom(c, me, other)
	switch {
	case errors.Is(err, persistence.ErrNotFound) && before != 0:
		return nil, protocol.ErrMessageNotExist
	case errors.Is(err, persistence.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return roomHistory(c, store, roomID, before, cursor, count)
}

// roomHistory reads a page of room roomID's history, as readHistory.
func roomHistory(c context.Context, store persistence.Store, roomID, before int64, cursor persistence.Cursor, count int) ([]persistence.Message, error) {
	if before != 0 {
		m, err := store.MessageByID(c, roomID, before)
		if errors.Is(err, persistence.ErrNotFound) {
			return nil, protocol.ErrMessageNotExist
		} else if err != nil {
			return nil, err
		}
		cursor = persistence.Cursor{Time: m.CreatedAt, ID: m.ID}
	}
	return store.History(c, roomID, cursor, count)
}

func (a *Actor) friendOp(req protocol.Request) *protocol.Error {
	var p struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	payload(req, &p)
	switch {
	case p.Name == "":
		return protocol.ErrNoName
	case p.Type != "request" && p.Type != "response" && p.Type != "remove" && p.Type != "delete":
		return protocol.ErrFriendType
	}
	op := &messages.FriendOp{Kind: p.Type, TargetName: p.Name, Session: a.self, Nonce: req.Nonce}
	op.Seq = a.await(req.Nonce)
	return a.toUser(op)
}

func (a *Actor) userRequest(req protocol.Request) *protocol.Error {
	var p map[string]json.RawMessage
	payload(req, &p)
	if raw, ok := p["profile"]; ok {
		var profile *string
		if json.Unmarshal(raw, &profile) != nil || profile != nil && !validProfile(*profile) {
			return protocol.ErrProfile
		}
		m := &messages.SetProfile{Profile: profile, Session: a.self, Nonce: req.Nonce}
		m.Seq = a.await(req.Nonce)
		return a.toUser(m)
	}
	var byID int64
	var byName string
	if raw, ok := p["id"]; ok {
		id, valid := protocol.ParseID(raw)
		if !valid {
			return protocol.ErrUserNotExist
		}
		byID = id
	} else if raw, ok := p["name"]; ok {
		if json.Unmarshal(raw, &byName) != nil || byName == "" {
			return protocol.ErrNoUserKey
		}
	} else {
		return protocol.ErrNoUserKey
	}
	me, store, log, nonce, rules := a.user.ID, a.deps.Store, a.deps.Log, req.Nonce, a.rules
	a.async(nonce, func(c context.Context) [][]byte {
		var u persistence.User
		var err error
		if byID != 0 {
			u, err = store.UserByID(c, byID)
		} else {
			u, err = store.UserByName(c, byName)
		}
		if errors.Is(err, persistence.ErrNotFound) {
			return errorFrames(protocol.ErrUserNotExist, nonce)
		} else if err != nil {
			return errorFrames(unavailable(log, me, err), nonce)
		}
		return [][]byte{protocol.Frame("user", rules.user(protocol.UserOf(u)), nonce)}
	})
	return nil
}

// toUser hands an awaited request to this user's actor, which exists while
// the session is attached.
func (a *Actor) toUser(msg any) *protocol.Error {
	if a.deps.Directory.SendToUser(a.user.ID, msg) {
		return nil
	}
	a.answered(a.waiting)
	return unavailable(a.deps.Log, a.user.ID, errors.New("session: no user actor for an attached session"))
}

func validProfile(s string) bool {
	if len(s) > maxProfileURL {
		return false
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// parseCount reads a history count (protocol.md §2.4): a JSON integer of at
// least 1, larger values (however large) cut to maxCount.
func parseCount(s string) (int, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) && s[0] != '-':
		return maxCount, true
	case err != nil || n <= 0:
		return 0, false
	}
	return int(min(n, maxCount)), true
}

// parseSeq reads a sequence number (protocol.md §4.1, §4.2): a JSON
// integer of at least 0, written as a number. A string, a fraction, an
// exponent or a sign other than the minus of a negative (refused) is not
// one, and neither is a number past int64.
func parseSeq(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 || raw[0] < '0' || raw[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil && n >= 0
}

// dmRoom is the DM room of me and other for the v2 reads: ErrDMNotOpened
// (as a *protocol.Error) when other is not a user; 0 when they have no
// room (they never were friends). A DM stays readable after they stop
// being friends.
func dmRoom(c context.Context, store persistence.Store, me, other int64) (int64, error) {
	if _, err := store.UserByID(c, other); errors.Is(err, persistence.ErrNotFound) {
		return 0, protocol.ErrDMNotOpened
	} else if err != nil {
		return 0, err
	}
	roomID, err := store.FindDMRoom(c, me, other)
	if errors.Is(err, persistence.ErrNotFound) {
		return 0, nil
	}
	return roomID, err
}

// chatRoom is the room of chatID for me's v2 reads (protocol.md §3):
// a channel of a guild I am in first (its room's id is chatID, channel
// true), then the DM of chatID XOR me (dmRoom). A channel of a guild I
// am not in is ErrChannelNotExist.
func chatRoom(c context.Context, store persistence.Store, me, chatID int64) (roomID int64, channel bool, err error) {
	if channel, err = channelOf(c, store, me, chatID); err != nil || channel {
		return chatID, channel, err
	}
	other := chatID ^ me
	if other <= 0 || other == me {
		return 0, false, protocol.ErrDMNotOpened
	}
	roomID, err = dmRoom(c, store, me, other)
	return roomID, false, err
}

// answerErr is the answer of a read that failed with err: its
// *protocol.Error, or 5000 for a store failure.
func answerErr(log zerolog.Logger, me int64, err error, nonce string) [][]byte {
	if e := (*protocol.Error)(nil); errors.As(err, &e) {
		return errorFrames(e, nonce)
	}
	return errorFrames(unavailable(log, me, err), nonce)
}

// loadChanges answers load changes (protocol.md §4.1, v2): the changes of
// the DM after since, in change order, a message created after since as a
// send (left out by the store once deleted), one created at or before it
// as an edit (empty content when deleted), then the end marker with the
// last change sent (since when none), the count and more. A page has at
// most maxChanges frames, and fewer when they would take more than half
// the connection's SendBytes: the answer is queued whole (Conn.SendAll),
// and must not overflow the queue by itself.
func (a *Actor) loadChanges(nonce string, loadID, sinceRaw json.RawMessage) *protocol.Error {
	chatID, ok := protocol.ParseID(loadID)
	if !ok {
		return protocol.ErrNoLoadID
	}
	since, ok := parseSeq(sinceRaw)
	if !ok {
		return protocol.ErrInvalidSince
	}
	me := a.user.ID
	if other := chatID ^ me; other <= 0 || other == me {
		return protocol.ErrDMNotOpened
	}
	store, log, rules, loc := a.deps.Store, a.deps.Log, a.rules, a.deps.Location
	maxBytes := a.deps.SendBytes / 2
	a.async(nonce, func(c context.Context) [][]byte {
		roomID, _, err := chatRoom(c, store, me, chatID)
		if err != nil {
			return answerErr(log, me, err, nonce)
		}
		var msgs []persistence.Message
		var current int64
		if roomID != 0 {
			if msgs, current, err = store.Changes(c, roomID, since, maxChanges+1); err != nil {
				return answerErr(log, me, err, nonce)
			}
		}
		if since > current {
			return errorFrames(protocol.ErrInvalidSince, nonce)
		}
		frames := make([][]byte, 0, min(len(msgs), maxChanges)+1)
		last, size := since, 0
		for i := range msgs {
			m := &msgs[i]
			kind := "edit"
			if m.Seq > since {
				kind = "send"
			}
			f := rules.chat(make([]byte, 0, protocol.ChatSize(m.Content)), kind, protocol.ChatOf(m, chatID), loc, nonce)
			if len(frames) == maxChanges || len(frames) > 0 && size+len(f) > maxBytes {
				break
			}
			frames, size, last = append(frames, f), size+len(f), m.ChangeSeq()
		}
		count := len(frames)
		return append(frames, protocol.Frame("load", struct {
			Type   string `json:"type"`
			LoadID string `json:"load_id"`
			Seq    int64  `json:"seq"`
			Count  int    `json:"count"`
			More   bool   `json:"more"`
		}{"changes", strconv.FormatInt(chatID, 10), last, count, count < len(msgs)}, nonce))
	})
	return nil
}

// loadChats answers load chats (protocol.md §4.1, v2): my next maxChats
// chats after the chat before (a chat_id; absent: from the newest), as
// the auth answer lists them. A before that is not a DM of mine is
// ErrDMNotOpened.
func (a *Actor) loadChats(nonce string, beforeRaw json.RawMessage) *protocol.Error {
	me := a.user.ID
	var other int64
	if len(beforeRaw) > 0 && string(beforeRaw) != "null" {
		before, ok := protocol.ParseID(beforeRaw)
		if !ok {
			return protocol.ErrInvalidBefore
		}
		if other = before ^ me; other <= 0 || other == me {
			return protocol.ErrDMNotOpened
		}
	}
	store, log, loc := a.deps.Store, a.deps.Log, a.deps.Location
	a.async(nonce, func(c context.Context) [][]byte {
		var roomID int64
		if other != 0 {
			channel, err := channelOf(c, store, me, other^me)
			switch {
			case err != nil:
				return answerErr(log, me, err, nonce)
			case channel:
				roomID = other ^ me
			}
		}
		if other != 0 && roomID == 0 {
			var err error
			if roomID, err = store.FindDMRoom(c, me, other); errors.Is(err, persistence.ErrNotFound) {
				return errorFrames(protocol.ErrDMNotOpened, nonce)
			} else if err != nil {
				return answerErr(log, me, err, nonce)
			}
		}
		chats, err := store.Chats(c, me, roomID, maxChats)
		if errors.Is(err, persistence.ErrNotFound) {
			return errorFrames(protocol.ErrDMNotOpened, nonce)
		} else if err != nil {
			return answerErr(log, me, err, nonce)
		}
		return [][]byte{protocol.Frame("chats", protocol.ChatsOf(chats, loc), nonce)}
	})
	return nil
}

// read moves my read position in a DM (protocol.md §4.2, v2) and answers
// ok. When it moved, my other sessions and the other member's get the
// read event (EventRead, which v1 rules drop), sent from the read's
// goroutine before the answer; a seq at or below the position is ok and
// tells nobody. Beyond the chat's seq, or not a number of at least 0:
// ErrInvalidSeq; a chat that is not a DM of an existing other member,
// or one that has no room: ErrDMNotOpened.
func (a *Actor) read(req protocol.Request) *protocol.Error {
	var v [2][]byte
	req.PayloadFields(readKeys, v[:])
	chatID, ok := protocol.ParseID(v[0])
	if !ok {
		return protocol.ErrNoChatID
	}
	seq, ok := parseSeq(v[1])
	if !ok {
		return protocol.ErrInvalidSeq
	}
	me := a.user.ID
	other := chatID ^ me
	if other <= 0 || other == me {
		return protocol.ErrDMNotOpened
	}
	store, log, dir, self, nonce := a.deps.Store, a.deps.Log, a.deps.Directory, a.self, req.Nonce
	a.async(nonce, func(c context.Context) [][]byte {
		roomID, channel, err := chatRoom(c, store, me, chatID)
		switch {
		case err != nil:
			return answerErr(log, me, err, nonce)
		case roomID == 0:
			return errorFrames(protocol.ErrDMNotOpened, nonce)
		}
		readSeq, moved, err := store.MarkRead(c, me, roomID, seq)
		switch {
		case errors.Is(err, persistence.ErrSeqAhead):
			return errorFrames(protocol.ErrInvalidSeq, nonce)
		case errors.Is(err, persistence.ErrNotFound):
			return errorFrames(protocol.ErrDMNotOpened, nonce)
		case err != nil:
			return answerErr(log, me, err, nonce)
		}
		if moved {
			frame := protocol.ReadFrame(chatID, me, readSeq)
			dir.SendToUser(me, &messages.Deliver{Frame: frame, Kind: messages.EventRead, Except: self})
			if !channel { // in a channel nobody else gets it (protocol.md §4.2)
				dir.SendToUser(other, &messages.Deliver{Frame: frame, Kind: messages.EventRead})
			}
		}
		return [][]byte{protocol.OKFrame(nonce)}
	})
	return nil
}
