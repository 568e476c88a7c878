package load

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Send times fall in 1 s buckets from -2 s (floor: -1 ns is in [-1, 0)),
// before them or after +15 s.
func TestLostEventsBucket(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int
	}{
		{-2*time.Second - 1, -1}, {-2 * time.Second, 0}, {-1500 * time.Millisecond, 0},
		{-time.Second, 1}, {-1, 1}, {0, 2}, {999 * time.Millisecond, 2}, {time.Second, 3},
		{15*time.Second - 1, 16}, {15 * time.Second, lostBuckets}, {time.Hour, lostBuckets},
	} {
		require.Equal(t, c.want, bucket(c.d), "%v", c.d)
	}
	var h SendTimes
	h.add(-3*time.Second, true)
	h.add(-time.Millisecond, true)
	h.add(0, true)
	h.add(20*time.Second, true)
	h.add(0, false)
	require.EqualValues(t, 1, h.Before)
	require.EqualValues(t, 1, h.Buckets[1], "[-1, 0) s")
	require.EqualValues(t, 1, h.Buckets[2], "[0, 1) s")
	require.EqualValues(t, 1, h.After)
	require.EqualValues(t, 1, h.Unknown)
	require.Contains(t, h.String(), "<-2 1 | -2:0 -1:1 0:1 1:0")
	require.Contains(t, h.String(), "14:0 | ≥15 1 | unknown 1")
}

// The found messages of a moved receiver are placed by the worker's first
// loss and by its own reconnection and catch-up; a stationary receiver's
// by the first loss only; the workers' breakdowns add up.
func TestLostEventsReceiver(t *testing.T) {
	s := func(d float64) int64 { return int64(d * float64(time.Second)) }
	t0 := s(100)
	found := func(sent map[int64]int64, unstamped ...int64) *finalCheck {
		var ids []int64
		for id := range sent {
			ids = append(ids, id)
		}
		f := newFinalCheck(append(ids, unstamped...), nil)
		for id := range f.targets {
			f.targets[id] = true
		}
		f.sent = sent
		f.end(true)
		return f
	}
	// moved: lost at t0+0.1, back at +3, caught up at +4, floor 10.
	moved := newLedger()
	moved.lostNanos, moved.backNanos, moved.caughtUpNanos, moved.catchFloor, moved.reconnects = s(100.1), s(103), s(104), 10, 2
	moved.seen[12] = seenLive
	fm := found(map[int64]int64{
		9:  s(99.5), // before the loss, at or below the floor
		11: s(100.05),
		13: s(101), // loss → re-auth
		14: s(103.5),
		15: s(110),
		12: s(101), // seen live: not counted
	}, 16)
	stationary := newLedger()
	fs := found(map[int64]int64{21: s(97.9), 22: s(100.5), 23: s(100.7)})

	e := &LostEvents{}
	e.receiver(moved, fm, []int64{9, 11, 12, 13, 14, 15, 16, 17}, t0, false) // 17: not a target
	e.receiver(stationary, fs, []int64{21, 22, 23}, t0, true)
	e.receiver(newLedger(), nil, []int64{31}, t0, true) // not checked
	require.EqualValues(t, 9, e.Found)
	require.EqualValues(t, 6, e.Moved)
	require.EqualValues(t, 3, e.Stationary)
	require.EqualValues(t, 1, e.MovedReceivers)
	require.EqualValues(t, 1, e.MovedReceiversTwice)
	require.EqualValues(t, 1, e.StationaryReceivers)
	require.Zero(t, e.MovedFromMovedSender)
	require.EqualValues(t, 3, e.StationaryFromMovedSender)
	m := e.FromFirstLoss.Moved
	require.Equal(t, [lostBuckets]int64{1: 1, 2: 1, 3: 1, 5: 1, 12: 1}, m.Buckets, "-0.5, +0.05, +1, +3.5, +10")
	require.EqualValues(t, 1, m.Unknown, "16: no stamp")
	st := e.FromFirstLoss.Stationary
	require.EqualValues(t, 1, st.Before, "-2.1 s")
	require.EqualValues(t, 2, st.Buckets[2])
	require.Equal(t, [lostBuckets]int64{0: 1, 2: 1, 9: 1}, e.MovedFromReauth.Buckets, "from +3: -2, +0.5, +7")
	require.EqualValues(t, 2, e.MovedFromReauth.Before, "-3.5, -2.95")
	require.Zero(t, e.MovedFromReauth.After)
	require.Equal(t, ByCatchUp{BeforeLoss: 2, LossToReauth: 1, ReauthToCaughtUp: 1, AfterCaughtUp: 1, Unknown: 1, AtOrBelowFloor: 1}, e.MovedByCatchUp)

	// No catch-up finished after the re-auth.
	moved.caughtUpNanos = 0
	e2 := &LostEvents{}
	e2.receiver(moved, fm, []int64{9, 14}, t0, true)
	require.EqualValues(t, 1, e2.MovedByCatchUp.NoCatchUpBeforeReauth)
	require.EqualValues(t, 1, e2.MovedByCatchUp.NoCatchUpAfterReauth)
	// A worker without a loss: no t0.
	e3 := &LostEvents{WorkersWithoutLoss: 1}
	e3.receiver(stationary, fs, []int64{21}, 0, false)
	require.EqualValues(t, 1, e3.FromFirstLoss.Stationary.Unknown)

	var sum LostEvents
	sum.merge(e)
	sum.merge(e2)
	sum.merge(e3)
	require.EqualValues(t, 12, sum.Found)
	require.EqualValues(t, 2, sum.MovedReceivers)
	require.EqualValues(t, 1, sum.WorkersWithoutLoss)
	require.EqualValues(t, 3, sum.FromFirstLoss.Stationary.Buckets[2]+sum.FromFirstLoss.Stationary.Unknown)
	b, err := json.Marshal(&sum)
	require.NoError(t, err)
	for _, field := range []string{`"found_in_history_at_end":12`, `"bucket_from_seconds":-2`, `"by_send_time_from_first_loss":{"moved":{"before":0,"buckets":[`,
		`"moved_by_own_catch_up":{"sent_before_loss":2`} {
		require.Contains(t, string(b), field)
	}
	var out bytes.Buffer
	sum.print(&out)
	require.Contains(t, out.String(), "12 found in history at the end: 8 to 2 moved receivers (2 reconnected more than once; 2 from a moved sender), 4 to 2 stationary (3 from a moved sender)")
	require.Contains(t, out.String(), "moved, by its own catch-up: 2 sent before the loss, 1 loss→re-auth, 1 re-auth→caught up, 1 after caught up; no catch-up finished: 1 before / 1 after re-auth; 1 unknown; 2 at or below")
}
