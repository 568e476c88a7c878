package load

import (
	"strconv"
	"time"

	"github.com/gobwas/ws"
)

// With --reconnect, a dm session keeps a ledger of its messages by id: the
// ids of its own messages the server acknowledged, and of its peer's it
// received, live or caught up from the DM's history after a reconnection.
// At the end the worker counts the acknowledged messages the peer never
// got: "every acknowledged message delivered" holds when that is 0.
//
// The ledger is the session goroutine's alone: echoes, deliveries and
// history pages all arrive on its read loop. The worker reads it once
// every session goroutine has ended.

// How a message of the peer was first seen.
const (
	seenLive     byte = 1
	seenCaughtUp byte = 2
)

// catchUpPage is the count of one history load (the protocol's largest).
const catchUpPage = 100

// maxCatchUpPages bounds one catch-up: 100 pages of 100 messages.
const maxCatchUpPages = 100

type ledger struct {
	acked []int64        // ids of this session's dm messages, as acknowledged
	seen  map[int64]byte // ids of the peer's dm messages received, and how
	// lastSeen is the newest peer message received (live or caught up).
	lastSeen int64
	// since is where the pending catch-up goes back to: lastSeen when the
	// connection was lost, kept until a catch-up finishes (one cut short
	// is started again from the same point).
	since   int64
	pending bool
	catch   *catchUp // the history load under way
}

func newLedger() *ledger { return &ledger{seen: make(map[int64]byte)} }

// catchUp is one catch-up on history: pages loaded newest first (each page
// oldest first), back to the message since.
type catchUp struct {
	since   int64
	lostAt  time.Time // the close the session is catching up after
	pages   int
	oldest  int64 // the oldest id loaded so far: the next page's cursor
	reached bool  // a page went back to since
}

// lost notes the end of a connection: the catch-up after the reconnection
// goes back to what was last seen now, unless an earlier one is pending.
func (l *ledger) lost() {
	if !l.pending {
		l.since, l.pending = l.lastSeen, true
	}
}

// isHistory reports whether nonce is a catch-up's history load's.
func isHistory(nonce []byte) bool { return len(nonce) > 0 && nonce[0] == historyMark }

// ack records the id of an acknowledged message of this session.
func (l *ledger) ack(id int64) {
	if id != 0 {
		l.acked = append(l.acked, id)
	}
}

// live records a live delivery of the peer's message id; it returns how
// the message had been seen before (0: it is new).
func (l *ledger) live(id int64) byte {
	if id == 0 {
		return 0
	}
	if how := l.seen[id]; how != 0 {
		return how
	}
	l.seen[id] = seenLive
	l.lastSeen = max(l.lastSeen, id)
	return 0
}

// caughtUp records the peer's message id found in history; false when it
// had been seen already.
func (l *ledger) caughtUp(id int64) bool {
	if l.seen[id] != 0 {
		return false
	}
	l.seen[id] = seenCaughtUp
	l.lastSeen = max(l.lastSeen, id)
	return true
}

// missing counts the ids in acked that seen does not hold: the messages
// of one direction of a pair acknowledged and never received.
func missing(acked []int64, seen map[int64]byte) int64 {
	var n int64
	for _, id := range acked {
		if seen[id] == 0 {
			n++
		}
	}
	return n
}

// startCatchUp loads the DM's newest history page, after a reconnection
// following a loss at lostAt. The answers come through the read loop
// (handle: historyItem, historyEnd, historyError).
func (s *session) startCatchUp(lostAt time.Time) {
	l := s.ledger
	if l == nil || s.peer == nil || !l.pending || s.peer.id.Load() == 0 {
		return // nothing to catch up on, or no DM yet (its peer never authenticated)
	}
	l.catch = &catchUp{since: l.since, lostAt: lostAt}
	s.loadPage()
}

// loadPage asks for the next page of the catch-up under way.
func (s *session) loadPage() {
	c := s.ledger.catch
	fb := getFrameBuf()
	defer putFrameBuf(fb)
	fb.reset()
	fb.b = append(fb.b, `{"type":"load","payload":{"type":"chat","load_id":"`...)
	fb.b = strconv.AppendInt(fb.b, s.id.Load()^s.peer.id.Load(), 10)
	fb.b = append(fb.b, `","count":`...)
	fb.b = strconv.AppendInt(fb.b, catchUpPage, 10)
	if c.oldest != 0 {
		fb.b = append(fb.b, `,"before":"`...)
		fb.b = strconv.AppendInt(fb.b, c.oldest, 10)
		fb.b = append(fb.b, '"')
	}
	fb.b = append(fb.b, `},"nonce":"`...)
	fb.b = append(fb.b, historyMark)
	fb.b = strconv.AppendInt(fb.b, int64(c.pages+1), 10)
	fb.b = append(fb.b, `"}`...)
	// A failed write closes the connection: its end counts the catch-up
	// as failed.
	_ = s.write(fb.finish(ws.OpText), 0)
}

// historyItem takes one message of a history page.
func (s *session) historyItem(p []byte) {
	w, l := s.w, s.ledger
	if l == nil || l.catch == nil {
		return
	}
	c := l.catch
	id, author, ok := chatIDs(p)
	if !ok {
		return
	}
	if c.oldest == 0 || id < c.oldest {
		c.oldest = id
	}
	if id <= c.since {
		c.reached = true
		return
	}
	if author != s.peer.id.Load() {
		return // this session's own message
	}
	content, ok := stringAfter(p, len(chatLoadKind), contentPrefix)
	if !ok {
		return
	}
	if kind, _, _, _, ok := parseKindStamp(content); !ok || kind != kindDM {
		return
	}
	if l.caughtUp(id) {
		w.c.add(cCaughtUp, 1)
		s.nodeC().add(nCaughtUp, 1)
	} else {
		w.c.add(cCatchUpOverlap, 1)
	}
}

// historyEnd takes a history page's end marker: the catch-up goes on to
// the next page, or is over.
func (s *session) historyEnd(p []byte) {
	w, l := s.w, s.ledger
	if l == nil || l.catch == nil {
		return
	}
	c := l.catch
	c.pages++
	n, _ := loadCount(p)
	if !c.reached && n >= catchUpPage && c.pages < maxCatchUpPages {
		s.loadPage()
		return
	}
	if !c.reached && n >= catchUpPage {
		w.c.add(cCatchUpTruncated, 1)
	}
	w.c.add(cCatchUps, 1)
	w.hists[hReconnectCaughtUp].record(time.Since(c.lostAt))
	l.catch, l.pending = nil, false
}

// historyError takes an error answering a history load.
func (s *session) historyError() {
	if l := s.ledger; l != nil && l.catch != nil {
		s.w.c.add(cCatchUpFailed, 1)
		l.catch = nil // pending: the next reconnection starts again
	}
}

// checkLedgers counts, once every session has ended, the acknowledged
// messages of each pair that the other side never received.
func (w *worker) checkLedgers() {
	var n int64
	for i := 0; i < w.spec.Pairs && 2*i+1 < len(w.sessions); i++ {
		a, b := w.sessions[2*i], w.sessions[2*i+1]
		if a.ledger == nil || b.ledger == nil {
			continue
		}
		n += missing(a.ledger.acked, b.ledger.seen) + missing(b.ledger.acked, a.ledger.seen)
	}
	w.c.add(cMissing, n)
}
