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
	fmt.Fprintln(tw, "run\tscenario\tsessions\tauth'd\tconn/s\tmsg/s\tacked\tdelivered\tack p50 ms\tack p99 ms\tdlv p50 ms\tdlv p99 ms\tdlv p99.9 ms\tdlv max ms\t"+
		"dlv p99 warm-up ms\tdlv p99 after warm-up ms\trooms activated\t"+
		"unexpected closes\tre-auth s\tKiB/session\tserver CPU %\tCPU-s/1k msg\tPG CPU %\tPG CPU-s/1k msg\t"+
		"1st ack p99 ms\t1st dlv p99 ms\t1st delivered\tcatch-up p99 ms\tmissing\tviews equal\t")
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
		scenario := r.Scenario
		if r.Params.Target != "" && r.Params.Target != "rewind" {
			scenario += "/" + r.Params.Target
		}
		warm, after := r.Latency[hDeliveryWarm], r.Latency[hDeliveryAfter]
		pgPercent, pgPer1000 := "-", "-"
		if pg := r.Server.Postgres; pg != nil {
			pgPercent, pgPer1000 = fmt.Sprintf("%.0f", pg.PhaseCPUPercent), per1000(pg.CPUPer1000)
		}
		firstAck, firstDlv, firstN := "-", "-", "-"
		if fm := r.First; fm != nil {
			firstAck, firstDlv = measured(fm.Ack.P99, fm.Ack.Count), measured(fm.Delivery.P99, fm.Delivery.Count)
			firstN = fmt.Sprintf("%d/%d", fm.Delivered, fm.Pairs)
		}
		// resume: reconnect→caught up p99, missing (messages/edits), views
		// equal of checked.
		catchUp, missing, views := "-", "-", "-"
		if rs := r.Resume; rs != nil {
			catchUp = measured(rs.ReconnectToCaughtUp.P99, rs.ReconnectToCaughtUp.Count)
			if rs.Missing != nil && rs.EditsMissing != nil {
				missing = fmt.Sprintf("%d/%d", *rs.Missing, *rs.EditsMissing)
			}
			views = fmt.Sprintf("%d/%d", rs.ViewsMatched, rs.ViewChecks)
		}
		if gr := r.Guild; gr != nil {
			missing = fmt.Sprint(gr.Missing) // fan-out deliveries expected, not received
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%.1f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			filepath.Base(f), scenario, r.Params.Sessions, r.Sessions.FirstAuthenticated, r.Sessions.ConnectRate,
			rate, acked, delivered, measured(ack.P50, ack.Count), measured(ack.P99, ack.Count), measured(dlv.P50, dlv.Count),
			measured(dlv.P99, dlv.Count), measured(dlv.P999, dlv.Count), measured(dlv.Max, dlv.Count),
			measured(warm.P99, warm.Count), measured(after.P99, after.Count), roomsCell(r.Rooms),
			r.UnexpectedTotal, reauth, float64(r.Server.RSSPerSession)/1024, r.Server.PhaseCPUPercent,
			per1000(r.Server.CPUPer1000), pgPercent, pgPer1000, firstAck, firstDlv, firstN, catchUp, missing, views)
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
