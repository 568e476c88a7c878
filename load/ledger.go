package load

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// With --reconnect, a dm session keeps a ledger of its messages by id: the
// ids of its own messages the server acknowledged, and of its peer's it
// received, live or caught up from the DM's history after a reconnection.
// At the end the worker counts the acknowledged messages the peer never
// got: "every acknowledged message delivered" holds when that is 0.
//
// Acknowledged means stored, so such a message may be a lost live event
// (it is in the DM's history: it came after the catch-up, or was never
// caught up on) or a lost message. The final check tells them apart: once
// the sending stopped and the drain is over, for every session still
// connected whose peer has acknowledged messages it never saw, the worker
// loads the DM's history over that session's connection (newest first,
// back past the oldest of them, at most maxFinalPages pages; finalConcurrency
// at once, finalCheckTime in all) and each of those messages counts as
// found in history at the end, missing from history (a check that went
// back past it did not find it), or not checked (its session was down,
// the check was refused, cut or out of time, or stopped at the page bound
// before it; or it was acknowledged after the check began). The three add
// up to "acknowledged never delivered", whose meaning stays: neither live
// nor in a catch-up. Messages found at the end are not counted as
// delivered.
//
// The ledger's catch-up state is the session goroutine's alone: echoes,
// deliveries and history pages all arrive on its read loop. Its ids, and
// the final check, are under mu too: the worker reads them while the
// sessions still run, to pick what to look for. The worker reads the rest
// once every session goroutine has ended.

// How a message of the peer was first seen.
const (
	seenLive     byte = 1
	seenCaughtUp byte = 2
)

// catchUpPage is the count of one history load (the protocol's largest).
const catchUpPage = 100

// maxCatchUpPages bounds one catch-up: 100 pages of 100 messages.
const maxCatchUpPages = 100

// The final check's bounds: pages per DM (10,000 messages), checks under
// way at once per worker, and the time for all of a worker's checks.
const (
	maxFinalPages    = 100
	finalConcurrency = 64
	finalCheckTime   = 30 * time.Second
)

type ledger struct {
	mu    sync.Mutex     // acked, seen (and lastSeen with it) and final: the worker reads them during the run
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
	// final is the final check of this session's DM for the peer's
	// acknowledged messages it never saw (nil: none was made).
	final *finalCheck
	// For the lost events' breakdown (lost_events.go), in w.now()
	// nanoseconds: the latest unexpected close, the re-authentication
	// after it, and the end of the catch-up after that (0: none finished
	// yet); the floor (since) of the latest catch-up begun, and the
	// reconnections after an unexpected close.
	lostNanos, backNanos, caughtUpNanos int64
	catchFloor                          int64
	reconnects                          int
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
		l.mu.Lock()
		l.acked = append(l.acked, id)
		l.mu.Unlock()
	}
}

// live records a live delivery of the peer's message id; it returns how
// the message had been seen before (0: it is new).
func (l *ledger) live(id int64) byte {
	if id == 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
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
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[id] != 0 {
		return false
	}
	l.seen[id] = seenCaughtUp
	l.lastSeen = max(l.lastSeen, id)
	return true
}

// ackedIDs returns the ids acknowledged so far (they are only ever
// appended to).
func (l *ledger) ackedIDs() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked[:len(l.acked):len(l.acked)]
}

// unseen returns the ids of acked, the peer's acknowledged messages, that
// this session never received.
func (l *ledger) unseen(acked []int64) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int64
	for _, id := range acked {
		if l.seen[id] == 0 {
			out = append(out, id)
		}
	}
	return out
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

// finalCheck is one DM's history loaded at the end of the run, newest
// first, for the messages of the peer acknowledged and never seen by the
// session (targets).
type finalCheck struct {
	targets      map[int64]bool  // true: found
	sent         map[int64]int64 // of those found, the send time of their stamp (w.now() nanoseconds)
	left         int             // targets not found yet
	oldestTarget int64
	pages        int
	oldest       int64 // the oldest id loaded so far: the next page's cursor
	// exhausted: a page came back short, there is nothing older.
	exhausted bool
	// complete: the check ended by itself (every target found, back past
	// the oldest, history exhausted, or the page bound); ended: complete
	// or given up (refused, cut by the connection's end, out of time).
	complete, ended bool
	done            chan struct{} // closed when ended
	release         func()        // called when ended
}

func newFinalCheck(targets []int64, release func()) *finalCheck {
	f := &finalCheck{targets: make(map[int64]bool, len(targets)), done: make(chan struct{}), release: release}
	for _, id := range targets {
		if _, dup := f.targets[id]; !dup {
			f.targets[id] = false
			f.left++
		}
		if f.oldestTarget == 0 || id < f.oldestTarget {
			f.oldestTarget = id
		}
	}
	return f
}

// end ends the check (under its ledger's mu); complete: by itself.
func (f *finalCheck) end(complete bool) {
	if f.ended {
		return
	}
	f.ended, f.complete = true, complete
	close(f.done)
	if f.release != nil {
		f.release()
	}
}

// Where the final check leaves an acknowledged message never seen.
const (
	notChecked byte = iota
	foundAtEnd
	missingAtEnd
)

// verdict says what f found about id: found in history; missing, when the
// check ended by itself having loaded the history back past id (or all
// of it); otherwise not checked.
func (f *finalCheck) verdict(id int64) byte {
	if f == nil {
		return notChecked
	}
	found, ok := f.targets[id]
	switch {
	case !ok:
		return notChecked // acknowledged after the check began
	case found:
		return foundAtEnd
	case f.complete && (f.exhausted || f.oldest != 0 && id >= f.oldest):
		return missingAtEnd
	}
	return notChecked
}

// atEnd sorts the ids of acked that seen does not hold (the messages
// missing counts) by the final check f (nil: none was made).
func atEnd(acked []int64, seen map[int64]byte, f *finalCheck) (found, absent, unchecked int64) {
	for _, id := range acked {
		if seen[id] != 0 {
			continue
		}
		switch f.verdict(id) {
		case foundAtEnd:
			found++
		case missingAtEnd:
			absent++
		default:
			unchecked++
		}
	}
	return found, absent, unchecked
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
	l.catchFloor = l.since
	s.loadPage()
}

// loadPage asks for the next page of the catch-up under way.
func (s *session) loadPage() {
	c := s.ledger.catch
	// A failed write closes the connection: its end counts the catch-up
	// as failed.
	_ = s.writeLoad(historyMark, c.pages+1, c.oldest)
}

// writeLoad asks for page (1, 2, …) of the DM's history, the newest
// messages older than before (0: the newest of all), with a nonce of mark
// and the page.
func (s *session) writeLoad(mark byte, page int, before int64) error {
	fb := getFrameBuf()
	defer putFrameBuf(fb)
	fb.reset()
	fb.b = append(fb.b, `{"type":"load","payload":{"type":"chat","load_id":"`...)
	fb.b = strconv.AppendInt(fb.b, s.id.Load()^s.peer.id.Load(), 10)
	fb.b = append(fb.b, `","count":`...)
	fb.b = strconv.AppendInt(fb.b, catchUpPage, 10)
	if before != 0 {
		fb.b = append(fb.b, `,"before":"`...)
		fb.b = strconv.AppendInt(fb.b, before, 10)
		fb.b = append(fb.b, '"')
	}
	fb.b = append(fb.b, `},"nonce":"`...)
	fb.b = append(fb.b, mark)
	fb.b = strconv.AppendInt(fb.b, int64(page), 10)
	fb.b = append(fb.b, `"}`...)
	return s.write(fb.finish(ws.OpText), 0)
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
	l.caughtUpNanos = w.now()
}

// historyError takes an error answering a history load.
func (s *session) historyError() {
	if l := s.ledger; l != nil && l.catch != nil {
		s.w.c.add(cCatchUpFailed, 1)
		l.catch = nil // pending: the next reconnection starts again
	}
}

// isFinal reports whether nonce is a final check's history load's.
func isFinal(nonce []byte) bool { return len(nonce) > 0 && nonce[0] == finalMark }

// startFinal begins the final check of the session's DM for targets;
// release is called when it ends. A check that cannot be asked for ends
// at once, unfinished.
func (s *session) startFinal(targets []int64, release func()) *finalCheck {
	l := s.ledger
	f := newFinalCheck(targets, release)
	l.mu.Lock()
	l.final = f
	l.mu.Unlock()
	// Once the connection is gone (s.conn nil) the write fails; before,
	// its end (finalCut) ends the check.
	if s.writeLoad(finalMark, 1, 0) != nil {
		l.mu.Lock()
		f.end(false)
		l.mu.Unlock()
	}
	return f
}

// finalItem takes one message of a final check's history page.
func (s *session) finalItem(p []byte) {
	l := s.ledger
	if l == nil {
		return
	}
	id, _, ok := chatIDs(p)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.final
	if f == nil || f.ended {
		return
	}
	if f.oldest == 0 || id < f.oldest {
		f.oldest = id
	}
	if found, ok := f.targets[id]; ok && !found {
		f.targets[id] = true
		f.left--
		if content, ok := stringAfter(p, len(chatLoadKind), contentPrefix); ok {
			if _, _, _, nanos, ok := parseKindStamp(content); ok {
				if f.sent == nil {
					f.sent = make(map[int64]int64)
				}
				f.sent[id] = nanos
			}
		}
	}
}

// finalEnd takes a final check's page end marker: the check goes on to
// the next page, or is over.
func (s *session) finalEnd(p []byte) {
	l := s.ledger
	if l == nil {
		return
	}
	n, _ := loadCount(p)
	l.mu.Lock()
	f := l.final
	if f == nil || f.ended {
		l.mu.Unlock()
		return
	}
	f.pages++
	if n < catchUpPage {
		f.exhausted = true
	}
	if f.exhausted || f.left == 0 || f.oldest != 0 && f.oldest <= f.oldestTarget || f.pages >= maxFinalPages {
		f.end(true)
		l.mu.Unlock()
		return
	}
	page, before := f.pages+1, f.oldest
	l.mu.Unlock()
	if s.writeLoad(finalMark, page, before) != nil {
		s.finalGiveUp()
	}
}

// finalGiveUp ends the final check under way unfinished: refused, cut by
// the connection's end, or out of time.
func (s *session) finalGiveUp() {
	if l := s.ledger; l != nil {
		l.mu.Lock()
		if l.final != nil {
			l.final.end(false)
		}
		l.mu.Unlock()
	}
}

// checkHistory is the final check: for every session still connected
// whose peer has acknowledged messages it never saw, it loads the DM's
// history over the session's connection, finalConcurrency at once, until
// every check is over or budget has passed (what is left is then not
// checked).
func (w *worker) checkHistory(budget time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	slots := make(chan struct{}, finalConcurrency)
	var started []*session
	func() {
		for i := 0; i < w.spec.Pairs && 2*i+1 < len(w.sessions); i++ {
			a, b := w.sessions[2*i], w.sessions[2*i+1]
			if a.ledger == nil || b.ledger == nil {
				continue
			}
			for _, d := range [2][2]*session{{a, b}, {b, a}} {
				from, to := d[0], d[1]
				if !to.authed.Load() || from.id.Load() == 0 {
					continue // down: its messages are not checked
				}
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return
				}
				targets := to.ledger.unseen(from.ledger.ackedIDs())
				if len(targets) == 0 || !to.authed.Load() {
					<-slots
					continue
				}
				to.startFinal(targets, func() { <-slots })
				started = append(started, to)
			}
		}
	}()
	for _, s := range started {
		select {
		case <-s.ledger.final.done:
		case <-ctx.Done():
		}
	}
	for _, s := range started {
		s.finalGiveUp() // out of time
	}
}

// checkLedgers counts, once every session has ended, the acknowledged
// messages of each pair that the other side never received, and where
// the final check left them; by node: the receiving session's last.
func (w *worker) checkLedgers() {
	var n int64
	w.lostEvents = &LostEvents{BucketFromSeconds: lostFromSeconds}
	t0 := w.firstLoss.Load()
	if t0 == 0 {
		w.lostEvents.WorkersWithoutLoss = 1
	}
	for i := 0; i < w.spec.Pairs && 2*i+1 < len(w.sessions); i++ {
		a, b := w.sessions[2*i], w.sessions[2*i+1]
		if a.ledger == nil || b.ledger == nil {
			continue
		}
		n += missing(a.ledger.acked, b.ledger.seen) + missing(b.ledger.acked, a.ledger.seen)
		for _, d := range [2][2]*session{{a, b}, {b, a}} {
			from, to := d[0], d[1]
			f := to.ledger.final
			found, absent, unchecked := atEnd(from.ledger.acked, to.ledger.seen, f)
			w.c.add(cFoundAtEnd, found)
			w.c.add(cMissingAtEnd, absent)
			w.c.add(cUncheckedAtEnd, unchecked)
			nc := to.nodeC()
			nc.add(nFoundAtEnd, found)
			nc.add(nMissingAtEnd, absent)
			nc.add(nUncheckedAtEnd, unchecked)
			w.lostEvents.receiver(to.ledger, f, from.ledger.acked, t0, from.ledger.backNanos != 0)
			if f != nil {
				w.c.add(cFinalChecks, 1)
				if !f.complete {
					w.c.add(cFinalUnfinished, 1)
				}
			}
		}
	}
	w.c.add(cMissing, n)
}
