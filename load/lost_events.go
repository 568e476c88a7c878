package load

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// The lost live events: a breakdown of the messages the final check found
// in history at the end (acknowledged, never delivered live nor caught
// up), to tell which receivers lost them and when they were sent.
//
// By receiver: moved, the receiving session lost its connection during
// the run (an unexpected close) and reconnected; stationary, it never
// lost it. (A session lost and not back is not checked at the end.) Of
// each, how many came from a sender (the receiver's peer) moved itself.
//
// By send time, the stamp's in the content loaded from history (as a
// delivery's is parsed; a stamp counts on the sender's worker's clock,
// which is the receiver's: the two sides of a pair are on one worker):
//   - from t0, the worker's first unexpected close (the kill), in 1 s
//     buckets from -2 s to +15 s, and before / after them; moved and
//     stationary apart. Each worker counts from its own t0 and the parent
//     adds the workers' buckets up: the workers' t0 differ by the time
//     their first sessions noticed the loss (a few ms).
//   - for moved receivers, from their own (latest) reconnection: sent
//     before the loss, between the loss and the re-authentication, between
//     it and the end of the catch-up on history after it, after that end,
//     or, when no catch-up finished after it, before / after the
//     re-authentication; and how many were at or below the floor of that
//     catch-up (the newest message seen when the connection was lost: a
//     catch-up goes back to it and no further, so an older message never
//     seen is not looked for). Also the same 1 s buckets from the
//     re-authentication.

// The send-time buckets: lostBuckets of 1 s from lostFromSeconds on.
const (
	lostFromSeconds = -2
	lostBuckets     = 17 // -2 s … +15 s
)

// SendTimes is a histogram of send times relative to a reference time.
type SendTimes struct {
	Before int64 `json:"before"` // before lostFromSeconds
	// Buckets[i] counts the sends in [lostFromSeconds+i, lostFromSeconds+i+1) s.
	Buckets [lostBuckets]int64 `json:"buckets"`
	After   int64              `json:"after"` // at lostFromSeconds+lostBuckets s or later
	// Unknown: no stamp in the content, or no reference time.
	Unknown int64 `json:"unknown"`
}

// bucket is the index into Buckets of d (-1: before, lostBuckets: after).
func bucket(d time.Duration) int {
	s := int64(d / time.Second)
	if d < 0 && d%time.Second != 0 {
		s-- // floor
	}
	switch i := s - lostFromSeconds; {
	case i < 0:
		return -1
	case i >= lostBuckets:
		return lostBuckets
	default:
		return int(i)
	}
}

// add counts a send at d from the reference; ok false: unknown.
func (h *SendTimes) add(d time.Duration, ok bool) {
	if !ok {
		h.Unknown++
		return
	}
	switch i := bucket(d); {
	case i < 0:
		h.Before++
	case i >= lostBuckets:
		h.After++
	default:
		h.Buckets[i]++
	}
}

func (h *SendTimes) merge(o *SendTimes) {
	h.Before += o.Before
	h.After += o.After
	h.Unknown += o.Unknown
	for i := range h.Buckets {
		h.Buckets[i] += o.Buckets[i]
	}
}

// ByCatchUp places the sends to moved receivers by their own latest
// reconnection.
type ByCatchUp struct {
	BeforeLoss       int64 `json:"sent_before_loss"`
	LossToReauth     int64 `json:"sent_loss_to_reauth"`
	ReauthToCaughtUp int64 `json:"sent_reauth_to_caught_up"`
	AfterCaughtUp    int64 `json:"sent_after_caught_up"`
	// No catch-up finished after the re-authentication (failed, cut, or
	// there was nothing to catch up on: no DM yet).
	NoCatchUpBeforeReauth int64 `json:"no_catch_up_sent_before_reauth"`
	NoCatchUpAfterReauth  int64 `json:"no_catch_up_sent_after_reauth"`
	Unknown               int64 `json:"unknown"` // no stamp
	// AtOrBelowFloor: of all of them, the ids at or below the catch-up's
	// floor (the newest message seen at the loss), which it never looks for.
	AtOrBelowFloor int64 `json:"at_or_below_catch_up_floor"`
}

// LostEvents is the breakdown of the messages found in history at the end.
type LostEvents struct {
	Found      int64 `json:"found_in_history_at_end"`
	Moved      int64 `json:"moved"`      // ... to receivers that lost their connection and reconnected
	Stationary int64 `json:"stationary"` // ... to receivers that never lost it
	// The receiving sides with any: moved, of those reconnected more than
	// once (ByCatchUp is about their latest reconnection), stationary.
	MovedReceivers      int64 `json:"moved_receivers"`
	MovedReceiversTwice int64 `json:"moved_receivers_reconnected_more_than_once"`
	StationaryReceivers int64 `json:"stationary_receivers"`
	// Of Moved and Stationary: the messages whose sender (the receiver's
	// peer) was itself moved.
	MovedFromMovedSender      int64 `json:"moved_from_moved_sender"`
	StationaryFromMovedSender int64 `json:"stationary_from_moved_sender"`
	BucketFromSeconds         int   `json:"bucket_from_seconds"` // the first bucket's start; buckets are 1 s
	WorkersWithoutLoss        int64 `json:"workers_without_loss"`
	FromFirstLoss             struct {
		Moved      SendTimes `json:"moved"`
		Stationary SendTimes `json:"stationary"`
	} `json:"by_send_time_from_first_loss"`
	MovedFromReauth SendTimes `json:"moved_by_send_time_from_reauth"`
	MovedByCatchUp  ByCatchUp `json:"moved_by_own_catch_up"`
}

func (e *LostEvents) merge(o *LostEvents) {
	e.Found += o.Found
	e.Moved += o.Moved
	e.Stationary += o.Stationary
	e.MovedReceivers += o.MovedReceivers
	e.MovedReceiversTwice += o.MovedReceiversTwice
	e.StationaryReceivers += o.StationaryReceivers
	e.MovedFromMovedSender += o.MovedFromMovedSender
	e.StationaryFromMovedSender += o.StationaryFromMovedSender
	e.WorkersWithoutLoss += o.WorkersWithoutLoss
	e.BucketFromSeconds = lostFromSeconds
	e.FromFirstLoss.Moved.merge(&o.FromFirstLoss.Moved)
	e.FromFirstLoss.Stationary.merge(&o.FromFirstLoss.Stationary)
	e.MovedFromReauth.merge(&o.MovedFromReauth)
	c, d := &e.MovedByCatchUp, &o.MovedByCatchUp
	c.BeforeLoss += d.BeforeLoss
	c.LossToReauth += d.LossToReauth
	c.ReauthToCaughtUp += d.ReauthToCaughtUp
	c.AfterCaughtUp += d.AfterCaughtUp
	c.NoCatchUpBeforeReauth += d.NoCatchUpBeforeReauth
	c.NoCatchUpAfterReauth += d.NoCatchUpAfterReauth
	c.Unknown += d.Unknown
	c.AtOrBelowFloor += d.AtOrBelowFloor
}

// receiver counts the messages of acked the receiver (ledger l, final
// check f) never saw and f found; t0 is the worker's first loss (w.now()
// nanoseconds; 0: none); senderMoved: the sender was moved.
func (e *LostEvents) receiver(l *ledger, f *finalCheck, acked []int64, t0 int64, senderMoved bool) {
	if f == nil {
		return
	}
	moved := l.backNanos != 0
	var n int64
	for _, id := range acked {
		if l.seen[id] != 0 || f.verdict(id) != foundAtEnd {
			continue
		}
		n++
		sent, ok := f.sent[id]
		h := &e.FromFirstLoss.Stationary
		if moved {
			h = &e.FromFirstLoss.Moved
		}
		h.add(time.Duration(sent-t0), ok && t0 != 0)
		if !moved {
			continue
		}
		e.MovedFromReauth.add(time.Duration(sent-l.backNanos), ok)
		c := &e.MovedByCatchUp
		if id <= l.catchFloor {
			c.AtOrBelowFloor++
		}
		switch {
		case !ok:
			c.Unknown++
		case l.caughtUpNanos == 0 && sent < l.backNanos:
			c.NoCatchUpBeforeReauth++
		case l.caughtUpNanos == 0:
			c.NoCatchUpAfterReauth++
		case sent < l.lostNanos:
			c.BeforeLoss++
		case sent < l.backNanos:
			c.LossToReauth++
		case sent < l.caughtUpNanos:
			c.ReauthToCaughtUp++
		default:
			c.AfterCaughtUp++
		}
	}
	if n == 0 {
		return
	}
	e.Found += n
	switch {
	case senderMoved && moved:
		e.MovedFromMovedSender += n
	case senderMoved:
		e.StationaryFromMovedSender += n
	}
	if moved {
		e.Moved += n
		e.MovedReceivers++
		if l.reconnects > 1 {
			e.MovedReceiversTwice++
		}
	} else {
		e.Stationary += n
		e.StationaryReceivers++
	}
}

// String is the histogram on one line: "<-2 n | -2:n -1:n … 14:n | ≥15 n".
func (h *SendTimes) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "<%d %d |", lostFromSeconds, h.Before)
	for i, n := range h.Buckets {
		fmt.Fprintf(&b, " %d:%d", lostFromSeconds+i, n)
	}
	fmt.Fprintf(&b, " | ≥%d %d", lostFromSeconds+lostBuckets, h.After)
	if h.Unknown != 0 {
		fmt.Fprintf(&b, " | unknown %d", h.Unknown)
	}
	return b.String()
}

// print writes the breakdown's lines of the summary (tw: tab-separated).
func (e *LostEvents) print(tw io.Writer) {
	fmt.Fprintf(tw, "lost live events\t%d found in history at the end: %d to %d moved receivers (%d reconnected more than once; %d from a moved sender), %d to %d stationary (%d from a moved sender)\n",
		e.Found, e.Moved, e.MovedReceivers, e.MovedReceiversTwice, e.MovedFromMovedSender, e.Stationary, e.StationaryReceivers, e.StationaryFromMovedSender)
	if e.Found == 0 {
		return
	}
	extra := ""
	if e.WorkersWithoutLoss != 0 {
		extra = fmt.Sprintf(" (%d workers without a loss: unknown)", e.WorkersWithoutLoss)
	}
	fmt.Fprintf(tw, "\tsent at t0+s (t0: each worker's first loss)%s, moved: %s\n", extra, e.FromFirstLoss.Moved.String())
	fmt.Fprintf(tw, "\t... stationary: %s\n", e.FromFirstLoss.Stationary.String())
	fmt.Fprintf(tw, "\t... moved, from its own re-auth: %s\n", e.MovedFromReauth.String())
	c := &e.MovedByCatchUp
	fmt.Fprintf(tw, "\tmoved, by its own catch-up: %d sent before the loss, %d loss→re-auth, %d re-auth→caught up, %d after caught up; no catch-up finished: %d before / %d after re-auth; %d unknown; %d at or below the catch-up's floor\n",
		c.BeforeLoss, c.LossToReauth, c.ReauthToCaughtUp, c.AfterCaughtUp, c.NoCatchUpBeforeReauth, c.NoCatchUpAfterReauth, c.Unknown, c.AtOrBelowFloor)
}
