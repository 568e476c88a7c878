package load

import (
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

	rc := reconnectResult(w.c.snapshot(), nil)
	require.NotNil(t, rc.Missing)
	require.EqualValues(t, 2, *rc.Missing)
	require.False(t, rc.AllDelivered)
	require.EqualValues(t, 101, rc.CaughtUp)
	unchecked := w.c.snapshot()
	unchecked["ledger_unchecked"] = 1
	require.Nil(t, reconnectResult(unchecked, nil).Missing, "not checked: no figure")
}
