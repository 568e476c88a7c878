package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres/pgtest"
)

// Chat sequence numbers, catch-up, the chats list and read state of
// protocol v2 (protocol.md §4.1, §4.2), over real WebSockets on both
// stores: a client that was away catches up with load changes and ends
// with the history a fresh load gives; the numbers the echoes carry are
// the committed ones, unique and without gaps, under concurrent senders
// and a database fault; reads move forward only and tell the user's other
// devices and the other member's v2 sessions, never a v1 one.

// v1Payload is a v2 chat frame's payload as version 1 shows it: without
// seq (which it must have) and edit_seq (protocol.md §2.9, §4.1).
func v1Payload(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	p := payloadOf(t, raw)
	require.Contains(t, p, "seq", "a v2 chat object carries its seq: %s", raw)
	delete(p, "seq")
	delete(p, "edit_seq")
	return p
}

// v2Chat is a v2 chat frame's payload.
type v2Chat struct {
	Type     string  `json:"type"`
	ID       string  `json:"id"`
	UserID   string  `json:"user_id"`
	ChatID   string  `json:"chat_id"`
	Content  string  `json:"content"`
	EditedAt *string `json:"edited_at"`
	Seq      *int64  `json:"seq"`
	EditSeq  *int64  `json:"edit_seq"`
}

// change is the number of c's latest change: edit_seq, or else seq.
func (c v2Chat) change() int64 {
	if c.EditSeq != nil {
		return *c.EditSeq
	}
	return *c.Seq
}

// v2ChatOf decodes a v2 chat frame and checks that it carries its seq,
// and edit_seq exactly when it was edited.
func v2ChatOf(t *testing.T, f client.Frame) v2Chat {
	t.Helper()
	require.Equal(t, "chat", f.Type, "%s %s", f.Type, f.Payload)
	var c v2Chat
	require.NoError(t, f.Decode(&c))
	require.NotNil(t, c.Seq, "no seq: %s", f.Payload)
	require.Positive(t, *c.Seq, "%s", f.Payload)
	require.Equal(t, c.EditedAt != nil, c.EditSeq != nil, "edit_seq once edited, and only then: %s", f.Payload)
	if c.EditSeq != nil {
		require.Greater(t, *c.EditSeq, *c.Seq, "%s", f.Payload)
	}
	return c
}

// chatOp is one chat request: a send (id empty) or an edit of id (a
// delete when content is empty).
type chatOp struct{ id, content string }

func (o chatOp) payload(dm string) map[string]string {
	if o.id == "" {
		return sendPayload(dm, o.content)
	}
	return map[string]string{"type": "edit", "chat_id": dm, "id": o.id, "content": o.content}
}

// pipeline sends ops on c, up to 32 in flight, and returns their echoes
// in order; frames without one of their nonces (events) are skipped.
func pipeline(t *testing.T, c *client.Client, dm string, ops []chatOp) []v2Chat {
	t.Helper()
	const window = 32
	out := make([]v2Chat, 0, len(ops))
	nonces := make([]string, len(ops))
	sent := 0
	ctx, cancel := context.WithTimeout(context.Background(), 6*wait)
	defer cancel()
	for len(out) < len(ops) {
		for sent < len(ops) && sent-len(out) < window {
			nonces[sent] = c.NewNonce()
			require.NoError(t, c.Send("chat", ops[sent].payload(dm), nonces[sent]))
			sent++
		}
		f, err := c.Next(ctx)
		require.NoError(t, err, "after %d of %d echoes", len(out), len(ops))
		if f.Nonce == "" {
			continue
		}
		require.Equal(t, nonces[len(out)], f.Nonce, "answers in request order")
		m := v2ChatOf(t, f)
		o := ops[len(out)]
		require.Equal(t, o.content, m.Content, "op %d", len(out))
		if o.id != "" {
			require.Equal(t, o.id, m.ID)
			require.Equal(t, "edit", m.Type)
		}
		out = append(out, m)
	}
	return out
}

// dmState is what the echoes tell of a DM: each message's content,
// numbers and whether it is deleted.
type dmState struct {
	seq  int64 // the latest change
	msgs map[string]*v2Chat
}

func newDMState() *dmState { return &dmState{msgs: map[string]*v2Chat{}} }

func (s *dmState) take(echoes []v2Chat) {
	for _, e := range echoes {
		e := e
		s.msgs[e.ID] = &e
		s.seq = max(s.seq, e.change())
	}
}

// unread is what a chats entry of reader (who wrote none of them) counts
// after read position from.
func (s *dmState) unread(from int64) int {
	n := 0
	for _, m := range s.msgs {
		if m.Content != "" && *m.Seq > from {
			n++
		}
	}
	return n
}

// view is id → content of the messages not deleted.
func (s *dmState) view() map[string]string {
	v := map[string]string{}
	for id, m := range s.msgs {
		if m.Content != "" {
			v[id] = m.Content
		}
	}
	return v
}

// chatEntry is an entry of a v2 chats list.
type chatEntry struct {
	ChatID      string          `json:"chat_id"`
	Kind        string          `json:"kind"`
	Seq         int64           `json:"seq"`
	ReadSeq     int64           `json:"read_seq"`
	Unread      int             `json:"unread"`
	LastMessage json.RawMessage `json:"last_message"`
}

// authChats reads a v2 auth answer's chats.
func authChats(t *testing.T, auth json.RawMessage) []chatEntry {
	t.Helper()
	var p struct {
		Chats *[]chatEntry `json:"chats"`
	}
	require.NoError(t, json.Unmarshal(auth, &p), "%s", auth)
	require.NotNil(t, p.Chats, "a v2 auth answer lists its chats: %s", auth)
	return *p.Chats
}

// entryOf is chat's entry of chats; it must be there.
func entryOf(t *testing.T, chats []chatEntry, chat string) chatEntry {
	t.Helper()
	for _, e := range chats {
		if e.ChatID == chat {
			require.Equal(t, "dm", e.Kind)
			return e
		}
	}
	require.Failf(t, "chat not listed", "%s in %+v", chat, chats)
	return chatEntry{}
}

// changesEnd is a load changes end marker.
type changesEnd struct {
	Type   string `json:"type"`
	LoadID string `json:"load_id"`
	Seq    int64  `json:"seq"`
	Count  int    `json:"count"`
	More   bool   `json:"more"`
}

// loadChanges asks for one page of dm's changes after since and checks
// it: chat frames in change order, all after since, a send exactly for a
// message created after since, then the end marker naming the last.
func loadChanges(t *testing.T, c *client.Client, dm string, since int64) ([]v2Chat, changesEnd) {
	t.Helper()
	frames, err := c.Collect(ctxWait(t), "load", map[string]any{"type": "changes", "load_id": dm, "since": since},
		func(f client.Frame) bool { return f.Type == "load" })
	require.NoError(t, err)
	last := frames[len(frames)-1]
	_, isErr := last.AsError()
	require.False(t, isErr, "load changes answered %s", last.Payload)
	var end changesEnd
	require.NoError(t, last.Decode(&end))
	require.Equal(t, changesEnd{Type: "changes", LoadID: dm, Seq: end.Seq, Count: len(frames) - 1, More: end.More}, end)
	items := make([]v2Chat, 0, len(frames)-1)
	prev := since
	for _, f := range frames[:len(frames)-1] {
		m := v2ChatOf(t, f)
		require.Equal(t, dm, m.ChatID)
		require.Greater(t, m.change(), prev, "changes in change order, after since: %s", f.Payload)
		prev = m.change()
		if *m.Seq > since {
			require.Equal(t, "send", m.Type, "created after since: %s", f.Payload)
			require.NotEmpty(t, m.Content, "a message deleted by now is left out: %s", f.Payload)
		} else {
			require.Equal(t, "edit", m.Type, "created before since: %s", f.Payload)
			require.NotNil(t, m.EditedAt)
		}
		items = append(items, m)
	}
	require.Equal(t, prev, end.Seq, "the end marker's seq is the last change sent, or since")
	return items, end
}

// catchUp loads dm's changes from since, page after page while more,
// applies them to view and returns the position reached and the pages'
// sizes.
func catchUp(t *testing.T, c *client.Client, dm string, since int64, view map[string]string) (int64, []int) {
	t.Helper()
	var pages []int
	for {
		items, end := loadChanges(t, c, dm, since)
		pages = append(pages, len(items))
		for _, m := range items {
			if m.Content == "" {
				delete(view, m.ID)
			} else {
				view[m.ID] = m.Content
			}
		}
		since = end.Seq
		if !end.More {
			return since, pages
		}
		require.NotEmpty(t, items, "more with an empty page")
	}
}

// historyView is id → content of dm's whole history, loaded afresh.
func historyView(t *testing.T, c *client.Client, dm string) map[string]string {
	t.Helper()
	v := map[string]string{}
	for _, m := range fullHistory(t, c, dm) {
		v[m.ID] = m.Content
	}
	return v
}

// TestV2CatchUpAfterOffline: a v2 client sees 20 messages live, marks
// them read and goes away; meanwhile the other side sends, edits and
// deletes (880 changes, old messages among them), and, in one variant,
// the server restarts. Back, the client's auth answer lists the DM at
// its new seq with the unread count, and load changes from its position,
// paged, gives it the history a fresh load chat gives, edits and deletes
// included.
func TestV2CatchUpAfterOffline(t *testing.T) {
	for _, v := range []struct {
		name    string
		restart bool
	}{
		{"live", false},
		{"restart", true},
	} {
		t.Run(v.name, func(t *testing.T) {
			stores(t, func(t *testing.T, db string) {
				n := startNode(t, db, noRateLimit)
				a, b := n.newAccount("talker"), n.newAccount("away")
				n.makeFriends(a, b)
				dm := chatID(a, b)
				ca, _ := n.connect(a, 2)
				cb, _ := n.connect(b, 2)

				state := newDMState()
				var ops []chatOp
				for i := range 20 {
					ops = append(ops, chatOp{content: fmt.Sprintf("before %d", i)})
				}
				state.take(pipeline(t, ca, dm, ops))
				view := map[string]string{}
				var pos int64
				for len(view) < 20 {
					f := next(t, cb)
					if f.Type != "chat" {
						continue // presence
					}
					m := v2ChatOf(t, f)
					require.Equal(t, "send", m.Type)
					view[m.ID], pos = m.Content, m.change()
				}
				require.Equal(t, state.seq, pos)
				require.Equal(t, "ok", call(t, cb, "read", map[string]any{"chat_id": dm, "seq": pos}).Type)
				cb.Close()

				// 880 changes while b is away: sends, edits and deletes of
				// old and new messages, an edited message deleted; 665
				// messages changed after b's position, so more than a
				// page.
				old := slices.Sorted(maps.Keys(state.msgs))
				ops = ops[:0]
				for i := range 600 {
					ops = append(ops, chatOp{content: fmt.Sprintf("away %d", i)})
				}
				echoes := pipeline(t, ca, dm, ops)
				state.take(echoes)
				ops = ops[:0]
				for i, id := range old[:10] {
					ops = append(ops, chatOp{id: id, content: fmt.Sprintf("old edited %d", i)})
				}
				for i, e := range echoes[:90] {
					ops = append(ops, chatOp{id: e.ID, content: fmt.Sprintf("new edited %d", i)})
				}
				for _, id := range old[5:10] { // edited, then deleted
					ops = append(ops, chatOp{id: id})
				}
				for _, id := range old[10:15] {
					ops = append(ops, chatOp{id: id})
				}
				for _, e := range echoes[80:130] { // 10 edited among them
					ops = append(ops, chatOp{id: e.ID})
				}
				for i := range 100 {
					ops = append(ops, chatOp{content: fmt.Sprintf("late %d", i)})
				}
				state.take(pipeline(t, ca, dm, ops))
				ops = ops[:0]
				for _, e := range echoes[200:220] {
					ops = append(ops, chatOp{id: e.ID, content: "edited last"})
				}
				state.take(pipeline(t, ca, dm, ops))
				require.Equal(t, int64(20+880), state.seq, "every change numbered, none twice")

				if v.restart {
					n.restart()
				}
				cb, auth := n.connect(b, 2)
				e := entryOf(t, authChats(t, auth), dm)
				require.Equal(t, state.seq, e.Seq)
				require.Equal(t, pos, e.ReadSeq)
				require.Equal(t, state.unread(pos), e.Unread)
				require.NotEqual(t, "null", string(e.LastMessage))
				var last v2Chat
				require.NoError(t, json.Unmarshal(e.LastMessage, &last))
				require.Equal(t, "late 99", last.Content, "the newest message not deleted")

				reached, pages := catchUp(t, cb, dm, pos, view)
				require.Equal(t, state.seq, reached)
				require.Greater(t, len(pages), 1, "paged")
				// With the default send queue (256 frames): a page is queued
				// whole (gateway.Conn.SendAll).
				require.Equal(t, 500, pages[0], "a full first page")
				require.Equal(t, state.view(), view, "caught up: the view the echoes give")
				require.Equal(t, historyView(t, cb, dm), view, "caught up: the history a fresh load gives")
				items, end := loadChanges(t, cb, dm, reached)
				require.Empty(t, items)
				require.Equal(t, changesEnd{Type: "changes", LoadID: dm, Seq: reached}, end)
				t.Logf("%d changes caught up in pages of %v", state.seq-pos, pages)
			})
		})
	}
}

// TestV2SeqUniqueUnderConcurrentSenders: six sessions, three of each
// member, send 30 messages each at once and then edit five of their own.
// Every echo's numbers are the stored message's, and the DM's committed
// numbers are 1..n, each once.
func TestV2SeqUniqueUnderConcurrentSenders(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, noRateLimit)
		a, b := n.newAccount("racer"), n.newAccount("rival")
		n.makeFriends(a, b)
		dm := chatID(a, b)
		var sessions []*client.Client
		for _, u := range []account{a, a, a, b, b, b} {
			c, _ := n.connect(u, 2)
			sessions = append(sessions, c)
		}
		const perSession, edits = 30, 5
		echoes := make([][]v2Chat, len(sessions))
		var wg sync.WaitGroup
		ready := make(chan struct{})
		for j, c := range sessions {
			wg.Go(func() {
				<-ready
				// No require off the test goroutine: checked after.
				echoes[j] = concurrentSends(c, dm, j, perSession, edits)
			})
		}
		close(ready)
		wg.Wait()
		store := n.srv.Store()
		ctx := ctxWait(t)
		room, err := store.FindDMRoom(ctx, a.ID, b.ID)
		require.NoError(t, err)
		for j, es := range echoes {
			require.Len(t, es, perSession+edits, "session %d: every request echoed", j)
			for _, e := range es {
				id, err := strconv.ParseInt(e.ID, 10, 64)
				require.NoError(t, err)
				m, err := store.MessageByID(ctx, room, id)
				require.NoError(t, err)
				require.Equal(t, m.Seq, *e.Seq, "echoed seq is the stored one")
				if e.Type == "edit" {
					require.NotNil(t, e.EditSeq)
					require.Equal(t, m.EditSeq, *e.EditSeq, "echoed edit_seq is the stored one")
				}
			}
		}
		total := len(sessions) * (perSession + edits)
		msgs, current, err := store.Changes(ctx, room, 0, 10*total)
		require.NoError(t, err)
		require.Equal(t, int64(total), current)
		requireGapFree(t, msgs, total)
	})
}

// requireGapFree checks that the numbers msgs hold (their seq and
// edit_seq; each message edited at most once) are 1..total, each once.
func requireGapFree(t *testing.T, msgs []persistence.Message, total int) {
	t.Helper()
	var nums []int64
	for _, m := range msgs {
		nums = append(nums, m.Seq)
		if m.EditSeq != 0 {
			nums = append(nums, m.EditSeq)
		}
	}
	slices.Sort(nums)
	want := make([]int64, total)
	for i := range want {
		want[i] = int64(i + 1)
	}
	require.Equal(t, want, nums, "committed numbers unique and without gaps")
}

// concurrentSends sends k messages on c at once (nonces c<j>-<i>), then
// edits the first edits of them, and returns the echoes of its own
// requests in order; nil on any trouble, which the caller's length check
// reports. It runs on its own goroutine.
func concurrentSends(c *client.Client, dm string, j, k, edits int) []v2Chat {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait)
	defer cancel()
	read := func(nonce string) (v2Chat, bool) {
		var m v2Chat
		f, err := awaitNonce(ctx, c, nonce)
		if err != nil || f.Type != "chat" || f.Decode(&m) != nil || m.Seq == nil {
			return m, false
		}
		return m, true
	}
	var out []v2Chat
	for i := range k {
		if c.Send("chat", sendPayload(dm, fmt.Sprintf("c%d-%d", j, i)), fmt.Sprintf("c%d-%d", j, i)) != nil {
			return nil
		}
	}
	for i := range k {
		m, ok := read(fmt.Sprintf("c%d-%d", j, i))
		if !ok {
			return nil
		}
		out = append(out, m)
	}
	for i := range edits {
		nonce := fmt.Sprintf("e%d-%d", j, i)
		if c.Send("chat", chatOp{id: out[i].ID, content: "edited " + nonce}.payload(dm), nonce) != nil {
			return nil
		}
		m, ok := read(nonce)
		if !ok || m.EditSeq == nil {
			return nil
		}
		out = append(out, m)
	}
	return out
}

// TestV2SeqUnderDatabaseFault: sends keep flowing while the database
// connection is cut and restored (through the TCP proxy); the failed ones
// are retried with their nonces. Every echo, a retry's included, carries
// the stored message's seq, and the DM's numbers are 1..n, each once: a
// write that failed, or whose outcome was unknown, left no hole.
func TestV2SeqUnderDatabaseFault(t *testing.T) {
	schemaURL := pgtest.NewSchemaURL(t)
	u, err := url.Parse(schemaURL)
	require.NoError(t, err)
	proxy := startTCPProxy(t, u.Host)
	u.Host = proxy.addr()
	n := startNode(t, u.String(), noRateLimit)
	a, b := n.newAccount("faulty"), n.newAccount("steadfast")
	n.makeFriends(a, b)
	dm := chatID(a, b)
	ca, _ := n.connect(a, 2)

	const window = 4
	type send struct {
		nonce  string
		seq    int64
		id     string
		failed bool
	}
	var (
		sends            []*send
		inflight         []*send
		acks, failures   int
		cutAt, restored  time.Time
		acksAtRestore    int
		stopSending      bool
		answerTimeout    = 12 * time.Second
		nextNonce, total = 0, 2000
	)
	for !stopSending || len(inflight) > 0 {
		for !stopSending && len(inflight) < window && nextNonce < total {
			s := &send{nonce: fmt.Sprintf("f-%d", nextNonce)}
			nextNonce++
			require.NoError(t, ca.Send("chat", sendPayload(dm, s.nonce), s.nonce))
			sends, inflight = append(sends, s), append(inflight, s)
		}
		if len(inflight) == 0 {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), answerTimeout)
		f, err := awaitNonce(ctx, ca, inflight[0].nonce)
		cancel()
		require.NoError(t, err, "no answer to %s", inflight[0].nonce)
		s := inflight[0]
		inflight = inflight[1:]
		if e, ok := f.AsError(); ok {
			require.Contains(t, []int{5000, 5001}, e.Code, "%s: %s", s.nonce, e.Reason)
			s.failed = true
			failures++
		} else {
			m := v2ChatOf(t, f)
			s.seq, s.id = *m.Seq, m.ID
			acks++
		}
		switch {
		case cutAt.IsZero() && acks >= 20:
			proxy.cut()
			cutAt = time.Now()
		case !cutAt.IsZero() && restored.IsZero() && failures >= 4 && time.Since(cutAt) > 300*time.Millisecond:
			proxy.restore()
			restored, acksAtRestore = time.Now(), acks
		case !restored.IsZero() && acks >= acksAtRestore+20:
			stopSending = true
		}
		require.True(t, cutAt.IsZero() || time.Since(cutAt) < time.Minute, "the server did not recover")
	}
	require.Positive(t, failures, "the cut failed some sends")
	// Retry the failed ones with their nonces until they are stored.
	for _, s := range sends {
		if !s.failed {
			continue
		}
		deadline := time.Now().Add(wait)
		for {
			f, err := sendAwait(ctxWait(t), ca, dm, s.nonce, s.nonce)
			require.NoError(t, err)
			if e, ok := f.AsError(); ok {
				require.Contains(t, []int{5000, 5001}, e.Code)
				require.True(t, time.Now().Before(deadline), "%s never stored", s.nonce)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			m := v2ChatOf(t, f)
			s.seq, s.id = *m.Seq, m.ID
			break
		}
	}

	// The database, read directly.
	db := pgConnect(t, schemaURL)
	ctx := ctxWait(t)
	var room, roomSeq int64
	require.NoError(t, db.QueryRow(ctx, `SELECT id, seq FROM rooms WHERE id = (SELECT room_id FROM messages WHERE author_id = $1 LIMIT 1)`, a.ID).Scan(&room, &roomSeq))
	rows, err := db.Query(ctx, `SELECT id, content, seq FROM messages WHERE room_id = $1`, room)
	require.NoError(t, err)
	stored := map[string]int64{} // content (the nonce) → seq
	ids := map[string]string{}
	var (
		id      int64
		content string
		seq     int64
	)
	var msgs []persistence.Message
	_, err = pgx.ForEachRow(rows, []any{&id, &content, &seq}, func() error {
		require.NotContains(t, stored, content, "stored twice")
		stored[content], ids[content] = seq, strconv.FormatInt(id, 10)
		msgs = append(msgs, persistence.Message{Seq: seq})
		return nil
	})
	require.NoError(t, err)
	require.Len(t, stored, len(sends), "every send stored once")
	for _, s := range sends {
		require.Equal(t, stored[s.nonce], s.seq, "%s: the echo's seq is the stored one", s.nonce)
		require.Equal(t, ids[s.nonce], s.id)
	}
	require.Equal(t, int64(len(sends)), roomSeq)
	requireGapFree(t, msgs, len(sends))
	t.Logf("%d sends, %d failed at first and retried; down %v", len(sends), failures, restored.Sub(cutAt).Round(time.Millisecond))
}

// TestV2ReadState: read positions from two devices, the unread counts the
// chats list shows, the read event to the user's other devices and, as a
// receipt, to the other member's v2 session but not its v1 one; a lower
// seq changes nothing and tells nobody; the errors of read, load changes
// and load chats; and none of it exists for v1, whose frames never carry
// seq, edit_seq or chats.
func TestV2ReadState(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, noRateLimit)
		a, b, nobody := n.newAccount("reader"), n.newAccount("writer"), n.newAccount("nobody")
		n.makeFriends(a, b)
		dm := chatID(a, b)
		b2, _ := n.connect(b, 2)
		m := n.dialMobile() // b's v1 device
		auth := m.lobby(b.Token)
		require.NotContains(t, auth, "chats", "v1's auth answer is unchanged")
		a1, _ := n.connect(a, 2)
		a2, _ := n.connect(a, 2)
		requirePresence(t, next(t, b2), a, "online")

		var ops []chatOp
		for i := range 5 {
			ops = append(ops, chatOp{content: fmt.Sprintf("to read %d", i)})
		}
		sent := pipeline(t, b2, dm, ops)
		for i := range 5 {
			requireChat(t, m.next(), "send", b.IDString(), dm, fmt.Sprintf("to read %d", i)) // no seq: mobile.check
			require.Equal(t, sent[i].ID, v2ChatOf(t, next(t, a1)).ID)
			require.Equal(t, sent[i].ID, v2ChatOf(t, next(t, a2)).ID)
		}
		unread := func(want int, readSeq int64) {
			t.Helper()
			_, auth := n.connect(a, 2)
			e := entryOf(t, authChats(t, auth), dm)
			require.Equal(t, chatEntry{ChatID: dm, Kind: "dm", Seq: 5, ReadSeq: readSeq, Unread: want, LastMessage: e.LastMessage}, e)
			f := call(t, a1, "load", map[string]any{"type": "chats"})
			require.Equal(t, "chats", f.Type)
			var list []chatEntry
			require.NoError(t, f.Decode(&list))
			require.Equal(t, []chatEntry{e}, list, "load chats lists as the auth answer does")
		}
		unread(5, 0)

		readEvent := func(u account, seq int64) map[string]any {
			return map[string]any{"chat_id": dm, "user_id": u.IDString(), "seq": float64(seq)}
		}
		// a1 reads up to 3: a2 and b2 hear of it, a1 and m do not.
		ok := call(t, a1, "read", map[string]any{"chat_id": dm, "seq": 3})
		require.Equal(t, "ok", ok.Type)
		require.NotEmpty(t, ok.Nonce)
		f := next(t, a2)
		require.Equal(t, "read", f.Type)
		require.Empty(t, f.Nonce)
		require.Equal(t, readEvent(a, 3), payloadOf(t, f.Payload))
		f = next(t, b2)
		require.Equal(t, "read", f.Type, "a read receipt")
		require.Equal(t, readEvent(a, 3), payloadOf(t, f.Payload))
		unread(2, 3)

		// From the other device up to 5: now a1 hears of it.
		require.Equal(t, "ok", call(t, a2, "read", map[string]any{"chat_id": dm, "seq": 5}).Type)
		f = next(t, a1)
		require.Equal(t, "read", f.Type)
		require.Equal(t, readEvent(a, 5), payloadOf(t, f.Payload))
		require.Equal(t, readEvent(a, 5), payloadOf(t, next(t, b2).Payload))
		unread(0, 5)

		// Lower or equal: ok, nothing moves, nobody hears.
		require.Equal(t, "ok", call(t, a1, "read", map[string]any{"chat_id": dm, "seq": 2}).Type)
		require.Equal(t, "ok", call(t, a2, "read", map[string]any{"chat_id": dm, "seq": 5}).Type)
		unread(0, 5)
		for _, c := range []*client.Client{a1, a2, b2} {
			require.Equal(t, "heartbeat", call(t, c, "heartbeat", "quiet").Type, "no read event for a read that moved nothing")
		}
		// The v1 device got no receipt: the next frame it gets is the
		// message sent after them (a receipt would have come first).
		echo := sendEcho(t, a1, dm, "after the reads")
		requireChat(t, m.next(), "send", a.IDString(), dm, "after the reads")
		require.Equal(t, echo.ID, v2ChatOf(t, next(t, b2)).ID)
		require.Equal(t, echo.ID, v2ChatOf(t, next(t, a2)).ID)

		// b's own read of its DM tells a's devices.
		require.Equal(t, "ok", call(t, b2, "read", map[string]any{"chat_id": dm, "seq": 6}).Type)
		require.Equal(t, readEvent(b, 6), payloadOf(t, next(t, a1).Payload))
		require.Equal(t, readEvent(b, 6), payloadOf(t, next(t, a2).Payload))

		// Errors.
		stranger := chatID(a, nobody) // a user, but no DM
		madeUp := strconv.FormatInt(a.ID^(1<<40), 10)
		for _, p := range []map[string]any{
			{"chat_id": dm, "seq": 7}, {"chat_id": dm, "seq": -1}, {"chat_id": dm, "seq": "3"},
			{"chat_id": dm, "seq": 1.5}, {"chat_id": dm}, {"chat_id": dm, "seq": nil},
		} {
			requireError(t, call(t, a1, "read", p), 4000, "Invalid seq.")
		}
		requireError(t, call(t, a1, "read", map[string]any{"seq": 1}), 4000, "chat_id is not provided.")
		for _, chat := range []string{stranger, madeUp} {
			requireError(t, call(t, a1, "read", map[string]any{"chat_id": chat, "seq": 0}), 4004, "provided DM is not opened.")
		}
		for _, p := range []map[string]any{
			{"since": 7}, {"since": -1}, {"since": "1"}, {}, {"since": 2.5},
		} {
			p["type"], p["load_id"] = "changes", dm
			requireError(t, call(t, a1, "load", p), 4000, "Invalid since.")
		}
		requireError(t, call(t, a1, "load", map[string]any{"type": "changes", "load_id": madeUp, "since": 0}), 4004, "provided DM is not opened.")
		items, end := loadChanges(t, a1, stranger, 0) // a user without a DM: nothing yet
		require.Empty(t, items)
		require.Equal(t, changesEnd{Type: "changes", LoadID: stranger}, end)
		requireError(t, call(t, a1, "load", map[string]any{"type": "changes", "load_id": stranger, "since": 1}), 4000, "Invalid since.")
		for _, before := range []string{stranger, madeUp} {
			requireError(t, call(t, a1, "load", map[string]any{"type": "chats", "before": before}), 4004, "provided DM is not opened.")
		}
		f = call(t, a1, "load", map[string]any{"type": "chats", "before": dm})
		require.Equal(t, "chats", f.Type)
		require.JSONEq(t, `[]`, string(f.Payload), "nothing after the only chat")

		// v1: none of it exists.
		m.request("read", map[string]any{"chat_id": dm, "seq": 1})
		m.expect(errorFrame(4000, "Unknown type."))
		for _, p := range []map[string]any{{"type": "changes", "load_id": dm, "since": 0}, {"type": "chats"}} {
			m.request("load", p)
			m.expect(errorFrame(4000, "Unknown load type."))
		}
		// Its echo and history carry no seq (mobile.check fails on one).
		m.sendChat(dm, "from v1")
		requireChat(t, m.next(), "send", b.IDString(), dm, "from v1")
		require.Len(t, m.history(dm, time.Now().Add(time.Second)), 7)
	})
}
