package load

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
)

// Compare prints one row per results file (--json output), so runs can be
// set side by side: `rewind-load compare a.json b.json …`.
func Compare(files []string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintln(stderr, "usage: rewind-load compare RESULT.json...")
		return 2
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tscenario\tsessions\tauth'd\tconn/s\tmsg/s\tacked\tdelivered\tack p50 ms\tack p99 ms\tdlv p50 ms\tdlv p99 ms\tdlv p99.9 ms\tdlv max ms\tunexpected closes\tre-auth s\tKiB/session\tserver CPU %\t")
	for _, f := range files {
		var r Result
		b, err := os.ReadFile(f)
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			fmt.Fprintln(stderr, "rewind-load:", err)
			return 1
		}
		ack, dlv := r.Latency[hAck], r.Latency[hDelivery]
		rate, acked, delivered := "-", "-", "-"
		if m := r.Messages; m != nil {
			rate = fmt.Sprintf("%.0f", m.SentPerSecond)
			acked, delivered = fmt.Sprint(m.Acked), fmt.Sprint(m.Delivered)
		}
		reauth := "-"
		if st := r.Storm; st != nil && st.TimeToAllReauthenticatedMs != nil {
			reauth = fmt.Sprintf("%.2f", *st.TimeToAllReauthenticatedMs/1000)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%.1f\t%.0f\t\n",
			filepath.Base(f), r.Scenario, r.Params.Sessions, r.Sessions.FirstAuthenticated, r.Sessions.ConnectRate,
			rate, acked, delivered, measured(ack.P50, ack.Count), measured(ack.P99, ack.Count), measured(dlv.P50, dlv.Count),
			measured(dlv.P99, dlv.Count), measured(dlv.P999, dlv.Count), measured(dlv.Max, dlv.Count),
			r.UnexpectedTotal, reauth, float64(r.Server.RSSPerSession)/1024, r.Server.PhaseCPUPercent)
	}
	if err := tw.Flush(); err != nil {
		return 1
	}
	return 0
}

// measured renders microseconds as milliseconds, "-" when nothing was
// measured.
func measured(us, count int64) string {
	if count == 0 {
		return "-"
	}
	return ms(us)
}
