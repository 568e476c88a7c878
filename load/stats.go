package load

import (
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// counter indexes the figures every worker counts; the parent adds them up.
type counter int

const (
	cOpen               counter = iota // sessions authenticated now (a gauge)
	cAuthenticated                     // successful auths, reconnects included
	cConnectFailed                     // dial or upgrade failed
	cAuthFailed                        // the server refused the auth (error frame)
	cSetupFailed                       // the connection ended during heartbeat/auth
	cReconnects                        // connections opened again after one ended
	cHeartbeatsSent                    // heartbeats after the first of a connection
	cHeartbeatsAnswered                // heartbeat answers, the first included
	cSent                              // dm sends written
	cAcked                             // dm echoes (stored)
	cDelivered                         // dm events received by the peer
	cSendErrors                        // error frames answering a dm send
	cDuplicates                        // deliveries out of order or seen twice
	cSkipped                           // dm sends not made: a side was not connected
	cErrors                            // error frames of any kind
	cCloses                            // connections the server closed or lost
	cUnexpected                        // of those, the ones the harness did not cause
	cChurnStarted                      // churn sessions started
	cChurnCompleted                    // churn sessions that authenticated and left cleanly
	cChurnCut                          // churn sessions the end of the run stopped before they authenticated
	cBefriended                        // dm pairs made friends over the gateway
	cWarmSent                          // --warm-rooms: unmeasured first messages written
	cWarmAcked                         // ... echoed
	cWarmDelivered                     // ... received by the peer
	cWarmErrors                        // ... refused
	cFirstSent                         // storm: first messages after the reconnect, written
	cFirstAcked                        // ... echoed
	cFirstDelivered                    // ... received by the peer
	cFirstErrors                       // ... refused
	cPings                             // centrifugo: server pings answered
	cWarmupSent                        // dm sends written during the warm-up (of cSent)
	cSentCross                         // dm sends between sessions on different nodes (of cSent)
	cReconnected                       // connections authenticated again after an unexpected close
	cMoved                             // ... on another node than the one that lost them
	cCatchUps                          // ledger: catch-ups on history finished
	cCatchUpFailed                     // ... refused, or cut by the connection's end
	cCatchUpTruncated                  // ... stopped at maxCatchUpPages before the last seen message
	cCaughtUp                          // ledger: dm messages first seen in a catch-up
	cCatchUpOverlap                    // ... seen both in a catch-up and live (counted once)
	cMissing                           // ledger: acknowledged dm messages the peer never got, at the end
	cStillDown                         // sessions lost and not back when the run ended
	cLedgerUnchecked                   // workers whose sessions did not end: their ledger was not checked
	cFoundAtEnd                        // of cMissing: found in the DM's history by the final check
	cMissingAtEnd                      // ... not there, where the final check went back past them
	cUncheckedAtEnd                    // ... not checked (session down, check unfinished, out of time)
	cFinalChecks                       // final checks made (one per receiving session)
	cFinalUnfinished                   // ... refused, cut, out of time (the rest ended by themselves)

	// The resume scenario (resume.go).
	cEditsSent           // edits written
	cEditsAcked          // ... echoed
	cDeletesSent         // deletes written
	cDeletesAcked        // ... echoed
	cEditErrors          // edits and deletes refused
	cEditsLive           // edit events received live (new to the view)
	cDeletesLive         // delete events received live (new to the view)
	cDropped             // sessions closed cleanly at the drop
	cDropNotConnected    // sessions to drop that were not connected
	cResumed             // dropped sessions authenticated again
	cDropStillDown       // dropped sessions not back when the run ended
	cResumeCatchUps      // load changes catch-ups finished (more false)
	cResumeCatchUpFailed // ... refused, or cut by the connection's end
	cResumeTruncated     // ... stopped at maxChangesPages
	cResumeNotNeeded     // reconnections whose auth answer gave the DM's seq at or below the position
	cResumePages         // changes pages received
	cChatsListed         // reconnections whose auth answer listed the DM
	cChatsWithoutDM      // ... had a chats list without the DM
	cChatsAbsent         // ... had no chats list
	cChatsBehind         // the changes the auth answers' seq were ahead of the sessions' positions, added up
	cChatsUnread         // the DM's unread in those answers, added up
	cChatsLastMessage    // ... answers whose DM had a last_message
	cOwnRecovered        // a session's own messages first seen in a catch-up (their echo was lost)
	cEditsRecovered      // edits first seen in a catch-up
	cDeletesRecovered    // deletes first seen in a catch-up
	cResumeDuplicates    // changes seen twice (live and in a catch-up), applied once
	cNoSeq               // chat frames without seq (not v2)
	cDeletedUnseen       // acknowledged sends never seen by the peer, deleted (acknowledged) before
	cSeenByEdit          // acknowledged sends the peer first saw in a live edit or delete (its send event missed, its catch-up past it)
	cDownAcked           // sends acknowledged while the peer was down
	cDownCaughtUp        // ... first seen by it in a catch-up
	cDownLive            // ... first seen by it live
	cDownDeleted         // ... never seen, deleted before
	cDownEdits           // edits acknowledged while the peer was down
	cDownDeletes         // deletes acknowledged while the peer was down
	cDroppedMissing      // sends acknowledged to the peer of a dropped session that it never saw
	cDroppedEditsMissing // edits and deletes acknowledged ... that its view does not hold
	cOtherMissing        // the same for the sessions never dropped
	cOtherEditsMissing
	cResumeUnchecked // workers whose sessions did not end: not counted
	cViewChecks      // state checks made
	cViewMatched     // ... complete, the view equal to the history
	cViewMismatched  // ... complete, not equal
	cViewUnfinished  // ... refused, cut, out of time, page bound
	cViewNotChecked  // dropped sessions down or catching up at the end: not checked
	cViewMessages    // messages in the histories of the complete checks
	cViewAbsent      // in the history, not in the view
	cViewExtra       // in the view, not in the history
	cViewStale       // in both, with another content

	// The guild scenario (guild.go).
	cGuildsCreated     // guilds created, with their invite
	cGuildCreateErrors // creates or invites refused or unanswered
	cGuildJoined       // members in a guild: the creators and the joins answered
	cGuildJoinErrors   // joins refused or unanswered
	cOutOfOrder        // channel deliveries with a seq below one the session saw before
	nCounters
)

var counterNames = [nCounters]string{
	"open", "authenticated", "connect_failed", "auth_failed", "setup_failed", "reconnects",
	"heartbeats_sent", "heartbeats_answered",
	"sent", "acked", "delivered", "send_errors", "duplicates", "skipped",
	"errors", "closes", "unexpected_closes",
	"churn_started", "churn_completed", "churn_cut", "befriended",
	"warm_sent", "warm_acked", "warm_delivered", "warm_errors",
	"first_sent", "first_acked", "first_delivered", "first_errors",
	"pings_answered", "warmup_sent", "sent_cross_node",
	"reconnected", "moved", "catch_ups", "catch_up_failed", "catch_up_truncated",
	"caught_up", "catch_up_overlap", "missing", "still_down", "ledger_unchecked",
	"found_in_history_at_end", "missing_from_history_at_end", "not_checked_at_end", "final_checks", "final_checks_unfinished",
	"edits_sent", "edits_acked", "deletes_sent", "deletes_acked", "edit_errors", "edits_live", "deletes_live",
	"dropped", "drop_not_connected", "resumed", "drop_still_down",
	"resume_catch_ups", "resume_catch_up_failed", "resume_catch_up_truncated", "resume_catch_up_not_needed", "resume_pages",
	"chats_listed", "chats_without_dm", "chats_absent", "chats_behind", "chats_unread", "chats_last_message",
	"own_recovered", "edits_recovered", "deletes_recovered", "resume_duplicates", "frames_without_seq",
	"deleted_unseen", "seen_by_edit", "down_acked", "down_caught_up", "down_live", "down_deleted_unseen", "down_edits_acked", "down_deletes_acked",
	"dropped_missing", "dropped_edits_missing", "other_missing", "other_edits_missing", "resume_unchecked",
	"view_checks", "view_matched", "view_mismatched", "view_unfinished", "view_not_checked", "view_messages",
	"view_absent", "view_extra", "view_stale",
	"guilds_created", "guild_create_errors", "guild_members_joined", "guild_join_errors", "out_of_order",
}

// counters are one worker's figures.
type counters [nCounters]atomic.Int64

func (c *counters) add(k counter, n int64) { c[k].Add(n) }
func (c *counters) get(k counter) int64    { return c[k].Load() }

// snapshot returns the counters by name.
func (c *counters) snapshot() map[string]int64 {
	m := make(map[string]int64, nCounters)
	for i := range c {
		m[counterNames[i]] = c[i].Load()
	}
	return m
}

// Latency histograms record microseconds from 1 µs to 10 minutes with 3
// significant digits.
const (
	histMin = 1
	histMax = int64(10 * time.Minute / time.Microsecond)
	histSig = 3
)

// The histograms a worker records.
const (
	hConnect  = "connect"   // dial to authenticated, every connection
	hReauth   = "reauth"    // connection lost (or storm close) to authenticated again
	hAck      = "ack"       // dm send to its echo
	hDelivery = "delivery"  // dm send to the event at the peer
	hSendLag  = "send_lag"  // dm send written behind its schedule
	hChurn    = "churn_all" // churn: dial to the server's answer of the close

	// The same two dm latencies split by when the message was sent: in the
	// first --warmup of the sending, or after. ack and delivery hold both.
	hAckWarm       = "ack_warmup"
	hAckAfter      = "ack_after_warmup"
	hDeliveryWarm  = "delivery_warmup"
	hDeliveryAfter = "delivery_after_warmup"

	// storm --pairs: the one message per pair sent once every session is back.
	hFirstAck      = "first_ack"
	hFirstDelivery = "first_delivery"

	// Two nodes or more: the dm latencies of messages sent while both
	// sides were on one node, or on two (the stamp says which), with the
	// same warm-up split for delivery.
	hAckSame            = "ack_same_node"
	hAckCross           = "ack_cross_node"
	hDeliverySame       = "delivery_same_node"
	hDeliverySameWarm   = "delivery_same_node_warmup"
	hDeliverySameAfter  = "delivery_same_node_after_warmup"
	hDeliveryCross      = "delivery_cross_node"
	hDeliveryCrossWarm  = "delivery_cross_node_warmup"
	hDeliveryCrossAfter = "delivery_cross_node_after_warmup"

	// dm with --reconnect, per reconnection after an unexpected close:
	// from the close to the first live delivery on the new connection,
	// and to the end of its catch-up on history.
	hReconnectFirst    = "reconnect_first_delivery"
	hReconnectCaughtUp = "reconnect_caught_up"

	// resume: live deliveries by when the message was sent (before the
	// drop, while the dropped sessions were down, after they were to be
	// back); per reconnection: dial to auth answered, dial to the last
	// changes page, auth answered to the last changes page.
	hDeliveryBeforeDrop = "delivery_before_drop"
	hDeliveryWhileDown  = "delivery_while_down"
	hDeliveryAfterDrop  = "delivery_after_reconnect"
	hResumeAuth         = "resume_reconnect_to_auth"
	hResumeCaughtUp     = "resume_reconnect_to_caught_up"
	hResumeLoad         = "resume_auth_to_caught_up"
)

// histNames is also the order of the summary's latency table.
var histNames = []string{
	hConnect, hReauth,
	hAck, hAckWarm, hAckAfter, hDelivery, hDeliveryWarm, hDeliveryAfter,
	hAckSame, hAckCross,
	hDeliverySame, hDeliverySameWarm, hDeliverySameAfter,
	hDeliveryCross, hDeliveryCrossWarm, hDeliveryCrossAfter,
	hReconnectFirst, hReconnectCaughtUp,
	hDeliveryBeforeDrop, hDeliveryWhileDown, hDeliveryAfterDrop,
	hResumeAuth, hResumeLoad, hResumeCaughtUp,
	hFirstAck, hFirstDelivery, hSendLag, hChurn,
}

// hist is a histogram shared by a worker's goroutines.
type hist struct {
	mu sync.Mutex
	h  *hdr.Histogram
}

func newHist() *hist { return &hist{h: hdr.New(histMin, histMax, histSig)} }

func (h *hist) record(d time.Duration) {
	us := max(int64(d/time.Microsecond), histMin)
	h.mu.Lock()
	_ = h.h.RecordValue(min(us, histMax))
	h.mu.Unlock()
}

// encode returns the histogram in HdrHistogram's compressed V2 form
// (base64), which the parent decodes and merges.
func (h *hist) encode() (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, err := h.h.Encode(hdr.V2CompressedEncodingCookieBase)
	return string(b), err
}

// tally counts by key (error codes, close codes, reasons).
type tally struct {
	mu sync.Mutex
	m  map[string]int64
}

func (t *tally) add(key string) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[string]int64)
	}
	if len(t.m) < 200 || t.m[key] > 0 {
		t.m[key]++
	}
	t.mu.Unlock()
}

func (t *tally) snapshot() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := make(map[string]int64, len(t.m))
	for k, v := range t.m {
		m[k] = v
	}
	return m
}

// Latency is a histogram's summary in the JSON report, in microseconds.
type Latency struct {
	Count int64   `json:"count"`
	Min   int64   `json:"min_us"`
	Mean  float64 `json:"mean_us"`
	P50   int64   `json:"p50_us"`
	P90   int64   `json:"p90_us"`
	P99   int64   `json:"p99_us"`
	P999  int64   `json:"p99_9_us"`
	Max   int64   `json:"max_us"`
}

func summarize(h *hdr.Histogram) Latency {
	if h == nil || h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.TotalCount(), Min: h.Min(), Mean: h.Mean(),
		P50: h.ValueAtQuantile(50), P90: h.ValueAtQuantile(90), P99: h.ValueAtQuantile(99),
		P999: h.ValueAtQuantile(99.9), Max: h.Max(),
	}
}

// mergeHists decodes the workers' encoded histograms and merges them by
// name.
func mergeHists(into map[string]*hdr.Histogram, encoded map[string]string) error {
	for name, e := range encoded {
		h, err := hdr.Decode([]byte(e))
		if err != nil {
			return err
		}
		if into[name] == nil {
			into[name] = hdr.New(histMin, histMax, histSig)
		}
		into[name].Merge(h)
	}
	return nil
}

// addCounts adds b into a.
func addCounts(a, b map[string]int64) {
	for k, v := range b {
		a[k] += v
	}
}

// sortedKeys returns m's keys, numbers first in numeric order.
func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, errA := strconv.Atoi(keys[i])
		b, errB := strconv.Atoi(keys[j])
		switch {
		case errA == nil && errB == nil:
			return a < b
		case errA == nil:
			return true
		case errB == nil:
			return false
		}
		return keys[i] < keys[j]
	})
	return keys
}
