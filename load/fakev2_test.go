package load

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/rewind-chat/rewind/protocol"
)

// fakeV2 is a simulated REWIND gateway speaking the parts of protocol v2
// the resume scenario uses, after protocol.md: heartbeat, auth (token
// "t<i>" is user uid(i); the answer lists the chats, §4.1), chat send and
// edit/delete (each takes the room's next seq; the echo, then the event
// to the other member's sessions), load changes (§4.1: sends after since
// with their current text, deleted ones left out, edits of older ones,
// in change order, pageSize frames a page, more while changes are left)
// and load chat (§2.4). Rooms are keyed by their ordered pair of members.
type fakeV2 struct {
	t        *testing.T
	srv      *httptest.Server
	pageSize int

	mu     sync.Mutex
	nextID int64
	conns  map[int64]map[*fakeConn]bool
	rooms  map[[2]int64]*fakeRoom
	// faults: lose says whether message m is kept from user to, live and
	// in changes; noEdits leaves the edits out of changes pages for user.
	lose    func(m *fakeMsg, to int64, online bool) bool
	noEdits func(user int64) bool
	// offlineSince: when each user's last session ended (absent: online
	// or never seen).
	offline map[int64]bool
}

type fakeRoom struct {
	seq  int64
	msgs []*fakeMsg // by id
}

type fakeMsg struct {
	id, author, chat, seq, editSeq int64
	content                        string
	deleted                        bool
	created                        time.Time
	// lostTo: the users lose kept this message from
	lostTo map[int64]bool
}

func (m *fakeMsg) change() int64 { return max(m.seq, m.editSeq) }

type fakeConn struct {
	c    net.Conn
	wmu  sync.Mutex
	user int64
}

func (c *fakeConn) send(p []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = wsutil.WriteServerMessage(c.c, ws.OpText, p)
}

// uid is the user id of account i.
func uid(i int) int64 { return 1<<40 + int64(i)*7919 }

func newFakeV2(t *testing.T) *fakeV2 {
	f := &fakeV2{t: t, pageSize: 500, nextID: 1 << 50, conns: map[int64]map[*fakeConn]bool{}, rooms: map[[2]int64]*fakeRoom{}, offline: map[int64]bool{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// url is the gateway URL the sessions dial.
func (f *fakeV2) url() string { return "ws" + strings.TrimPrefix(f.srv.URL, "http") + "/ws?v=2" }

func roomKey(a, b int64) [2]int64 { return [2]int64{min(a, b), max(a, b)} }

// chatV2 is a v2 chat frame of m: AppendChat's with seq (and edit_seq).
func chatV2(kind string, m *fakeMsg, nonce string) []byte {
	c := &protocol.Chat{ID: m.id, AuthorID: m.author, ChatID: m.chat, Content: m.content, CreatedAt: m.created}
	if m.editSeq != 0 {
		at := m.created
		c.EditedAt = &at
	}
	b := protocol.AppendChat(nil, kind, c, time.UTC, "")
	b = append(b[:len(b)-2:len(b)-2], `,"seq":`...)
	b = strconv.AppendInt(b, m.seq, 10)
	if m.editSeq != 0 {
		b = append(b, `,"edit_seq":`...)
		b = strconv.AppendInt(b, m.editSeq, 10)
	}
	b = append(b, "}}"...)
	if nonce != "" {
		b = protocol.WithNonce(b, nonce)
	}
	return b
}

type fakeReq struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
	Nonce   string          `json:"nonce"`
}

type fakePayload struct {
	Type    string  `json:"type"`
	Auth    string  `json:"auth"`
	ChatID  flexInt `json:"chat_id"`
	LoadID  flexInt `json:"load_id"`
	ID      flexInt `json:"id"`
	Content *string `json:"content"`
	Since   flexInt `json:"since"`
	Before  flexInt `json:"before"`
	Count   int     `json:"count"`
}

func (f *fakeV2) serve(w http.ResponseWriter, r *http.Request) {
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	c := &fakeConn{c: conn}
	defer func() {
		conn.Close()
		f.mu.Lock()
		if c.user != 0 {
			delete(f.conns[c.user], c)
			if len(f.conns[c.user]) == 0 {
				f.offline[c.user] = true
			}
		}
		f.mu.Unlock()
	}()
	for {
		p, op, err := wsutil.ReadClientData(conn)
		if err != nil {
			return
		}
		if op != ws.OpText {
			continue
		}
		var req fakeReq
		if json.Unmarshal(p, &req) != nil {
			continue
		}
		var pl fakePayload
		_ = json.Unmarshal(req.Payload, &pl)
		switch req.Type {
		case "heartbeat":
			c.send(protocol.AppendFrame(nil, "heartbeat", req.Payload, req.Nonce))
		case "auth":
			f.auth(c, pl, req.Nonce)
		case "chat":
			f.chat(c, pl, req.Nonce)
		case "load":
			f.load(c, pl, req.Nonce)
		}
	}
}

func (f *fakeV2) auth(c *fakeConn, pl fakePayload, nonce string) {
	i, err := strconv.Atoi(strings.TrimPrefix(pl.Auth, "t"))
	if err != nil {
		c.send(protocol.ErrorFrame(&protocol.Error{Code: 4000, Reason: "Token signature mismatch."}, nonce))
		return
	}
	me := uid(i)
	f.mu.Lock()
	c.user = me
	if f.conns[me] == nil {
		f.conns[me] = map[*fakeConn]bool{}
	}
	f.conns[me][c] = true
	delete(f.offline, me)
	var chats []map[string]any
	for key, room := range f.rooms {
		if (key[0] != me && key[1] != me) || room.seq == 0 {
			continue
		}
		var last json.RawMessage = []byte("null")
		unread := 0
		for _, m := range room.msgs {
			if !m.deleted {
				b := chatV2("send", m, "")
				last = b[len(`{"type":"chat","payload":`) : len(b)-1]
				if m.author != me {
					unread++
				}
			}
		}
		chats = append(chats, map[string]any{"chat_id": strconv.FormatInt(key[0]^key[1], 10), "kind": "dm",
			"seq": room.seq, "read_seq": 0, "unread": unread, "last_message": last})
	}
	f.mu.Unlock()
	list, _ := json.Marshal(chats)
	if chats == nil {
		list = []byte("[]")
	}
	// self_user first, as the server writes it (selfID reads it by place).
	payload := []byte(`{"self_user":{"id":"` + strconv.FormatInt(me, 10) + `","name":"u` + strconv.Itoa(i) + `","profile":null},` +
		`"mutual_requests":[],"sent_requests":[],"mutual_users":[],"chats":` + string(list) + `}`)
	c.send(protocol.AppendFrame(nil, "auth", payload, nonce))
}

func (f *fakeV2) room(me, chat int64) *fakeRoom {
	k := roomKey(me, chat^me)
	r := f.rooms[k]
	if r == nil {
		r = &fakeRoom{}
		f.rooms[k] = r
	}
	return r
}

func (f *fakeV2) chat(c *fakeConn, pl fakePayload, nonce string) {
	me, chat := c.user, int64(pl.ChatID)
	peer := chat ^ me
	f.mu.Lock()
	room := f.room(me, chat)
	var m *fakeMsg
	kind := pl.Type
	switch kind {
	case "send":
		f.nextID++
		room.seq++
		m = &fakeMsg{id: f.nextID, author: me, chat: chat, seq: room.seq, content: *pl.Content, created: time.Now()}
		room.msgs = append(room.msgs, m)
	case "edit":
		i := slices.IndexFunc(room.msgs, func(x *fakeMsg) bool { return x.id == int64(pl.ID) })
		if i < 0 || room.msgs[i].author != me || room.msgs[i].deleted {
			f.mu.Unlock()
			c.send(protocol.ErrorFrame(&protocol.Error{Code: 4004, Reason: "Message not exist."}, nonce))
			return
		}
		m = room.msgs[i]
		room.seq++
		m.editSeq, m.content, m.deleted = room.seq, *pl.Content, *pl.Content == ""
	}
	event := chatV2(kind, m, "")
	var to []*fakeConn
	online := len(f.conns[peer]) > 0
	if f.lose != nil && f.lose(m, peer, online) {
		if m.lostTo == nil {
			m.lostTo = map[int64]bool{}
		}
		m.lostTo[peer] = true
	} else if !m.lostTo[peer] {
		for pc := range f.conns[peer] {
			to = append(to, pc)
		}
	}
	// The echo, then the events, from under the room's lock: every
	// session gets the room's changes in their order.
	c.send(protocol.WithNonce(event, nonce))
	for _, pc := range to {
		pc.send(event)
	}
	f.mu.Unlock()
}

func (f *fakeV2) load(c *fakeConn, pl fakePayload, nonce string) {
	me, chat := c.user, int64(pl.LoadID)
	f.mu.Lock()
	defer f.mu.Unlock()
	room := f.room(me, chat)
	switch pl.Type {
	case "changes":
		since := int64(pl.Since)
		if since > room.seq {
			c.send(protocol.ErrorFrame(&protocol.Error{Code: 4000, Reason: "Invalid since."}, nonce))
			return
		}
		msgs := slices.Clone(room.msgs)
		slices.SortFunc(msgs, func(a, b *fakeMsg) int { return int(a.change() - b.change()) })
		n, last, more := 0, since, false
		for _, m := range msgs {
			if m.change() <= since {
				continue
			}
			if n == f.pageSize {
				more = true
				break
			}
			last = m.change()
			switch {
			case m.lostTo[me]:
			case m.seq > since && m.deleted:
			case m.seq > since:
				c.send(chatV2("send", m, nonce))
				n++
			case f.noEdits == nil || !f.noEdits(me):
				c.send(chatV2("edit", m, nonce))
				n++
			}
		}
		c.send(protocol.Frame("load", map[string]any{"type": "changes", "load_id": strconv.FormatInt(chat, 10), "seq": last, "count": n, "more": more}, nonce))
	case "chat":
		var page []*fakeMsg
		for _, m := range room.msgs {
			if !m.deleted && (pl.Before == 0 || m.id < int64(pl.Before)) {
				page = append(page, m)
			}
		}
		count := min(max(pl.Count, 1), 100)
		page = page[max(0, len(page)-count):]
		for _, m := range page {
			c.send(chatV2("load", m, nonce))
		}
		c.send(protocol.Frame("load", map[string]any{"type": "chat", "load_id": strconv.FormatInt(chat, 10), "count": len(page)}, nonce))
	}
}
