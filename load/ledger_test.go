package load

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/protocol"
)

func TestLedger(t *testing.T) {
	l := newLedger()
	require.Zero(t, l.live(5))
	require.Equal(t, seenLive, l.live(5), "seen twice")
	require.Zero(t, l.live(0), "no id: not kept")
	l.lost()
	require.True(t, l.pending)
	require.EqualValues(t, 5, l.since)
	require.True(t, l.caughtUp(7))
	require.False(t, l.caughtUp(7))
	require.False(t, l.caughtUp(5), "seen live before")
	require.Equal(t, seenCaughtUp, l.live(7))
	require.EqualValues(t, 7, l.lastSeen)
	l.lost() // lost again before the catch-up finished: it still goes back to 5
	require.EqualValues(t, 5, l.since)

	l.ack(5)
	l.ack(0)
	l.ack(9)
	require.Equal(t, []int64{5, 9}, l.acked)
	require.EqualValues(t, 1, missing(l.acked, l.seen))
	require.EqualValues(t, 2, missing([]int64{1, 2, 5}, l.seen))
}

// loadRequest is the payload of a catch-up's history load.
type loadRequest struct {
	Type    string `json:"type"`
	Payload struct {
		Type   string `json:"type"`
		LoadID string `json:"load_id"`
		Count  int    `json:"count"`
		Before string `json:"before"`
	} `json:"payload"`
	Nonce string `json:"nonce"`
}

func decodeLoad(t *testing.T, p []byte) loadRequest {
	t.Helper()
	var r loadRequest
	require.NoError(t, json.Unmarshal(p, &r), "%s", p)
	require.Equal(t, "load", r.Type)
	require.Equal(t, "chat", r.Payload.Type)
	require.Equal(t, "172", r.Payload.LoadID) // 100 XOR 200
	require.Equal(t, catchUpPage, r.Payload.Count)
	return r
}

// endMarker is a history page's end, as the server writes it.
func endMarker(n int, nonce string) []byte {
	return protocol.Frame("load", struct {
		Type   string `json:"type"`
		LoadID string `json:"load_id"`
		Count  int    `json:"count"`
	}{"chat", "172", n}, nonce)
}

// A reconnected session pages back through history to its last seen
// message; what it also got live counts once; at the end every
// acknowledged message its peer never received is counted.
func TestCatchUp(t *testing.T) {
	w, a, b := testPair(t, 2, 0, 0, true)
	out := pipe(t, b)
	stamp := func(seq int64) string { return string(appendKindStamp(nil, kindDM, false, uint64(seq), w.now())) }

	// b gets a's 1001 and 1002 live, then its connection is lost.
	b.handle(chatFrame("send", 1001, 100, stamp(1001), ""))
	b.handle(chatFrame("send", 1002, 100, stamp(1002), ""))
	b.ledger.lost()
	lostAt := time.Now().Add(-time.Second)
	b.firstAfter = lostAt
	b.startCatchUp(lostAt)
	r := decodeLoad(t, next(t, out))
	require.Equal(t, "h1", r.Nonce)
	require.Empty(t, r.Payload.Before, "the first page: the newest")

	// 1105 arrives live before the history: the first delivery since the
	// loss.
	b.handle(chatFrame("send", 1105, 100, stamp(1105), ""))
	require.EqualValues(t, 1, count(w, hReconnectFirst))
	require.True(t, b.firstAfter.IsZero())

	// Page 1: 1006..1105, oldest first, full; 1010 is b's own message.
	for id := int64(1006); id <= 1105; id++ {
		author := int64(100)
		if id == 1010 {
			author = 200
		}
		b.handle(chatFrame("load", id, author, stamp(id), "h1"))
	}
	b.handle(endMarker(catchUpPage, "h1"))
	r = decodeLoad(t, next(t, out))
	require.Equal(t, "h2", r.Nonce)
	require.Equal(t, "1006", r.Payload.Before, "the next page is older than the oldest loaded")
	require.EqualValues(t, 98, w.c.get(cCaughtUp))
	require.EqualValues(t, 1, w.c.get(cCatchUpOverlap), "1105: live, then in history")

	// Page 2 reaches 1002, the last seen: the catch-up is over.
	for id := int64(1001); id <= 1005; id++ {
		b.handle(chatFrame("load", id, 100, stamp(id), "h2"))
	}
	b.handle(endMarker(5, "h2"))
	require.EqualValues(t, 101, w.c.get(cCaughtUp))
	require.EqualValues(t, 1, w.c.get(cCatchUps))
	require.EqualValues(t, 1, count(w, hReconnectCaughtUp))
	require.Nil(t, b.ledger.catch)
	require.False(t, b.ledger.pending)
	require.EqualValues(t, 101, w.nodes[0][nCaughtUp].Load())

	// Live frames of messages already seen count once.
	b.handle(chatFrame("send", 1050, 100, stamp(1050), "")) // caught up before
	b.handle(chatFrame("send", 1105, 100, stamp(1105), "")) // live before
	require.EqualValues(t, 2, w.c.get(cCatchUpOverlap))
	require.EqualValues(t, 1, w.c.get(cDuplicates))
	require.EqualValues(t, 3, w.c.get(cDelivered), "1001, 1002, 1105")
	require.EqualValues(t, 1, count(w, hReconnectFirst))

	// A catch-up refused: counted, and started again after the next
	// reconnection from the same point.
	b.ledger.lost()
	b.startCatchUp(time.Now())
	r = decodeLoad(t, next(t, out))
	require.Equal(t, "h1", r.Nonce)
	b.handle(protocol.ErrorFrame(protocol.ErrRateLimited, "h1"))
	require.EqualValues(t, 1, w.c.get(cCatchUpFailed))
	require.Nil(t, b.ledger.catch)
	require.True(t, b.ledger.pending)
	require.EqualValues(t, 1105, b.ledger.since)

	// a's acknowledged messages: all of 1001..1105 but 1010, and 1200,
	// which b never got; b's 1010, which a never got.
	for id := int64(1001); id <= 1105; id++ {
		if id != 1010 {
			s := stamp(id)
			a.handle(chatFrame("send", id, 100, s, s))
		}
	}
	s := stamp(1200)
	a.handle(chatFrame("send", 1200, 100, s, s))
	s = stamp(1010)
	b.handle(chatFrame("send", 1010, 200, s, s))
	require.Len(t, a.ledger.acked, 105)
	w.checkLedgers()
	require.EqualValues(t, 2, w.c.get(cMissing))
	require.EqualValues(t, 2, w.c.get(cUncheckedAtEnd), "no final check")

	rc := reconnectResult(w.c.snapshot(), nil)
	require.NotNil(t, rc.Missing)
	require.EqualValues(t, 2, *rc.Missing)
	require.False(t, rc.AllDelivered)
	require.EqualValues(t, 101, rc.CaughtUp)
	unchecked := w.c.snapshot()
	unchecked["ledger_unchecked"] = 1
	require.Nil(t, reconnectResult(unchecked, nil).Missing, "not checked: no figure")
}

// The final check's verdict on each acknowledged message never seen:
// found in history, missing from it (the check went back past it, or
// through all of it), or not checked.
func TestAtEnd(t *testing.T) {
	seen := map[int64]byte{1: seenLive, 2: seenCaughtUp}
	acked := []int64{1, 2, 10, 20, 30, 40, 50}
	require.EqualValues(t, 5, missing(acked, seen))
	counts := func(f *finalCheck) [3]int64 {
		found, absent, unchecked := atEnd(acked, seen, f)
		require.EqualValues(t, missing(acked, seen), found+absent+unchecked, "they add up to acknowledged never delivered")
		return [3]int64{found, absent, unchecked}
	}
	require.Equal(t, [3]int64{0, 0, 5}, counts(nil), "no check: the session was down")

	// 50 was acknowledged after the check began: never looked for.
	check := func() *finalCheck {
		f := newFinalCheck([]int64{40, 30, 20, 10, 20}, nil)
		require.Equal(t, 4, f.left, "20 once")
		require.EqualValues(t, 10, f.oldestTarget)
		f.targets[20] = true
		f.left--
		return f
	}

	// Ended by itself, back to 15 (the page bound): 10 is older than
	// anything loaded.
	f := check()
	f.oldest = 15
	f.end(true)
	require.Equal(t, [3]int64{1, 2, 2}, counts(f))
	require.Equal(t, foundAtEnd, f.verdict(20))
	require.Equal(t, missingAtEnd, f.verdict(30))
	require.Equal(t, notChecked, f.verdict(10))
	require.Equal(t, notChecked, f.verdict(50))

	// Back to 10: everything looked for is covered.
	f = check()
	f.oldest = 10
	f.end(true)
	require.Equal(t, [3]int64{1, 3, 1}, counts(f))

	// The DM's history ran out (a short page) above 10: 10 is not there.
	f = check()
	f.oldest, f.exhausted = 25, true
	f.end(true)
	require.Equal(t, [3]int64{1, 3, 1}, counts(f))
	f = check()
	f.exhausted = true // an empty history: nothing is there
	f.end(true)
	require.Equal(t, [3]int64{1, 3, 1}, counts(f))

	// Given up (refused, cut, out of time): what was found is found, the
	// rest not checked.
	f = check()
	f.oldest = 10
	f.end(false)
	f.end(true) // ended once
	require.False(t, f.complete)
	require.Equal(t, [3]int64{1, 0, 4}, counts(f))
}

// history answers a load of a DM holding store (ascending ids, authors by
// id) as the server does: the newest count messages strictly older than
// before (0: all), oldest first, then the end marker.
func history(store []int64, author func(int64) int64, before int64, nonce string) [][]byte {
	var page []int64
	for _, id := range store {
		if before == 0 || id < before {
			page = append(page, id)
		}
	}
	page = page[max(0, len(page)-catchUpPage):]
	var out [][]byte
	for _, id := range page {
		out = append(out, chatFrame("load", id, author(id), "1.1", nonce))
	}
	return append(out, endMarker(len(page), nonce))
}

// At the end, a connected session whose peer's acknowledged messages it
// never saw loads the DM's history back past the oldest of them: those
// there are found, one the check went past missing; the messages of a
// session down, or acknowledged once the check began, are not checked.
func TestFinalCheck(t *testing.T) {
	w, a, b := testPair(t, 2, 0, 1, true)
	out := pipe(t, b)
	b.authed.Store(true) // a is down
	author := func(id int64) int64 {
		if id == 1160 {
			return 200 // b's own
		}
		return 100
	}
	// The DM's history: 1001..1250, but 1150, acknowledged to a, is not
	// there.
	var store []int64
	for id := int64(1001); id <= 1250; id++ {
		if id != 1150 {
			store = append(store, id)
		}
	}
	// a's acknowledged messages: all but b's own 1160; b saw up to 1200
	// but 1050 and 1100 (live events lost) and 1150 (lost).
	for id := int64(1001); id <= 1250; id++ {
		if id == 1160 {
			continue
		}
		s := string(appendKindStamp(nil, kindDM, false, uint64(id), w.now()))
		a.handle(chatFrame("send", id, 100, s, s))
		if id <= 1200 && id != 1050 && id != 1100 && id != 1150 {
			b.handle(chatFrame("send", id, 100, s, ""))
		}
	}
	// b's 2001, acknowledged, which a (down) never got.
	s := string(appendKindStamp(nil, kindDM, false, 1, w.now()))
	b.handle(chatFrame("send", 2001, 200, s, s))

	done := make(chan struct{})
	go func() { w.checkHistory(time.Minute); close(done) }()
	r := decodeLoad(t, next(t, out))
	require.Equal(t, "e1", r.Nonce)
	require.Empty(t, r.Payload.Before, "the first page: the newest")
	// A message acknowledged once the check began: not looked for.
	s = string(appendKindStamp(nil, kindDM, false, 1300, w.now()))
	a.handle(chatFrame("send", 1300, 100, s, s))
	for _, p := range history(store, author, 0, "e1") { // 1151..1250
		b.handle(p)
	}
	r = decodeLoad(t, next(t, out))
	require.Equal(t, "e2", r.Nonce)
	require.Equal(t, "1151", r.Payload.Before)
	for _, p := range history(store, author, 1151, "e2") { // 1050..1149: back to the oldest looked for
		b.handle(p)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the final check did not end")
	}
	select {
	case p := <-out:
		t.Fatalf("a page too many: %s", p)
	default:
	}
	require.Nil(t, a.ledger.final, "a is down: not checked")

	w.checkLedgers()
	require.EqualValues(t, 55, w.c.get(cMissing), "1050, 1100, 1150, 1201..1250, 1300 to b; 2001 to a")
	require.EqualValues(t, 52, w.c.get(cFoundAtEnd), "1050, 1100, 1201..1250")
	require.EqualValues(t, 1, w.c.get(cMissingAtEnd), "1150")
	require.EqualValues(t, 2, w.c.get(cUncheckedAtEnd), "1300 (too late), 2001 (a down)")
	require.EqualValues(t, 1, w.c.get(cFinalChecks))
	require.Zero(t, w.c.get(cFinalUnfinished))
	require.EqualValues(t, 52, w.nodes[1][nFoundAtEnd].Load(), "by the receiving session's node")
	require.EqualValues(t, 1, w.nodes[1][nMissingAtEnd].Load())
	require.EqualValues(t, 1, w.nodes[1][nUncheckedAtEnd].Load())
	require.EqualValues(t, 1, w.nodes[0][nUncheckedAtEnd].Load())
	require.Zero(t, w.c.get(cCaughtUp), "found at the end is not caught up")
	le := w.lostEvents
	require.EqualValues(t, 52, le.Found)
	require.EqualValues(t, 52, le.Stationary, "b never lost its connection")
	require.EqualValues(t, 1, le.StationaryReceivers)
	require.EqualValues(t, 1, le.WorkersWithoutLoss)
	require.EqualValues(t, 52, le.FromFirstLoss.Stationary.Unknown, "no loss: no t0")
	require.EqualValues(t, 1, b.ledger.final.sent[1050], "the stamp of the history's content (1.1)")
	require.Same(t, le, w.result().LostEvents)

	rc := reconnectResult(w.c.snapshot(), nil)
	require.EqualValues(t, 55, *rc.Missing)
	require.EqualValues(t, 52, *rc.FoundAtEnd)
	require.EqualValues(t, 1, *rc.MissingAtEnd)
	require.EqualValues(t, 2, *rc.UncheckedAtEnd)
	require.EqualValues(t, 1, rc.FinalChecks)
	b2, err := json.Marshal(rc)
	require.NoError(t, err)
	for _, field := range []string{`"acknowledged_never_delivered":55`, `"found_in_history_at_end":52`,
		`"missing_from_history_at_end":1`, `"not_checked_at_end":2`, `"final_checks":1`, `"final_checks_unfinished":0`} {
		require.Contains(t, string(b2), field)
	}
	nodes := make([]NodeResult, 2)
	mergeNodes(nodes, w.result().Nodes)
	require.EqualValues(t, 52, nodes[1].FoundAtEnd)
	require.EqualValues(t, 1, nodes[0].UncheckedAtEnd)
	var summary bytes.Buffer
	printSummary(&summary, &Result{Scenario: "dm", Reconnect: rc, Nodes: nodes})
	for _, line := range []string{"acknowledged never delivered  55: NOT every acknowledged message delivered",
		"of those, by the final history check: 52 found in history at the end, 1 missing from history, 2 not checked (final checks: 1, 0 of them unfinished)",
		"end: found/missing/unchecked", "52/1/1"} {
		require.Contains(t, summary.String(), line)
	}
	unchecked := w.c.snapshot()
	unchecked["ledger_unchecked"] = 1
	require.Nil(t, reconnectResult(unchecked, nil).FoundAtEnd, "not checked: no figures")
}

// A final check refused, cut by the connection's end or out of time ends
// unfinished: what it had not found is not checked.
func TestFinalCheckUnfinished(t *testing.T) {
	setup := func(t *testing.T) (*worker, *session, <-chan []byte) {
		w, a, b := testPair(t, 1, 0, 0, true)
		out := pipe(t, b)
		b.authed.Store(true)
		for id := int64(1001); id <= 1003; id++ {
			s := string(appendKindStamp(nil, kindDM, false, uint64(id), w.now()))
			a.handle(chatFrame("send", id, 100, s, s))
		}
		return w, b, out
	}
	run := func(t *testing.T, w *worker, budget time.Duration, answer func()) {
		done := make(chan struct{})
		go func() { w.checkHistory(budget); close(done) }()
		answer()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the final check did not end")
		}
		w.checkLedgers()
		require.EqualValues(t, 1, w.c.get(cFinalUnfinished))
	}
	t.Run("refused", func(t *testing.T) {
		w, b, out := setup(t)
		run(t, w, time.Minute, func() {
			require.Equal(t, "e1", decodeLoad(t, next(t, out)).Nonce)
			b.handle(chatFrame("load", 1003, 100, "1.1", "e1"))
			b.handle(endMarker(catchUpPage, "e1"))
			require.Equal(t, "e2", decodeLoad(t, next(t, out)).Nonce)
			b.handle(protocol.ErrorFrame(protocol.ErrRateLimited, "e2"))
		})
		require.EqualValues(t, 1, w.c.get(cFoundAtEnd))
		require.EqualValues(t, 2, w.c.get(cUncheckedAtEnd))
	})
	t.Run("cut", func(t *testing.T) {
		w, b, out := setup(t)
		run(t, w, time.Minute, func() {
			next(t, out)
			b.finalGiveUp() // what the session goroutine does when the connection ends
			b.handle(endMarker(0, "e1"))
		})
		require.EqualValues(t, 3, w.c.get(cUncheckedAtEnd), "an answer after the end does not count")
	})
	t.Run("out of time", func(t *testing.T) {
		w, b, out := setup(t)
		run(t, w, 100*time.Millisecond, func() { next(t, out) })
		b.handle(endMarker(0, "e1"))
		w.c = counters{}
		w.checkLedgers()
		require.EqualValues(t, 3, w.c.get(cUncheckedAtEnd))
		require.EqualValues(t, 1, w.c.get(cFinalUnfinished))
	})
	t.Run("gone", func(t *testing.T) {
		w, b, _ := setup(t)
		b.mu.Lock()
		b.conn = nil // the connection ended after b was seen connected
		b.mu.Unlock()
		run(t, w, time.Minute, func() {})
		require.EqualValues(t, 3, w.c.get(cUncheckedAtEnd))
	})
}
