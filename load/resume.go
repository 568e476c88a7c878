package load

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// The resume scenario (protocol.md §4.1, v2): the pairs chat as in dm,
// and every author also edits and deletes some of its own messages; at
// --drop-at the receiving sides (B) of --drop pairs close their
// connections cleanly, their peers go on sending, editing and deleting,
// and after --down they come back: heartbeat, auth (whose v2 answer lists
// the chats with their seq), and, when the DM's seq is above the
// session's position, `load changes` since that position, page after page
// while the end marker says more.
//
// Every session of a pair keeps a resumeState: its view of the DM (every
// message it saw, its own echoes included: id → the hash of its current
// content, its latest change seen, deleted or not) and its position, the
// highest seq or edit_seq it saw; and the changes the server acknowledged
// to it: its sends (id, when) and its edits and deletes (id, edit_seq,
// when). A change seen twice (live and in the catch-up) is counted as a
// duplicate and applied once. At the end, for each direction of each
// pair, every send acknowledged to the author is looked up in the other
// side's view: seen (live or in a catch-up), deleted before it was seen
// (its delete was acknowledged: a catch-up leaves it out, as §4.1 says),
// or missing; an acknowledged edit or delete is missing when the view
// holds an older change of that message. Sends acknowledged while the
// receiving session was down (from its close to its next auth answer) are
// counted apart with how they were seen. Before that, once the sending
// and the drain are over, every dropped session still connected loads the
// DM's history afresh (`load chat`, 100 a page, back to the oldest) and
// its view is compared with it: absent (in the history, not in the view),
// extra (in the view, not in the history) and stale (content differs).
//
// The view and the acknowledged changes are the session goroutine's, and
// under mu: the worker reads them during the drain (to know when every
// acknowledged change has arrived) and for the state check.

// Nonce marks of the resume scenario's requests (a dm stamp starts with
// a digit, 'c', 'w' or 'f'; history and final check loads with 'h', 'e').
const (
	changesMark byte = 'g' // a catch-up's load changes, page n: "g<n>"
	editMark    byte = 'x' // an edit or a delete: "x<n>"
	viewMark    byte = 'v' // a state check's load chat, page n: "v<n>"
)

// Bounds: pages of one catch-up (500 changes a page), pages of one state
// check (100 messages a page), state checks under way at once per worker,
// and the longest a dropping session waits for the answers to what it
// sent before it closes.
const (
	maxChangesPages = 1000
	maxViewPages    = 1000
	viewConcurrency = 64
	dropQuiet       = 2 * time.Second
)

// resumeSpec is a worker's share of a resume run.
type resumeSpec struct {
	// Drops are the pairs (indices into this worker's pairs) whose side B
	// drops.
	Drops       []int         `json:"drops"`
	DropAt      time.Duration `json:"drop_at"` // after the sending began
	Down        time.Duration `json:"down"`
	EditEvery   int           `json:"edit_every"`   // every n-th send of an author is followed by an edit (0: none)
	DeleteEvery int           `json:"delete_every"` // ... by a delete (0: none)
	CheckViews  int           `json:"check_views"`  // dropped sessions of this worker whose view is checked at the end
}

// ackedSend is a send the server acknowledged to its author: its message
// id and when (w.now()).
type ackedSend struct{ id, at int64 }

// ackedEdit is an edit or a delete the server acknowledged to its author.
type ackedEdit struct {
	id, change, at int64
	deleted        bool
}

// viewEntry is one message as a session last saw it.
type viewEntry struct {
	hash    uint64 // of its content
	change  int64  // its latest change seen: edit_seq, or seq
	deleted bool
	how     byte // how it was first seen: seenLive (echo included) or seenCaughtUp
}

// window is a span a session was down, in w.now() nanoseconds; to 0: it
// is not back.
type window struct{ from, to int64 }

// What applying a change to a view did.
const (
	dupChange  = iota // seen before: not applied
	newMessage        // a message not in the view
	newChange         // a later change of a message in the view
)

type resumeState struct {
	mu       sync.Mutex
	view     map[int64]viewEntry
	position int64 // the highest seq or edit_seq seen
	sends    []ackedSend
	edits    []ackedEdit
	deleted  map[int64]bool // own messages whose delete was acknowledged
	downs    []window
	dropped  bool       // the session was dropped (at least once)
	check    *viewCheck // the state check (nil: none)

	// the session goroutine's
	connected bool    // it authenticated once: the next auth is a reconnection
	targets   []int64 // own messages not deleted: what edits and deletes pick from
	catch     *changesCatchUp
	edited    uint64 // edits and deletes written
	authFrame []byte // the last auth answer

	dropping    atomic.Bool  // chosen to drop: no more sends until it is back
	catching    atomic.Bool  // a catch-up is under way
	outstanding atomic.Int64 // sends and edits written and not answered yet
}

func newResumeState() *resumeState {
	return &resumeState{view: make(map[int64]viewEntry), deleted: make(map[int64]bool)}
}

func contentHash(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// apply applies one change of message id (change: its seq or edit_seq;
// 0 when the frame carries none) to the view. A change not newer than
// the one seen is a duplicate; without numbers (not v2), a send of a
// message seen is one.
func (r *resumeState) apply(id, change int64, content []byte, deleted, send bool, how byte) int {
	h := contentHash(content)
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.view[id]
	if ok && (change != 0 && change <= e.change || change == 0 && send) {
		return dupChange
	}
	r.position = max(r.position, change)
	if !ok {
		r.view[id] = viewEntry{hash: h, change: change, deleted: deleted, how: how}
		return newMessage
	}
	e.hash, e.change, e.deleted = h, max(e.change, change), deleted
	r.view[id] = e
	return newChange
}

// down opens a down window at at, unless one is open.
func (r *resumeState) down(at int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.downs); n == 0 || r.downs[n-1].to != 0 {
		r.downs = append(r.downs, window{from: at})
	}
}

// up closes the open down window at at; false when none was open.
func (r *resumeState) up(at int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.downs); n > 0 && r.downs[n-1].to == 0 {
		r.downs[n-1].to = max(at, r.downs[n-1].from+1)
		return true
	}
	return false
}

// isDown reports whether the session was down at at.
func (r *resumeState) isDown(at int64) bool {
	for _, d := range r.downs {
		if at >= d.from && (d.to == 0 || at < d.to) {
			return true
		}
	}
	return false
}

// stillDown reports whether a down window is open.
func (r *resumeState) stillDown() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.downs)
	return n > 0 && r.downs[n-1].to == 0
}

func (r *resumeState) positionNow() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.position
}

// Frame fields of v2 chat frames and of the changes end marker.
var (
	seqKey       = []byte(`"seq":`)
	editSeqKey   = []byte(`"edit_seq":`)
	morePrefix   = []byte(`"more":true`)
	chatEditKind = []byte(`{"type":"chat","payload":{"type":"edit"`)
)

// intField reads the value of key (`"name":`), a JSON number or a string
// of digits, at its first place in b; `"seq":` is not found inside
// `"edit_seq":` (no quote before its s).
func intField(b, key []byte) (int64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	v := b[i+len(key):]
	if len(v) > 0 && v[0] == '"' {
		v = v[1:]
	}
	x, n := parseDigits(v)
	return int64(x), n > 0
}

// chatChange reads a v2 chat frame's change: edit_seq when it has one,
// else seq (0: neither, the frame is not v2's).
func chatChange(p []byte) int64 {
	if e, ok := intField(p, editSeqKey); ok && e > 0 {
		return e
	}
	s, _ := intField(p, seqKey)
	return s
}

func isChanges(nonce []byte) bool { return len(nonce) > 0 && nonce[0] == changesMark }
func isEdit(nonce []byte) bool    { return len(nonce) > 0 && nonce[0] == editMark }
func isView(nonce []byte) bool    { return len(nonce) > 0 && nonce[0] == viewMark }

// dmID is the session's DM's chat_id (0: an id is not known yet).
func (s *session) dmID() int64 {
	a, b := s.id.Load(), s.peer.id.Load()
	if a == 0 || b == 0 {
		return 0
	}
	return a ^ b
}

// frameContent is a chat frame's content.
func frameContent(p []byte) []byte {
	c, _ := stringAfter(p, 0, contentPrefix)
	return c
}

// resumeLive takes a live chat event (send or edit) of the session's DM
// into the view; false when it is a duplicate.
func (s *session) resumeLive(p []byte, send bool) bool {
	w, r := s.w, s.resume
	id, _, ok := chatIDs(p)
	if !ok {
		return true
	}
	change := chatChange(p)
	if change == 0 {
		w.c.add(cNoSeq, 1)
	}
	content := frameContent(p)
	deleted := !send && len(content) == 0
	switch got := r.apply(id, change, content, deleted, send, seenLive); got {
	case dupChange:
		w.c.add(cResumeDuplicates, 1)
		return false
	default:
		if got == newMessage && !send {
			// Its send event was missed (it came while this session
			// was dropping, behind its own echoes, which moved its
			// position past it), and so was its catch-up.
			w.c.add(cSeenByEdit, 1)
		}
		if !send {
			if deleted {
				w.c.add(cDeletesLive, 1)
			} else {
				w.c.add(cEditsLive, 1)
			}
		}
	}
	return true
}

// resumeEcho takes the echo of one of the session's sends (kind, its
// stamp's seq): into the view and the acknowledged sends; then, for a dm
// message, the edit or delete its number calls for.
func (s *session) resumeEcho(p []byte, kind byte, seq uint64) {
	w, r := s.w, s.resume
	r.outstanding.Add(-1)
	id, _, ok := chatIDs(p)
	if !ok {
		return
	}
	change := chatChange(p)
	if change == 0 {
		w.c.add(cNoSeq, 1)
	}
	r.apply(id, change, frameContent(p), false, true, seenLive)
	r.mu.Lock()
	r.sends = append(r.sends, ackedSend{id: id, at: w.now()})
	r.mu.Unlock()
	r.targets = append(r.targets, id)
	if kind != kindDM || w.stopped() || r.dropping.Load() {
		return
	}
	// Each pair's count is offset by its index: the authors send in step
	// (seq n of every author goes out within one round of the rate), and
	// their edits would all come at once otherwise.
	rs, n := w.spec.Resume, seq+uint64(s.index/2)
	if rs.EditEvery > 0 && n%uint64(rs.EditEvery) == 0 {
		s.writeEdit(r.pick(false), false)
	}
	if rs.DeleteEvery > 0 && n%uint64(rs.DeleteEvery) == 0 {
		s.writeEdit(r.pick(true), true)
	}
}

// pick returns one of the session's own messages not deleted, at random
// (the one just acknowledged included), taking it out of the targets when
// it is to be deleted.
func (r *resumeState) pick(remove bool) int64 {
	if len(r.targets) == 0 {
		return 0
	}
	i := rand.N(len(r.targets))
	id := r.targets[i]
	if remove {
		r.targets[i] = r.targets[len(r.targets)-1]
		r.targets = r.targets[:len(r.targets)-1]
	}
	return id
}

// writeEdit edits message id (delete: empties it) with a nonce "x<n>";
// the new content is "E<n>.<nanos>".
func (s *session) writeEdit(id int64, del bool) {
	w, r := s.w, s.resume
	chat := s.dmID()
	if id == 0 || chat == 0 {
		return
	}
	r.edited++
	fb := getFrameBuf()
	defer putFrameBuf(fb)
	fb.reset()
	fb.b = append(fb.b, `{"type":"chat","payload":{"type":"edit","chat_id":"`...)
	fb.b = strconv.AppendInt(fb.b, chat, 10)
	fb.b = append(fb.b, `","id":"`...)
	fb.b = strconv.AppendInt(fb.b, id, 10)
	fb.b = append(fb.b, `","content":"`...)
	if !del {
		fb.b = append(fb.b, 'E')
		fb.b = strconv.AppendUint(fb.b, r.edited, 10)
		fb.b = append(fb.b, '.')
		fb.b = strconv.AppendInt(fb.b, w.now(), 10)
	}
	fb.b = append(fb.b, `"},"nonce":"`...)
	fb.b = append(fb.b, editMark)
	fb.b = strconv.AppendUint(fb.b, r.edited, 10)
	fb.b = append(fb.b, `"}`...)
	r.outstanding.Add(1)
	if s.write(fb.finish(ws.OpText), 0) != nil {
		r.outstanding.Add(-1)
		return
	}
	if del {
		w.c.add(cDeletesSent, 1)
	} else {
		w.c.add(cEditsSent, 1)
	}
}

// editEcho takes the echo of the session's edit or delete.
func (s *session) editEcho(p []byte) {
	w, r := s.w, s.resume
	if r == nil {
		return
	}
	r.outstanding.Add(-1)
	id, _, ok := chatIDs(p)
	if !ok {
		return
	}
	change := chatChange(p)
	if change == 0 {
		w.c.add(cNoSeq, 1)
	}
	content := frameContent(p)
	deleted := len(content) == 0
	r.apply(id, change, content, deleted, false, seenLive)
	r.mu.Lock()
	r.edits = append(r.edits, ackedEdit{id: id, change: change, at: w.now(), deleted: deleted})
	if deleted {
		r.deleted[id] = true
	}
	r.mu.Unlock()
	if deleted {
		w.c.add(cDeletesAcked, 1)
	} else {
		w.c.add(cEditsAcked, 1)
	}
}

// editError takes an error answering an edit or a delete.
func (s *session) editError() {
	if r := s.resume; r != nil {
		r.outstanding.Add(-1)
		s.w.c.add(cEditErrors, 1)
	}
}

// changesCatchUp is one catch-up under way: load changes, page after
// page.
type changesCatchUp struct {
	t0, authAt time.Time // the reconnection's dial, its auth answered
	pages      int
}

// authChats is what the resume scenario reads of a v2 auth answer.
type authChats struct {
	Payload struct {
		Chats *[]chatSummary `json:"chats"`
	} `json:"payload"`
}

type chatSummary struct {
	ChatID      flexInt         `json:"chat_id"`
	Kind        string          `json:"kind"`
	Seq         flexInt         `json:"seq"`
	ReadSeq     flexInt         `json:"read_seq"`
	Unread      flexInt         `json:"unread"`
	LastMessage json.RawMessage `json:"last_message"`
}

// flexInt is an integer written as a JSON number or as a string.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "null" || s == "" {
		*f = 0
		return nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	*f = flexInt(v)
	return err
}

// dmSummary finds the DM chat in an auth answer's chats; listed: the
// answer has a chats list at all.
func dmSummary(auth []byte, chat int64) (c chatSummary, found, listed bool) {
	var a authChats
	if json.Unmarshal(auth, &a) != nil || a.Payload.Chats == nil {
		return c, false, false
	}
	for _, x := range *a.Payload.Chats {
		if int64(x.ChatID) == chat {
			return x, true, true
		}
	}
	return c, false, true
}

// resumeAuthed is the resume scenario's step after an auth: the first
// one only marks the session connected; after a reconnection (dial at
// t0, auth answered at authAt) the session is back, and it loads the
// DM's changes since its position when the auth answer's chats list the
// DM with a seq above it (or do not list it).
func (s *session) resumeAuthed(t0, authAt time.Time) {
	w, r := s.w, s.resume
	if !r.connected {
		r.connected = true
		return
	}
	if r.up(w.now()) && r.dropping.Load() {
		r.dropping.Store(false)
		w.c.add(cResumed, 1)
	}
	w.hists[hResumeAuth].record(authAt.Sub(t0))
	chat := s.dmID()
	if chat == 0 {
		return // no DM yet: its peer never authenticated
	}
	pos := r.positionNow()
	sum, found, listed := dmSummary(r.authFrame, chat)
	switch {
	case !listed:
		w.c.add(cChatsAbsent, 1)
	case !found:
		w.c.add(cChatsWithoutDM, 1)
	default:
		w.c.add(cChatsListed, 1)
		w.c.add(cChatsUnread, int64(sum.Unread))
		if len(sum.LastMessage) > 0 && string(sum.LastMessage) != "null" {
			w.c.add(cChatsLastMessage, 1)
		}
		if int64(sum.Seq) <= pos {
			w.c.add(cResumeNotNeeded, 1)
			w.hists[hResumeCaughtUp].record(authAt.Sub(t0))
			w.hists[hResumeLoad].record(0)
			return
		}
		w.c.add(cChatsBehind, int64(sum.Seq)-pos)
	}
	r.catch = &changesCatchUp{t0: t0, authAt: authAt}
	r.catching.Store(true)
	_ = s.writeChanges(pos, 1) // a failed write closes the connection: its end fails the catch-up
}

// writeChanges asks for page (1, 2, …) of the DM's changes after since.
func (s *session) writeChanges(since int64, page int) error {
	fb := getFrameBuf()
	defer putFrameBuf(fb)
	fb.reset()
	fb.b = append(fb.b, `{"type":"load","payload":{"type":"changes","load_id":"`...)
	fb.b = strconv.AppendInt(fb.b, s.dmID(), 10)
	fb.b = append(fb.b, `","since":`...)
	fb.b = strconv.AppendInt(fb.b, since, 10)
	fb.b = append(fb.b, `},"nonce":"`...)
	fb.b = append(fb.b, changesMark)
	fb.b = strconv.AppendInt(fb.b, int64(page), 10)
	fb.b = append(fb.b, `"}`...)
	return s.write(fb.finish(ws.OpText), 0)
}

// changesItem takes one chat frame of a changes page: a message created
// after since ("send", its current text) or changed after it ("edit",
// empty when deleted).
func (s *session) changesItem(p []byte) {
	w, r := s.w, s.resume
	if r == nil || r.catch == nil {
		return
	}
	id, author, ok := chatIDs(p)
	if !ok {
		return
	}
	send := bytes.HasPrefix(p, chatSendKind)
	content := frameContent(p)
	deleted := !send && len(content) == 0
	change := chatChange(p)
	if change == 0 {
		w.c.add(cNoSeq, 1)
	}
	got := r.apply(id, change, content, deleted, send, seenCaughtUp)
	if got == dupChange {
		w.c.add(cResumeDuplicates, 1)
		return
	}
	if got == newMessage {
		// A message never seen: the peer's is caught up; one of the
		// session's own had lost its echo.
		if author == s.peer.id.Load() {
			w.c.add(cCaughtUp, 1)
			s.nodeC().add(nCaughtUp, 1)
		} else {
			w.c.add(cOwnRecovered, 1)
		}
	}
	switch {
	case deleted:
		w.c.add(cDeletesRecovered, 1)
	case got == newChange || !send:
		w.c.add(cEditsRecovered, 1)
	}
}

// changesEnd takes a changes page's end marker: with more, the next page
// from its seq; otherwise the catch-up is over.
func (s *session) changesEnd(p []byte) {
	w, r := s.w, s.resume
	if r == nil || r.catch == nil {
		return
	}
	c := r.catch
	c.pages++
	w.c.add(cResumePages, 1)
	seq, _ := intField(p, seqKey)
	if seq > 0 {
		r.mu.Lock()
		r.position = max(r.position, seq)
		r.mu.Unlock()
	}
	if bytes.Contains(p, morePrefix) {
		if c.pages < maxChangesPages {
			if seq == 0 {
				seq = r.positionNow()
			}
			_ = s.writeChanges(seq, c.pages+1)
			return
		}
		w.c.add(cResumeTruncated, 1)
	}
	now := time.Now()
	w.c.add(cResumeCatchUps, 1)
	w.hists[hResumeCaughtUp].record(now.Sub(c.t0))
	w.hists[hResumeLoad].record(now.Sub(c.authAt))
	r.catch = nil
	r.catching.Store(false)
}

// changesFailed ends the catch-up under way unfinished: refused, or cut
// by the connection's end. The next reconnection starts from the
// position again.
func (s *session) changesFailed() {
	if r := s.resume; r != nil && r.catch != nil {
		s.w.c.add(cResumeCatchUpFailed, 1)
		r.catch = nil
		r.catching.Store(false)
	}
}

// drop closes the receiving sides of the pairs of spec.Resume.Drops: each
// stops sending at once and closes cleanly (1000) once what it sent is
// answered, or dropQuiet later. They reconnect at the drop's time plus
// Down (run). A worker without drops only notes the times (byDrop).
func (w *worker) drop() {
	if w.stopped() {
		return
	}
	now := w.now()
	w.dropNanos.Store(now)
	w.backNanos.Store(now + int64(w.spec.Resume.Down))
	var left []*session
	for _, i := range w.spec.Resume.Drops {
		if 2*i+1 >= len(w.sessions) {
			continue
		}
		b := w.sessions[2*i+1]
		if b.resume == nil || !b.authed.Load() {
			w.c.add(cDropNotConnected, 1)
			continue
		}
		b.resume.dropping.Store(true)
		left = append(left, b)
	}
	deadline := time.Now().Add(dropQuiet)
	for len(left) > 0 {
		last := !time.Now().Before(deadline)
		kept := left[:0]
		for _, b := range left {
			if b.resume.outstanding.Load() > 0 && !last {
				kept = append(kept, b)
				continue
			}
			if b.closeDrop() {
				w.c.add(cDropped, 1)
			} else {
				w.c.add(cDropNotConnected, 1)
				b.resume.dropping.Store(false)
			}
		}
		left = kept
		if len(left) > 0 && !w.sleep(5*time.Millisecond) {
			return
		}
	}
}

// closeDrop closes the connection cleanly for a drop; it reconnects after
// the down time. The session is down from just before its close frame.
func (s *session) closeDrop() bool {
	r := s.resume
	at := s.w.now()
	s.mu.Lock()
	if s.conn == nil || s.closeSent {
		s.mu.Unlock()
		return false
	}
	s.dropClose = true
	s.mu.Unlock()
	// The end of the run may have closed it meanwhile: then it is not
	// dropped (and does not come back: the worker stopped).
	if !s.closeWith(false) {
		s.mu.Lock()
		s.dropClose = false
		s.mu.Unlock()
		return false
	}
	r.mu.Lock()
	r.dropped = true
	r.mu.Unlock()
	r.down(at)
	return true
}

// viewCheck is one state check: the DM's history loaded afresh (newest
// first, 100 a page) and compared with the session's view.
type viewCheck struct {
	history map[int64]uint64 // id → content hash
	pages   int
	oldest  int64
	// complete: the whole history was loaded and compared; ended:
	// complete or given up (refused, cut, out of time, page bound).
	complete, ended      bool
	absent, extra, stale int64
	done                 chan struct{}
	release              func()
}

func (v *viewCheck) end(complete bool) {
	if v.ended {
		return
	}
	v.ended, v.complete = true, complete
	close(v.done)
	if v.release != nil {
		v.release()
	}
}

// compare sets v's figures from view (under the state's mu): absent, in
// the history but not in the view (or deleted there); extra, in the view
// but not in the history; stale, in both with another content.
func (v *viewCheck) compare(view map[int64]viewEntry) {
	for id, e := range view {
		h, ok := v.history[id]
		switch {
		case e.deleted && ok:
			v.absent++
		case e.deleted:
		case !ok:
			v.extra++
		case h != e.hash:
			v.stale++
		}
	}
	for id := range v.history {
		if _, ok := view[id]; !ok {
			v.absent++
		}
	}
}

// startView begins the session's state check; release is called when it
// ends.
func (s *session) startView(release func()) *viewCheck {
	r := s.resume
	v := &viewCheck{history: make(map[int64]uint64), done: make(chan struct{}), release: release}
	r.mu.Lock()
	r.check = v
	r.mu.Unlock()
	if s.writeLoad(viewMark, 1, 0) != nil {
		r.mu.Lock()
		v.end(false)
		r.mu.Unlock()
	}
	return v
}

// viewItem takes one message of a state check's history page.
func (s *session) viewItem(p []byte) {
	r := s.resume
	if r == nil {
		return
	}
	id, _, ok := chatIDs(p)
	if !ok {
		return
	}
	h := contentHash(frameContent(p))
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.check
	if v == nil || v.ended {
		return
	}
	v.history[id] = h
	if v.oldest == 0 || id < v.oldest {
		v.oldest = id
	}
}

// viewEnd takes a state check's page end marker: the next page, or the
// comparison once a page came back short.
func (s *session) viewEnd(p []byte) {
	r := s.resume
	if r == nil {
		return
	}
	n, _ := loadCount(p)
	r.mu.Lock()
	v := r.check
	if v == nil || v.ended {
		r.mu.Unlock()
		return
	}
	v.pages++
	if n < catchUpPage {
		v.compare(r.view)
		v.end(true)
		r.mu.Unlock()
		return
	}
	if v.pages >= maxViewPages {
		v.end(false)
		r.mu.Unlock()
		return
	}
	page, before := v.pages+1, v.oldest
	r.mu.Unlock()
	if s.writeLoad(viewMark, page, before) != nil {
		s.viewGiveUp()
	}
}

// viewGiveUp ends the state check under way unfinished.
func (s *session) viewGiveUp() {
	if r := s.resume; r != nil {
		r.mu.Lock()
		if r.check != nil {
			r.check.end(false)
		}
		r.mu.Unlock()
	}
}

// resumePairs calls f for both directions of every pair of the worker
// with resume state: from's acknowledged changes, to's view.
func (w *worker) resumePairs(f func(from, to *session)) {
	for i := 0; i < w.spec.Pairs && 2*i+1 < len(w.sessions); i++ {
		a, b := w.sessions[2*i], w.sessions[2*i+1]
		if a.resume == nil || b.resume == nil {
			continue
		}
		f(a, b)
		f(b, a)
	}
}

// dirTally is one direction of a pair: from's acknowledged changes as
// to's view holds them.
type dirTally struct {
	sends, seen, deletedUnseen, missing                  int64
	downAcked, downCaughtUp, downLive, downDeleted       int64
	edits, deletes, downEdits, downDeletes, editsMissing int64
}

// tallyDir compares from's acknowledged changes with to's view.
func tallyDir(from, to *resumeState) dirTally {
	from.mu.Lock()
	defer from.mu.Unlock()
	if from != to {
		to.mu.Lock()
		defer to.mu.Unlock()
	}
	var t dirTally
	for _, x := range from.sends {
		t.sends++
		down := to.isDown(x.at)
		if down {
			t.downAcked++
		}
		e, ok := to.view[x.id]
		switch {
		case ok:
			t.seen++
			if down && e.how == seenCaughtUp {
				t.downCaughtUp++
			} else if down {
				t.downLive++
			}
		case from.deleted[x.id]:
			t.deletedUnseen++
			if down {
				t.downDeleted++
			}
		default:
			t.missing++
		}
	}
	for _, x := range from.edits {
		down := to.isDown(x.at)
		if x.deleted {
			t.deletes++
			if down {
				t.downDeletes++
			}
		} else {
			t.edits++
			if down {
				t.downEdits++
			}
		}
		e, ok := to.view[x.id]
		if ok && e.change < x.change || !ok && !from.deleted[x.id] {
			t.editsMissing++
		}
	}
	return t
}

// resumeSettled reports whether, for every session connected and not
// catching up, every change acknowledged to its peer has reached it: the
// drain is over.
func (w *worker) resumeSettled() bool {
	settled := true
	w.resumePairs(func(from, to *session) {
		if !settled || !to.authed.Load() {
			return // down: it will not settle
		}
		if to.resume.catching.Load() {
			settled = false
			return
		}
		t := tallyDir(from.resume, to.resume)
		settled = t.missing == 0 && t.editsMissing == 0
	})
	return settled
}

// checkViews is the state check: every dropped session still connected
// (up to spec.Resume.CheckViews) loads the DM's history afresh and
// compares it with its view, viewConcurrency at once, within budget.
func (w *worker) checkViews(budget time.Duration) {
	limit := w.spec.Resume.CheckViews
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	slots := make(chan struct{}, viewConcurrency)
	var started []*session
	w.resumePairs(func(_, to *session) {
		r := to.resume
		r.mu.Lock()
		dropped := r.dropped
		r.mu.Unlock()
		if !dropped || len(started) >= limit || ctx.Err() != nil {
			return
		}
		if !to.authed.Load() || r.catching.Load() {
			w.c.add(cViewNotChecked, 1)
			return
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		to.startView(func() { <-slots })
		started = append(started, to)
	})
	for _, s := range started {
		select {
		case <-s.resume.check.done:
		case <-ctx.Done():
		}
	}
	for _, s := range started {
		s.viewGiveUp() // out of time
		r := s.resume
		r.mu.Lock()
		v := r.check
		w.c.add(cViewChecks, 1)
		switch {
		case !v.complete:
			w.c.add(cViewUnfinished, 1)
		case v.absent+v.extra+v.stale == 0:
			w.c.add(cViewMatched, 1)
		default:
			w.c.add(cViewMismatched, 1)
		}
		if v.complete {
			w.c.add(cViewMessages, int64(len(v.history)))
			w.c.add(cViewAbsent, v.absent)
			w.c.add(cViewExtra, v.extra)
			w.c.add(cViewStale, v.stale)
		}
		r.mu.Unlock()
	}
}

// checkResume counts, once every session goroutine has ended, each
// direction's acknowledged changes as the receiving side saw them: those
// to dropped sessions apart from the others.
func (w *worker) checkResume() {
	w.resumePairs(func(from, to *session) {
		t := tallyDir(from.resume, to.resume)
		to.resume.mu.Lock()
		dropped := to.resume.dropped
		to.resume.mu.Unlock()
		w.c.add(cDeletedUnseen, t.deletedUnseen)
		w.c.add(cDownAcked, t.downAcked)
		w.c.add(cDownCaughtUp, t.downCaughtUp)
		w.c.add(cDownLive, t.downLive)
		w.c.add(cDownDeleted, t.downDeleted)
		w.c.add(cDownEdits, t.downEdits)
		w.c.add(cDownDeletes, t.downDeletes)
		if dropped {
			w.c.add(cDroppedMissing, t.missing)
			w.c.add(cDroppedEditsMissing, t.editsMissing)
		} else {
			w.c.add(cOtherMissing, t.missing)
			w.c.add(cOtherEditsMissing, t.editsMissing)
		}
	})
	for _, i := range w.spec.Resume.Drops {
		if 2*i+1 < len(w.sessions) {
			if r := w.sessions[2*i+1].resume; r != nil && r.stillDown() {
				w.c.add(cDropStillDown, 1)
			}
		}
	}
}

// byDrop is the delivery histogram of a message sent at nanos: before
// the drop, while the dropped sessions were down, or after they were to
// come back.
func (w *worker) byDrop(nanos int64) *hist {
	switch {
	case nanos < w.dropNanos.Load():
		return w.hists[hDeliveryBeforeDrop]
	case nanos < w.backNanos.Load():
		return w.hists[hDeliveryWhileDown]
	}
	return w.hists[hDeliveryAfterDrop]
}

// dropped picks the pairs whose side B drops: --drop of the --pairs,
// spread evenly over them (pair p when ⌊(p+1)·drop/pairs⌋ passes
// ⌊p·drop/pairs⌋).
func dropped(p, drop, pairs int) bool {
	if pairs <= 0 {
		return false
	}
	return (p+1)*drop/pairs > p*drop/pairs
}
