package load

import (
	"fmt"
	"io"
)

// ResumeResult is the resume scenario's accounting (resume.go).
type ResumeResult struct {
	// The drop: sessions asked to drop (--drop), closed cleanly, not
	// connected at the drop, authenticated again, not back at the end.
	DropRequested int   `json:"drop_requested"`
	Dropped       int64 `json:"dropped"`
	NotConnected  int64 `json:"not_connected_at_drop"`
	Reconnected   int64 `json:"reconnected"`
	StillDown     int64 `json:"still_down"`

	// Edits and deletes over the whole run, by every author: written,
	// acknowledged, refused; and the edit and delete events received
	// live.
	EditsSent    int64 `json:"edits_sent"`
	EditsAcked   int64 `json:"edits_acknowledged"`
	DeletesSent  int64 `json:"deletes_sent"`
	DeletesAcked int64 `json:"deletes_acknowledged"`
	EditErrors   int64 `json:"edit_errors"`
	EditsLive    int64 `json:"edits_live"`
	DeletesLive  int64 `json:"deletes_live"`

	// The auth answers of the reconnections: listing the DM in chats,
	// with a chats list that lacks it, without a chats list; the changes
	// their seq was ahead of the sessions' positions, added up; the DM's
	// unread added up, and the answers where it had a last_message.
	ChatsListed      int64 `json:"auth_chats_listed_dm"`
	ChatsWithoutDM   int64 `json:"auth_chats_without_dm"`
	ChatsAbsent      int64 `json:"auth_without_chats"`
	ChatsBehind      int64 `json:"auth_seq_ahead"`
	ChatsUnread      int64 `json:"auth_unread"`
	ChatsLastMessage int64 `json:"auth_last_message"`

	// The catch-ups (load changes): finished (more false), refused or
	// cut, stopped at the page bound (500,000 changes), not needed (the
	// auth answer's seq was not ahead of the position); pages loaded.
	CatchUps         int64 `json:"catch_ups"`
	CatchUpFailed    int64 `json:"catch_up_failed"`
	CatchUpTruncated int64 `json:"catch_up_truncated"`
	CatchUpNotNeeded int64 `json:"catch_up_not_needed"`
	Pages            int64 `json:"changes_pages"`
	// Per reconnection: its dial to its auth answered, the auth answered
	// to the last changes page, the dial to the last page (the catch-up
	// time).
	ReconnectToAuth     Latency `json:"reconnect_to_auth_us"`
	AuthToCaughtUp      Latency `json:"auth_to_caught_up_us"`
	ReconnectToCaughtUp Latency `json:"reconnect_to_caught_up_us"`

	// While a session was down (its close to its next auth answer), its
	// peer had these acknowledged: sends, edits, deletes. Of the sends,
	// recovered: first seen in the catch-up; seen live after the
	// reconnect; deleted before it saw them (the catch-up leaves them
	// out); the rest are in Missing.
	AckedWhileDown        int64 `json:"acked_while_down"`
	Recovered             int64 `json:"recovered"`
	LiveAfterReconnect    int64 `json:"seen_live_after_reconnect"`
	DeletedBeforeSeen     int64 `json:"deleted_before_seen"`
	EditsAckedWhileDown   int64 `json:"edits_acked_while_down"`
	DeletesAckedWhileDown int64 `json:"deletes_acked_while_down"`
	// What the catch-ups brought that had not been seen: the peers'
	// messages, edits, deletes; the sessions' own messages whose echo was
	// lost.
	CaughtUp         int64 `json:"caught_up"`
	EditsRecovered   int64 `json:"edits_recovered"`
	DeletesRecovered int64 `json:"deletes_recovered"`
	OwnRecovered     int64 `json:"own_recovered"`
	// Duplicates: changes seen twice, live and in a catch-up (allowed,
	// applied once).
	Duplicates int64 `json:"duplicates"`
	// FramesWithoutSeq: chat frames that carried no seq (a server
	// without §4.1).
	FramesWithoutSeq int64 `json:"frames_without_seq"`

	// Missing: sends acknowledged to the peer of a dropped session over
	// the run that the session never saw, live or caught up (nor was
	// their delete acknowledged); EditsMissing: acknowledged edits and
	// deletes of which its view holds an older state. Both must be 0:
	// AllSeen. The same figures of the sessions never dropped (which
	// never catch up: a lost live event stays lost there). All nil when a
	// worker's sessions did not end (not counted).
	Missing                *int64 `json:"missing"`
	EditsMissing           *int64 `json:"edits_missing"`
	AllSeen                bool   `json:"every_acknowledged_seen"`
	MissingNotDropped      *int64 `json:"missing_not_dropped"`
	EditsMissingNotDropped *int64 `json:"edits_missing_not_dropped"`

	// The final state check of the dropped sessions' views against the
	// DM's history loaded afresh (load chat) once the drain was over:
	// made, equal, not equal, unfinished (refused, cut, out of time, over
	// 100,000 messages), not made (the session was down or catching up);
	// the messages of the complete checks' histories, and the differences:
	// absent (in the history, not in the view), extra (in the view, not
	// in the history), stale (another content). ViewsMatch: checks were
	// made and every one was equal.
	ViewChecks      int64 `json:"view_checks"`
	ViewsMatched    int64 `json:"views_matched"`
	ViewsMismatched int64 `json:"views_mismatched"`
	ViewsUnfinished int64 `json:"view_checks_unfinished"`
	ViewsNotChecked int64 `json:"views_not_checked"`
	ViewMessages    int64 `json:"view_messages"`
	ViewAbsent      int64 `json:"view_absent"`
	ViewExtra       int64 `json:"view_extra"`
	ViewStale       int64 `json:"view_stale"`
	ViewsMatch      bool  `json:"views_match"`

	// Live send→delivery of the messages sent before the drop, while the
	// dropped sessions were down, and from when they were to be back.
	DeliveryBeforeDrop     Latency `json:"delivery_before_drop_us"`
	DeliveryWhileDown      Latency `json:"delivery_while_down_us"`
	DeliveryAfterReconnect Latency `json:"delivery_after_reconnect_us"`
}

func resumeResult(cfg *Config, c map[string]int64, lat map[string]Latency) *ResumeResult {
	rs := &ResumeResult{
		DropRequested: cfg.Drop, Dropped: c["dropped"], NotConnected: c["drop_not_connected"],
		Reconnected: c["resumed"], StillDown: c["drop_still_down"],
		EditsSent: c["edits_sent"], EditsAcked: c["edits_acked"], DeletesSent: c["deletes_sent"], DeletesAcked: c["deletes_acked"],
		EditErrors: c["edit_errors"], EditsLive: c["edits_live"], DeletesLive: c["deletes_live"],
		ChatsListed: c["chats_listed"], ChatsWithoutDM: c["chats_without_dm"], ChatsAbsent: c["chats_absent"], ChatsBehind: c["chats_behind"],
		ChatsUnread: c["chats_unread"], ChatsLastMessage: c["chats_last_message"],
		CatchUps: c["resume_catch_ups"], CatchUpFailed: c["resume_catch_up_failed"], CatchUpTruncated: c["resume_catch_up_truncated"],
		CatchUpNotNeeded: c["resume_catch_up_not_needed"], Pages: c["resume_pages"],
		ReconnectToAuth: lat[hResumeAuth], AuthToCaughtUp: lat[hResumeLoad], ReconnectToCaughtUp: lat[hResumeCaughtUp],
		AckedWhileDown: c["down_acked"], Recovered: c["down_caught_up"], LiveAfterReconnect: c["down_live"], DeletedBeforeSeen: c["down_deleted_unseen"],
		EditsAckedWhileDown: c["down_edits_acked"], DeletesAckedWhileDown: c["down_deletes_acked"],
		CaughtUp: c["caught_up"], EditsRecovered: c["edits_recovered"], DeletesRecovered: c["deletes_recovered"], OwnRecovered: c["own_recovered"],
		Duplicates: c["resume_duplicates"], FramesWithoutSeq: c["frames_without_seq"],
		ViewChecks: c["view_checks"], ViewsMatched: c["view_matched"], ViewsMismatched: c["view_mismatched"],
		ViewsUnfinished: c["view_unfinished"], ViewsNotChecked: c["view_not_checked"], ViewMessages: c["view_messages"],
		ViewAbsent: c["view_absent"], ViewExtra: c["view_extra"], ViewStale: c["view_stale"],
		DeliveryBeforeDrop: lat[hDeliveryBeforeDrop], DeliveryWhileDown: lat[hDeliveryWhileDown], DeliveryAfterReconnect: lat[hDeliveryAfterDrop],
	}
	rs.ViewsMatch = rs.ViewChecks > 0 && rs.ViewsMatched == rs.ViewChecks
	if c["resume_unchecked"] == 0 {
		missing, edits, other, otherEdits := c["dropped_missing"], c["dropped_edits_missing"], c["other_missing"], c["other_edits_missing"]
		rs.Missing, rs.EditsMissing, rs.MissingNotDropped, rs.EditsMissingNotDropped = &missing, &edits, &other, &otherEdits
		rs.AllSeen = missing == 0 && edits == 0
	}
	return rs
}

// printResume writes the resume lines of the summary into its table.
func printResume(tw io.Writer, rs *ResumeResult) {
	fmt.Fprintf(tw, "resume\t%d of %d receiving sides dropped cleanly (%d not connected), %d back, %d still down at the end\n",
		rs.Dropped, rs.DropRequested, rs.NotConnected, rs.Reconnected, rs.StillDown)
	fmt.Fprintf(tw, "edits\t%d edits and %d deletes acknowledged (%d and %d written, %d refused); live: %d edit and %d delete events\n",
		rs.EditsAcked, rs.DeletesAcked, rs.EditsSent, rs.DeletesSent, rs.EditErrors, rs.EditsLive, rs.DeletesLive)
	fmt.Fprintf(tw, "auth answers\t%d listed the DM in chats (%d had chats without it, %d no chats), %d changes ahead of the sessions' positions, %d unread, %d with a last message\n",
		rs.ChatsListed, rs.ChatsWithoutDM, rs.ChatsAbsent, rs.ChatsBehind, rs.ChatsUnread, rs.ChatsLastMessage)
	fmt.Fprintf(tw, "catch-up\t%d done in %d pages (%d failed, %d truncated, %d not needed); reconnect→auth p50 %s p99 %s ms, reconnect→caught up p50 %s p99 %s ms\n",
		rs.CatchUps, rs.Pages, rs.CatchUpFailed, rs.CatchUpTruncated, rs.CatchUpNotNeeded,
		measured(rs.ReconnectToAuth.P50, rs.ReconnectToAuth.Count), measured(rs.ReconnectToAuth.P99, rs.ReconnectToAuth.Count),
		measured(rs.ReconnectToCaughtUp.P50, rs.ReconnectToCaughtUp.Count), measured(rs.ReconnectToCaughtUp.P99, rs.ReconnectToCaughtUp.Count))
	fmt.Fprintf(tw, "while down\tthe peers had %d messages, %d edits, %d deletes acknowledged; of the messages %d recovered in the catch-up, %d first seen live after it, %d deleted before they were seen\n",
		rs.AckedWhileDown, rs.EditsAckedWhileDown, rs.DeletesAckedWhileDown, rs.Recovered, rs.LiveAfterReconnect, rs.DeletedBeforeSeen)
	fmt.Fprintf(tw, "recovered\tby the catch-ups: %d messages, %d edits, %d deletes (and %d of the sessions' own messages whose echo was lost)\n",
		rs.CaughtUp, rs.EditsRecovered, rs.DeletesRecovered, rs.OwnRecovered)
	switch {
	case rs.Missing == nil:
		fmt.Fprintln(tw, "missing\tNOT CHECKED (a worker's sessions did not end)")
	case rs.AllSeen:
		fmt.Fprintln(tw, "missing\t0: every message, edit and delete acknowledged to a peer was seen by the dropped session, live or caught up")
	default:
		fmt.Fprintf(tw, "missing\t%d messages and %d edits/deletes acknowledged to a peer NOT seen by the dropped session\n", *rs.Missing, *rs.EditsMissing)
	}
	if rs.Missing != nil {
		fmt.Fprintf(tw, "\tsessions never dropped (no catch-up): %d messages, %d edits/deletes not seen\n", *rs.MissingNotDropped, *rs.EditsMissingNotDropped)
	}
	fmt.Fprintf(tw, "duplicates\t%d changes seen twice, live and in a catch-up (allowed)\n", rs.Duplicates)
	line := fmt.Sprintf("final state\t%d views checked against the history loaded afresh: %d equal, %d NOT equal (%d absent, %d extra, %d stale of %d messages), %d unfinished, %d not checked",
		rs.ViewChecks, rs.ViewsMatched, rs.ViewsMismatched, rs.ViewAbsent, rs.ViewExtra, rs.ViewStale, rs.ViewMessages, rs.ViewsUnfinished, rs.ViewsNotChecked)
	fmt.Fprintln(tw, line)
	if rs.FramesWithoutSeq > 0 {
		fmt.Fprintf(tw, "WARNING\t%d chat frames without seq: the server does not number changes (protocol.md §4.1)\n", rs.FramesWithoutSeq)
	}
}
