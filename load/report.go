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
	// session from dial to its close answered).
	Latency  map[string]Latency `json:"latency_us"`
	Messages *MessagesResult    `json:"messages,omitempty"`
	Churn    *ChurnResult       `json:"churn,omitempty"`
	Storm    *StormResult       `json:"storm,omitempty"`

	Errors           map[string]int64 `json:"errors_by_code"`
	ErrorReasons     map[string]int64 `json:"errors_by_reason"`
	Closes           map[string]int64 `json:"closes_by_code"` // every ended connection; "lost": no close frame; "dial_failed"
	UnexpectedCloses map[string]int64 `json:"unexpected_closes_by_code"`
	UnexpectedTotal  int64            `json:"unexpected_closes"`

	Server  ServerResult  `json:"server"`
	Harness HarnessResult `json:"harness"`

	phaseStart time.Time // the scenario's main phase began
	stopAt     time.Time // the workers were told to stop
}

// Params are the settings of the run.
type Params struct {
	URL                string  `json:"url"`
	Sessions           int     `json:"sessions"`
	Pairs              int     `json:"pairs,omitempty"`
	Rate               float64 `json:"rate,omitempty"`
	Size               int     `json:"size,omitempty"`
	Churn              float64 `json:"churn,omitempty"`
	HoldSeconds        float64 `json:"hold_seconds,omitempty"`
	DurationSeconds    float64 `json:"duration_seconds"`
	HeartbeatSeconds   float64 `json:"heartbeat_seconds"`
	WSVersion          int     `json:"ws_version"`
	ConnectConcurrency int     `json:"connect_concurrency"`
	Reconnect          bool    `json:"reconnect"`
	AfterRestart       bool    `json:"after_restart,omitempty"`
	ServerPID          int     `json:"server_pid,omitempty"`
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
	Undelivered   int64   `json:"undelivered"`    // acknowledged minus delivered
	Duplicates    int64   `json:"duplicates"`
	Skipped       int64   `json:"skipped"` // not sent: a side was not connected
	SentPerSecond float64 `json:"sent_per_second"`
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

	steady     Sample
	steadyOpen int64
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
			URL: cfg.wsURL(), Sessions: cfg.Sessions,
			DurationSeconds: cfg.Duration.Seconds(), HeartbeatSeconds: cfg.Heartbeat.Seconds(),
			WSVersion: cfg.WSVersion, ConnectConcurrency: cfg.ConnectConcurrency,
			Reconnect: cfg.Reconnect, AfterRestart: cfg.AfterRestart, ServerPID: cfg.ServerPID,
		},
		Sessions: SessionsResult{Target: int64(cfg.Sessions)},
	}
	switch cfg.Scenario {
	case "dm":
		r.Params.Pairs, r.Params.Rate, r.Params.Size = cfg.Pairs, cfg.Rate, cfg.Size
	case "churn":
		r.Params.Churn, r.Params.HoldSeconds = cfg.Churn, cfg.Hold.Seconds()
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
	switch res.Scenario {
	case "dm":
		head += fmt.Sprintf(", %d pairs at %.0f msg/s", p.Pairs, p.Rate)
	case "churn":
		head += fmt.Sprintf(" as accounts, %.0f connects/s holding %.1f s", p.Churn, p.HoldSeconds)
	case "storm":
		if p.AfterRestart {
			head += " (after a server restart)"
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
	fmt.Fprintf(tw, "heartbeats\t%d sent after the first, %d answered\n", c["heartbeats_sent"], c["heartbeats_answered"])
	if m := res.Messages; m != nil {
		if b := c["befriended"]; b > 0 {
			fmt.Fprintf(tw, "friends\t%d pairs befriended over the gateway\n", b)
		}
		fmt.Fprintf(tw, "messages\tsent %d (%.0f/s), acknowledged %d, delivered %d, send errors %d\n",
			m.Sent, m.SentPerSecond, m.Acked, m.Delivered, m.SendErrors)
		fmt.Fprintf(tw, "\tunacknowledged %d, acknowledged but undelivered %d, duplicates %d, skipped %d\n",
			m.Unacked, m.Undelivered, m.Duplicates, m.Skipped)
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
	fmt.Fprintf(tw, "errors\t%s\n", tallyLine(res.Errors, "none"))
	for _, k := range sortedKeys(res.ErrorReasons) {
		fmt.Fprintf(tw, "\t%d × %s\n", res.ErrorReasons[k], k)
	}
	fmt.Fprintf(tw, "closes\t%s\n", tallyLine(res.Closes, "none"))
	fmt.Fprintf(tw, "unexpected closes\t%d %s\n", res.UnexpectedTotal, tallyLine(res.UnexpectedCloses, ""))
	tw.Flush()

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
	}
	fmt.Fprintf(tw, "harness\t%.1f s CPU in %d worker(s), at most %s RSS per worker\n", res.Harness.CPUSeconds, res.Workers, mib(res.Harness.MaxRSSPerWorker))
	tw.Flush()
}

var histLabel = map[string]string{
	hConnect: "connect+auth", hReauth: "drop→re-auth", hAck: "send→ack", hDelivery: "send→delivery",
	hSendLag: "send lag", hChurn: "churn session",
}

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
