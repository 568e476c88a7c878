package load

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is every figure of a run: what --json writes.
type Result struct {
	Scenario    string       `json:"scenario"`
	Params      Params       `json:"params"`
	Start       time.Time    `json:"start"`
	End         time.Time    `json:"end"`
	Interrupted bool         `json:"interrupted"`
	Workers     int          `json:"workers"`
	SourceIPs   []string     `json:"source_ips"`
	Accounts    accountsInfo `json:"accounts"`

	Sessions SessionsResult `json:"sessions"`
	// Counts are the workers' counters added up (see the harness docs).
	Counts map[string]int64 `json:"counts"`
	// Latency by histogram, microseconds: connect (dial to authenticated,
	// every connection), reauth (connection dropped to authenticated
	// again), ack (dm send to its echo), delivery (dm send to the peer's
	// event), send_lag (dm send behind its schedule), churn_all (churn
	// session from dial to its close answered). ack_warmup and
	// delivery_warmup are the dm messages sent in the first --warmup of the
	// sending, ack_after_warmup and delivery_after_warmup the rest (ack and
	// delivery are the whole run). first_ack and first_delivery are the
	// storm's first messages. With two nodes or more, ack_same_node,
	// ack_cross_node, delivery_same_node and delivery_cross_node (each
	// delivery one with its _warmup and _after_warmup) split the dm
	// messages by whether their two sides were on one node or on two when
	// sent. With a ledger (dm --reconnect), reconnect_first_delivery and
	// reconnect_caught_up are per reconnection after an unexpected close:
	// from the close to the first live delivery on the new connection, and
	// to the end of its catch-up on history. resume: delivery_before_drop,
	// delivery_while_down and delivery_after_reconnect split the live
	// deliveries by when the message was sent (before the drop, while the
	// dropped sessions were down, from when they were to come back on);
	// resume_reconnect_to_auth, resume_reconnect_to_caught_up and
	// resume_auth_to_caught_up are per reconnection (ResumeResult).
	Latency  map[string]Latency `json:"latency_us"`
	Messages *MessagesResult    `json:"messages,omitempty"`
	Rooms    *RoomsResult       `json:"rooms,omitempty"`
	Churn    *ChurnResult       `json:"churn,omitempty"`
	Storm    *StormResult       `json:"storm,omitempty"`
	First    *FirstResult       `json:"first_messages,omitempty"`
	// Reconnect is the ledger's accounting (dm --reconnect).
	Reconnect *ReconnectResult `json:"reconnect,omitempty"`
	// Resume is the resume scenario's accounting.
	Resume *ResumeResult `json:"resume,omitempty"`
	// Guild is the guild scenario's accounting (its sends and fan-out
	// deliveries are also in Messages, and its latencies in Latency).
	Guild *GuildResult `json:"guild,omitempty"`
	// Nodes are the figures per node, in --server order (one entry for a
	// single server).
	Nodes []NodeResult `json:"nodes"`

	Errors           map[string]int64 `json:"errors_by_code"`
	ErrorReasons     map[string]int64 `json:"errors_by_reason"`
	Closes           map[string]int64 `json:"closes_by_code"` // every ended connection; "lost": no close frame; "dial_failed"
	UnexpectedCloses map[string]int64 `json:"unexpected_closes_by_code"`
	UnexpectedTotal  int64            `json:"unexpected_closes"`
	// Two nodes or more: the unexpected closes of connections to the nodes
	// that stayed up through the scenario, and to those that went away
	// (NodeResult.WentAway).
	UnexpectedOnSurviving *int64 `json:"unexpected_closes_on_surviving_nodes,omitempty"`
	UnexpectedOnLost      *int64 `json:"unexpected_closes_on_nodes_gone,omitempty"`

	Server  ServerResult  `json:"server"`
	Harness HarnessResult `json:"harness"`

	phaseStart time.Time // the scenario's main phase began
	stopAt     time.Time // the workers were told to stop
}

// Params are the settings of the run.
type Params struct {
	Target string `json:"target,omitempty"` // rewind (also when absent), centrifugo
	URL    string `json:"url"`
	// Nodes are the gateway URLs of --server (two or more); URL is the
	// first.
	Nodes              []string `json:"nodes,omitempty"`
	CrossNode          bool     `json:"cross_node,omitempty"`
	Sessions           int      `json:"sessions"`
	Pairs              int      `json:"pairs,omitempty"`
	Rate               float64  `json:"rate,omitempty"`
	Size               int      `json:"size,omitempty"`
	WarmupSeconds      float64  `json:"warmup_seconds,omitempty"`
	WarmRooms          bool     `json:"warm_rooms,omitempty"`
	Churn              float64  `json:"churn,omitempty"`
	HoldSeconds        float64  `json:"hold_seconds,omitempty"`
	DurationSeconds    float64  `json:"duration_seconds"`
	HeartbeatSeconds   float64  `json:"heartbeat_seconds"`
	WSVersion          int      `json:"ws_version"`
	ConnectConcurrency int      `json:"connect_concurrency"`
	Reconnect          bool     `json:"reconnect"`
	AfterRestart       bool     `json:"after_restart,omitempty"`
	// resume
	Drop          int     `json:"drop,omitempty"`
	DropAtSeconds float64 `json:"drop_at_seconds,omitempty"`
	DownSeconds   float64 `json:"down_seconds,omitempty"`
	EditEvery     int     `json:"edit_every,omitempty"`
	DeleteEvery   int     `json:"delete_every,omitempty"`
	CheckViews    int     `json:"check_views,omitempty"`
	// guild
	Guilds    int `json:"guilds,omitempty"`
	Members   int `json:"members,omitempty"`
	ServerPID int `json:"server_pid,omitempty"`
}

// SessionsResult is the first connect phase.
type SessionsResult struct {
	Target                   int64    `json:"target"`
	FirstAuthenticated       int64    `json:"authenticated"` // in the first connect phase
	AllAuthenticated         bool     `json:"all_authenticated"`
	ConnectSeconds           float64  `json:"connect_seconds"` // first dial to last first-phase auth
	ConnectRate              float64  `json:"connect_rate"`    // authenticated per second in that phase
	TimeToAllAuthenticatedMs *float64 `json:"time_to_all_authenticated_ms"`
}

// MessagesResult is the dm accounting.
type MessagesResult struct {
	Sent          int64   `json:"sent"`
	Acked         int64   `json:"acknowledged"`
	Delivered     int64   `json:"delivered"`
	SendErrors    int64   `json:"send_errors"`
	Unacked       int64   `json:"unacknowledged"` // sent, neither echoed nor refused
	Undelivered   int64   `json:"undelivered"`    // acknowledged minus delivered and caught up
	Duplicates    int64   `json:"duplicates"`
	CaughtUp      int64   `json:"caught_up"`       // received in a catch-up on history, not live
	SentCrossNode int64   `json:"sent_cross_node"` // of Sent, while the two sides were on different nodes
	Skipped       int64   `json:"skipped"`         // not sent: a side was not connected
	SentPerSecond float64 `json:"sent_per_second"`
	// WarmupSent is how many of the sent messages went in the warm-up (the
	// count of its delivery histogram is those delivered).
	WarmupSent int64 `json:"warmup_sent"`
}

// RoomsResult is how many rooms the server started (a cold room's first
// message needs a store round trip), from its rewind_room_activations_total
// read at the start of the run, when the measured sending began and at the
// end. A reading is nil when the server does not export the counter.
type RoomsResult struct {
	Pairs     int      `json:"pairs"`
	Warmed    bool     `json:"warmed"` // --warm-rooms: one unmeasured message per pair first
	AtStart   *float64 `json:"counter_at_start"`
	AtMeasure *float64 `json:"counter_at_measured_start"`
	AtEnd     *float64 `json:"counter_at_end"`
	// Activated is end − start; ActivatedMeasured is end − measured start:
	// the rooms the measured messages found cold.
	Activated         *int64 `json:"activated_during_run"`
	ActivatedMeasured *int64 `json:"activated_during_measured_run"`
	Error             string `json:"error,omitempty"` // why a reading failed
}

// FirstResult is the storm's first messages: once every session was back,
// the first side of every pair sent one message at once.
type FirstResult struct {
	Pairs        int     `json:"pairs"`
	Sent         int64   `json:"sent"`
	Acked        int64   `json:"acknowledged"`
	Delivered    int64   `json:"delivered"`
	SendErrors   int64   `json:"send_errors"`
	AllAcked     bool    `json:"all_acknowledged"`
	AllDelivered bool    `json:"all_delivered"`
	Ack          Latency `json:"ack_us"`
	Delivery     Latency `json:"delivery_us"`
}

// ReconnectResult is what a dm run with --reconnect did about lost
// sessions: reconnected (to another node when there are several),
// authenticated again and caught up on the DM's history since the last
// message seen, deduplicated by message id against live deliveries.
type ReconnectResult struct {
	Lost        int64 `json:"lost"`        // unexpected closes
	Reconnected int64 `json:"reconnected"` // connections authenticated again after one
	Moved       int64 `json:"moved"`       // ... on another node than the one lost
	StillDown   int64 `json:"still_down"`  // sessions not back when the run ended
	// Catch-ups on history: finished, refused or cut by the connection's
	// end (started again after the next reconnection), stopped at the
	// page bound (10,000 messages) before the last seen message.
	CatchUps         int64 `json:"catch_ups"`
	CatchUpFailed    int64 `json:"catch_up_failed"`
	CatchUpTruncated int64 `json:"catch_up_truncated"`
	// CaughtUp: messages first received in a catch-up; Overlap: seen both
	// in a catch-up and live, counted once.
	CaughtUp int64 `json:"caught_up"`
	Overlap  int64 `json:"catch_up_overlap"`
	// Missing: acknowledged dm messages their peer never received, live or
	// caught up, when the run ended; nil when a worker's sessions did not
	// end in time (its ledger was not checked). AllDelivered: Missing is 0.
	Missing      *int64 `json:"acknowledged_never_delivered"`
	AllDelivered bool   `json:"every_acknowledged_delivered"`
	// The final check: once the sending and the drain were over, each
	// receiving session still connected loaded its DM's history for
	// those of Missing it was sent. They add up to Missing: found in
	// history at the end (a lost live event), missing from history (the
	// check went back past it and did not find it: a lost message), not
	// checked (the session was down, the check was refused, cut, out of
	// time or stopped at the page bound before it, or it was acknowledged
	// after the check began); nil with Missing. FinalChecks: the DM
	// histories loaded (one per receiving session); FinalUnfinished: of
	// those, refused, cut or out of time.
	FoundAtEnd      *int64 `json:"found_in_history_at_end"`
	MissingAtEnd    *int64 `json:"missing_from_history_at_end"`
	UncheckedAtEnd  *int64 `json:"not_checked_at_end"`
	FinalChecks     int64  `json:"final_checks"`
	FinalUnfinished int64  `json:"final_checks_unfinished"`
	// LostEvents breaks FoundAtEnd down by receiver and send time
	// (lost_events.go); nil with Missing. Each worker counts the send
	// times from its own first loss; the parent adds them up.
	LostEvents *LostEvents `json:"lost_events,omitempty"`
	// Per reconnection: close → first live delivery on the new connection,
	// close → catch-up finished.
	FirstDelivery Latency `json:"close_to_first_delivery_us"`
	CaughtUpAfter Latency `json:"close_to_caught_up_us"`
}

func reconnectResult(c map[string]int64, lat map[string]Latency) *ReconnectResult {
	rc := &ReconnectResult{
		Lost: c["unexpected_closes"], Reconnected: c["reconnected"], Moved: c["moved"], StillDown: c["still_down"],
		CatchUps: c["catch_ups"], CatchUpFailed: c["catch_up_failed"], CatchUpTruncated: c["catch_up_truncated"],
		CaughtUp: c["caught_up"], Overlap: c["catch_up_overlap"],
		FinalChecks: c["final_checks"], FinalUnfinished: c["final_checks_unfinished"],
		FirstDelivery: lat[hReconnectFirst], CaughtUpAfter: lat[hReconnectCaughtUp],
	}
	if c["ledger_unchecked"] == 0 {
		n := c["missing"]
		rc.Missing = &n
		rc.AllDelivered = n == 0
		found, absent, unchecked := c["found_in_history_at_end"], c["missing_from_history_at_end"], c["not_checked_at_end"]
		rc.FoundAtEnd, rc.MissingAtEnd, rc.UncheckedAtEnd = &found, &absent, &unchecked
	}
	return rc
}

// ChurnResult is the churn accounting.
type ChurnResult struct {
	Started          int64   `json:"started"`
	Completed        int64   `json:"completed"` // authenticated, stayed, left with a normal close
	Cut              int64   `json:"cut"`       // still connecting when the run ended
	StartedPerSecond float64 `json:"started_per_second"`
}

// StormResult is the storm's figure.
type StormResult struct {
	Mode                       string    `json:"mode"` // reconnect, after-restart
	Sessions                   int64     `json:"sessions"`
	Completed                  bool      `json:"completed"`
	TimeToAllReauthenticatedMs *float64  `json:"time_to_all_reauthenticated_ms"`
	FirstLoss                  time.Time `json:"first_loss,omitzero"`
}

// ServerResult is the server process over the run.
type ServerResult struct {
	Source                  string   `json:"source"`
	RSSStart                int64    `json:"rss_start_bytes"`
	RSSSteady               int64    `json:"rss_steady_bytes"` // the last sample before the sessions were told to stop
	RSSPeak                 int64    `json:"rss_peak_bytes"`
	RSSEnd                  int64    `json:"rss_end_bytes"`
	SessionsAtSteady        int64    `json:"sessions_at_steady"`
	RSSPerSession           int64    `json:"rss_per_session_bytes"`             // steady RSS / sessions
	RSSPerSessionAboveStart int64    `json:"rss_per_session_above_start_bytes"` // (steady - start) / sessions
	CPUSeconds              float64  `json:"cpu_seconds"`
	CPUAvgPercent           float64  `json:"cpu_avg_percent"`
	PhaseCPUPercent         float64  `json:"cpu_phase_percent"` // during the scenario's main phase
	CPUPeakPercent          float64  `json:"cpu_peak_percent"`
	SampleErrors            int      `json:"sample_errors,omitempty"`
	LastSampleError         string   `json:"last_sample_error,omitempty"`
	Samples                 []Sample `json:"samples"`

	// The main phase's CPU seconds between its first and last samples,
	// the messages delivered between them and the CPU per 1,000 of those.
	PhaseCPUSeconds float64      `json:"cpu_phase_seconds"`
	PhaseSeconds    float64      `json:"cpu_phase_window_seconds"`
	PhaseDelivered  float64      `json:"phase_delivered,omitempty"`
	CPUPer1000      *float64     `json:"cpu_seconds_per_1000_delivered,omitempty"`
	Postgres        *PostgresCPU `json:"postgres,omitempty"` // --pg-cpu

	steady     Sample
	steadyOpen int64
}

// PostgresCPU is every postgres process of the machine together over the
// same samples as the server (whatever else used the database then too).
type PostgresCPU struct {
	Processes       int      `json:"processes"` // at the last sample
	CPUSeconds      float64  `json:"cpu_seconds"`
	CPUAvgPercent   float64  `json:"cpu_avg_percent"`
	PhaseCPUSeconds float64  `json:"cpu_phase_seconds"`
	PhaseCPUPercent float64  `json:"cpu_phase_percent"`
	CPUPer1000      *float64 `json:"cpu_seconds_per_1000_delivered,omitempty"`
}

// HarnessResult is the harness's own cost.
type HarnessResult struct {
	CPUSeconds      float64 `json:"cpu_seconds"` // all workers
	MaxRSSPerWorker int64   `json:"max_rss_per_worker_bytes"`
}

func newResult(cfg *Config, sources []string) *Result {
	r := &Result{
		Scenario:  cfg.Scenario,
		SourceIPs: sources,
		Params: Params{
			Target: cfg.Target, URL: cfg.wsURL(), Sessions: cfg.Sessions, Pairs: cfg.Pairs,
			DurationSeconds: cfg.Duration.Seconds(), HeartbeatSeconds: cfg.Heartbeat.Seconds(),
			WSVersion: cfg.WSVersion, ConnectConcurrency: cfg.ConnectConcurrency,
			Reconnect: cfg.Reconnect, AfterRestart: cfg.AfterRestart, ServerPID: cfg.ServerPID,
		},
		Sessions: SessionsResult{Target: int64(cfg.Sessions)},
	}
	if len(cfg.nodes) > 1 {
		r.Params.Nodes, r.Params.CrossNode = cfg.gatewayURLs(), cfg.CrossNode
	}
	switch cfg.Scenario {
	case "dm", "resume":
		r.Params.Rate, r.Params.Size = cfg.Rate, cfg.Size
		r.Params.WarmupSeconds, r.Params.WarmRooms = cfg.Warmup.Seconds(), cfg.WarmRooms
		if cfg.Scenario == "resume" {
			r.Params.Drop, r.Params.DropAtSeconds, r.Params.DownSeconds = cfg.Drop, cfg.DropAt.Seconds(), cfg.Down.Seconds()
			r.Params.EditEvery, r.Params.DeleteEvery, r.Params.CheckViews = cfg.EditEvery, cfg.DeleteEvery, cfg.CheckViews
		}
	case "churn":
		r.Params.Churn, r.Params.HoldSeconds = cfg.Churn, cfg.Hold.Seconds()
	case "guild":
		r.Params.Rate, r.Params.Size, r.Params.WarmupSeconds = cfg.Rate, cfg.Size, cfg.Warmup.Seconds()
		r.Params.Guilds, r.Params.Members = cfg.Guilds, cfg.Members
	}
	return r
}

func writeJSON(path string, res *Result) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func kib(b int64) string { return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10)) }

func ms(us int64) string { return fmt.Sprintf("%.2f", float64(us)/1000) }

// printSummary writes the end-of-run table.
func printSummary(w io.Writer, res *Result) {
	p := res.Params
	head := fmt.Sprintf("rewind-load %s: %d sessions", res.Scenario, p.Sessions)
	if p.Target == "centrifugo" {
		head = fmt.Sprintf("rewind-load %s against Centrifugo (%s): %d sessions", res.Scenario, p.URL, p.Sessions)
	}
	switch res.Scenario {
	case "dm":
		head += fmt.Sprintf(", %d pairs at %.0f msg/s", p.Pairs, p.Rate)
	case "resume":
		head += fmt.Sprintf(", %d pairs at %.0f msg/s, %d receiving sides dropped at %s for %s", p.Pairs, p.Rate, p.Drop, seconds(p.DropAtSeconds), seconds(p.DownSeconds))
	case "guild":
		head += fmt.Sprintf(", %d guild(s) of %d members at %.0f msg/s in all", p.Guilds, p.Members, p.Rate)
	case "churn":
		head += fmt.Sprintf(" as accounts, %.0f connects/s holding %.1f s", p.Churn, p.HoldSeconds)
	case "storm":
		if p.AfterRestart {
			head += " (after a server restart)"
		}
		if p.Pairs > 0 {
			head += fmt.Sprintf(", %d pairs", p.Pairs)
		}
	}
	if len(p.Nodes) > 1 {
		head += fmt.Sprintf(" on %d nodes", len(p.Nodes))
		if p.Pairs > 0 && p.CrossNode {
			head += " (pairs across nodes)"
		} else if p.Pairs > 0 {
			head += " (pairs within a node)"
		}
	}
	head += fmt.Sprintf(" for %s; %d worker(s), %d source address(es)", time.Duration(p.DurationSeconds*float64(time.Second)), res.Workers, len(res.SourceIPs))
	if res.Interrupted {
		head += "; INTERRUPTED"
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, head)
	c := res.Counts
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s := res.Sessions
	if res.Scenario != "churn" {
		line := fmt.Sprintf("sessions\t%d/%d authenticated", s.FirstAuthenticated, s.Target)
		if s.TimeToAllAuthenticatedMs != nil {
			line += fmt.Sprintf(", all in %.2f s (%.0f/s)", *s.TimeToAllAuthenticatedMs/1000, s.ConnectRate)
		} else {
			line += fmt.Sprintf(" (NOT ALL) after %.2f s", s.ConnectSeconds)
		}
		fmt.Fprintln(tw, line)
	}
	fmt.Fprintf(tw, "connections\t%d authenticated, %d reconnects; failed: %d dial, %d auth, %d during setup\n",
		c["authenticated"], c["reconnects"], c["connect_failed"], c["auth_failed"], c["setup_failed"])
	if p.Target == "centrifugo" {
		fmt.Fprintf(tw, "pings\t%d server pings answered\n", c["pings_answered"])
	} else {
		fmt.Fprintf(tw, "heartbeats\t%d sent after the first, %d answered\n", c["heartbeats_sent"], c["heartbeats_answered"])
	}
	if gr := res.Guild; gr != nil {
		printGuild(tw, gr)
	}
	if m := res.Messages; m != nil && res.Guild == nil {
		if b := c["befriended"]; b > 0 {
			fmt.Fprintf(tw, "friends\t%d pairs befriended over the gateway\n", b)
		}
		fmt.Fprintf(tw, "messages\tsent %d (%.0f/s), acknowledged %d, delivered %d, send errors %d\n",
			m.Sent, m.SentPerSecond, m.Acked, m.Delivered, m.SendErrors)
		fmt.Fprintf(tw, "\tunacknowledged %d, acknowledged but undelivered %d, duplicates %d, skipped %d\n",
			m.Unacked, m.Undelivered, m.Duplicates, m.Skipped)
		if len(p.Nodes) > 1 {
			fmt.Fprintf(tw, "\t%d sent while both sides were on one node, %d across nodes\n", m.Sent-m.SentCrossNode, m.SentCrossNode)
		}
		fmt.Fprintf(tw, "warm-up\tthe first %s of the sending: %d sent, %d delivered; after it: %d sent, %d delivered\n",
			seconds(p.WarmupSeconds), m.WarmupSent, res.Latency[hDeliveryWarm].Count, m.Sent-m.WarmupSent, res.Latency[hDeliveryAfter].Count)
	}
	if rm := res.Rooms; rm != nil {
		state, activated := roomsLines(rm, c)
		fmt.Fprintf(tw, "rooms\t%s\n\t%s\n", state, activated)
	}
	if ch := res.Churn; ch != nil {
		fmt.Fprintf(tw, "churn\t%d started (%.1f/s), %d completed, %d cut short by the end of the run\n", ch.Started, ch.StartedPerSecond, ch.Completed, ch.Cut)
	}
	if st := res.Storm; st != nil {
		line := fmt.Sprintf("storm (%s)\t%d sessions", st.Mode, st.Sessions)
		if st.TimeToAllReauthenticatedMs != nil {
			line += fmt.Sprintf(", all re-authenticated in %.2f s", *st.TimeToAllReauthenticatedMs/1000)
		} else {
			line += ": NOT all re-authenticated"
		}
		fmt.Fprintln(tw, line)
	}
	if f := res.First; f != nil {
		line := fmt.Sprintf("first messages\t%d pairs, once all were back: %d sent, %d acknowledged, %d delivered, %d refused", f.Pairs, f.Sent, f.Acked, f.Delivered, f.SendErrors)
		if f.AllAcked && f.AllDelivered {
			line += " (all acknowledged and delivered)"
		} else {
			line += " (NOT all acknowledged and delivered)"
		}
		fmt.Fprintln(tw, line)
	}
	fmt.Fprintf(tw, "errors\t%s\n", tallyLine(res.Errors, "none"))
	for _, k := range sortedKeys(res.ErrorReasons) {
		fmt.Fprintf(tw, "\t%d × %s\n", res.ErrorReasons[k], k)
	}
	fmt.Fprintf(tw, "closes\t%s\n", tallyLine(res.Closes, "none"))
	fmt.Fprintf(tw, "unexpected closes\t%d %s\n", res.UnexpectedTotal, tallyLine(res.UnexpectedCloses, ""))
	if res.UnexpectedOnSurviving != nil {
		fmt.Fprintf(tw, "\t%d on surviving nodes, %d on nodes that went away\n", *res.UnexpectedOnSurviving, *res.UnexpectedOnLost)
	}
	if rc := res.Reconnect; rc != nil {
		fmt.Fprintf(tw, "reconnect\t%d lost, %d reconnected (%d to another node), %d still down at the end\n",
			rc.Lost, rc.Reconnected, rc.Moved, rc.StillDown)
		fmt.Fprintf(tw, "catch-up\t%d done (%d failed, %d truncated): %d messages caught up from history, %d of them also live (counted once)\n",
			rc.CatchUps, rc.CatchUpFailed, rc.CatchUpTruncated, rc.CaughtUp, rc.Overlap)
		switch {
		case rc.Missing == nil:
			fmt.Fprintln(tw, "acknowledged never delivered\tNOT CHECKED (a worker's sessions did not end)")
		case rc.AllDelivered:
			fmt.Fprintln(tw, "acknowledged never delivered\t0: every acknowledged message delivered")
		default:
			fmt.Fprintf(tw, "acknowledged never delivered\t%d: NOT every acknowledged message delivered\n", *rc.Missing)
		}
		if rc.Missing != nil {
			fmt.Fprintf(tw, "\tof those, by the final history check: %d found in history at the end, %d missing from history, %d not checked (final checks: %d, %d of them unfinished)\n",
				*rc.FoundAtEnd, *rc.MissingAtEnd, *rc.UncheckedAtEnd, rc.FinalChecks, rc.FinalUnfinished)
		}
		if rc.LostEvents != nil {
			rc.LostEvents.print(tw)
		}
	}
	if rs := res.Resume; rs != nil {
		printResume(tw, rs)
	}
	tw.Flush()
	printNodes(w, res)

	if len(res.Latency) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "latency (ms)\tcount\tp50\tp90\tp99\tp99.9\tmax\t")
		for _, name := range histNames {
			l, ok := res.Latency[name]
			if !ok {
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", histLabel[name], l.Count, ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max))
		}
		tw.Flush()
	}

	fmt.Fprintln(w)
	sv := res.Server
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(sv.Samples) == 0 {
		fmt.Fprintf(tw, "server\tno samples from %s (%s)\n", sv.Source, sv.LastSampleError)
	} else {
		fmt.Fprintf(tw, "server RSS\t%s at start, %s steady, %s peak (%s)\n", mib(sv.RSSStart), mib(sv.RSSSteady), mib(sv.RSSPeak), sv.Source)
		if sv.SessionsAtSteady > 0 {
			fmt.Fprintf(tw, "RSS per session\t%s (steady RSS / %d sessions); %s above the start\n",
				kib(sv.RSSPerSession), sv.SessionsAtSteady, kib(sv.RSSPerSessionAboveStart))
		}
		fmt.Fprintf(tw, "server CPU\t%.1f s; %.0f%% average, %.0f%% in the main phase, %.0f%% peak (100%% = one core)\n",
			sv.CPUSeconds, sv.CPUAvgPercent, sv.PhaseCPUPercent, sv.CPUPeakPercent)
		if res.Messages != nil {
			fmt.Fprintf(tw, "CPU per 1,000 messages\tserver %s CPU-s per 1,000 delivered (main phase: %.2f CPU-s over %.1f s, %.0f delivered)\n",
				per1000(sv.CPUPer1000), sv.PhaseCPUSeconds, sv.PhaseSeconds, sv.PhaseDelivered)
		}
		if pg := sv.Postgres; pg != nil {
			line := fmt.Sprintf("PostgreSQL CPU\t%.1f s; %.0f%% average, %.0f%% in the main phase (%d postgres processes", pg.CPUSeconds, pg.CPUAvgPercent, pg.PhaseCPUPercent, pg.Processes)
			if res.Messages != nil {
				line += fmt.Sprintf("); %s CPU-s per 1,000 delivered", per1000(pg.CPUPer1000))
			} else {
				line += ")"
			}
			fmt.Fprintln(tw, line)
		}
	}
	fmt.Fprintf(tw, "harness\t%.1f s CPU in %d worker(s), at most %s RSS per worker\n", res.Harness.CPUSeconds, res.Workers, mib(res.Harness.MaxRSSPerWorker))
	tw.Flush()
}

// printNodes writes the per-node table of a run on two nodes or more.
func printNodes(w io.Writer, res *Result) {
	if len(res.Nodes) < 2 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// With the ledger: the acknowledged messages never delivered to the
	// node's sessions, found/missing/not checked by the final check.
	ledger := res.Reconnect != nil && res.Reconnect.Missing != nil
	head := "node\tgateway\tsessions\tauth'd\tmoved in\topen at end\tsent\tacked\tdelivered\tcaught up\t"
	if ledger {
		head += "end: found/missing/unchecked\t"
	}
	fmt.Fprintln(tw, head+"unexpected\tdial failed\tprobes failed\tstate\t")
	for _, n := range res.Nodes {
		state := "up"
		if n.WentAway {
			state = fmt.Sprintf("WENT AWAY at %.1f s", n.WentAwayAt.Sub(res.Start).Seconds())
		}
		atEnd := ""
		if ledger {
			atEnd = fmt.Sprintf("%d/%d/%d\t", n.FoundAtEnd, n.MissingAtEnd, n.UncheckedAtEnd)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s%d\t%d\t%d/%d\t%s\t\n",
			n.Index, n.Gateway, n.Sessions, n.Authenticated, n.MovedIn, n.OpenAtEnd, n.Sent, n.Acked, n.Delivered, n.CaughtUp,
			atEnd, n.UnexpectedCloses, n.ConnectFailed, n.ProbeFailures, n.Probes, state)
	}
	tw.Flush()
}

var histLabel = map[string]string{
	hConnect: "connect+auth", hReauth: "drop→re-auth", hAck: "send→ack", hDelivery: "send→delivery",
	hAckWarm: "send→ack warm-up", hAckAfter: "send→ack after warm-up",
	hDeliveryWarm: "send→delivery warm-up", hDeliveryAfter: "send→delivery after warm-up",
	hFirstAck: "first msg send→ack", hFirstDelivery: "first msg send→delivery",
	hSendLag: "send lag", hChurn: "churn session",
	hAckSame: "send→ack same node", hAckCross: "send→ack cross-node",
	hDeliverySame: "send→delivery same node", hDeliverySameWarm: "same node warm-up", hDeliverySameAfter: "same node after warm-up",
	hDeliveryCross: "send→delivery cross-node", hDeliveryCrossWarm: "cross-node warm-up", hDeliveryCrossAfter: "cross-node after warm-up",
	hReconnectFirst: "close→first delivery", hReconnectCaughtUp: "close→caught up",
	hDeliveryBeforeDrop: "send→delivery before drop", hDeliveryWhileDown: "send→delivery while down", hDeliveryAfterDrop: "send→delivery after reconnect",
	hResumeAuth: "reconnect→auth", hResumeLoad: "auth→caught up", hResumeCaughtUp: "reconnect→caught up",
}

// roomsLines say whether the run began with warm rooms and how many the
// server activated.
func roomsLines(rm *RoomsResult, c map[string]int64) (state, activated string) {
	state = "cold: the measured run began without --warm-rooms"
	if rm.Warmed {
		state = fmt.Sprintf("warm: before the measured run, %d pairs exchanged one unmeasured message (%d delivered)", c["warm_sent"], c["warm_delivered"])
	}
	if rm.Activated == nil {
		why := "the server exports no " + roomActivations
		if rm.Error != "" {
			why = rm.Error
		}
		return state, "rooms activated during the run: unknown (" + why + ")"
	}
	activated = fmt.Sprintf("rooms activated during the run: %d of %d pairs", *rm.Activated, rm.Pairs)
	if rm.ActivatedMeasured != nil {
		activated += fmt.Sprintf(" (%d once the measured sending began)", *rm.ActivatedMeasured)
	}
	return state, activated
}

// roomsCell is roomsLines for a table: cold:N/P, the rooms activated
// during the run of P pairs; warm:W+M/P, W before the measured sending and
// M during it.
func roomsCell(rm *RoomsResult) string {
	switch {
	case rm == nil:
		return "-"
	case !rm.Warmed && rm.Activated == nil:
		return "cold:unknown"
	case !rm.Warmed:
		return fmt.Sprintf("cold:%d/%d", *rm.Activated, rm.Pairs)
	case rm.Activated == nil:
		return "warm:unknown"
	case rm.ActivatedMeasured == nil:
		return fmt.Sprintf("warm:%d/%d", *rm.Activated, rm.Pairs)
	}
	return fmt.Sprintf("warm:%d+%d/%d", *rm.Activated-*rm.ActivatedMeasured, *rm.ActivatedMeasured, rm.Pairs)
}

func per1000(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.3f", *v)
}

func seconds(s float64) string { return time.Duration(s * float64(time.Second)).String() }

func tallyLine(m map[string]int64, none string) string {
	if len(m) == 0 {
		return none
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
