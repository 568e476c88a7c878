package load

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// guildSetupTimeout bounds each of the guild scenario's setup steps: the
// creates with their invites, and the joins.
const guildSetupTimeout = 5 * time.Minute

// GuildResult is the guild scenario's accounting (guild.go).
type GuildResult struct {
	Guilds  int `json:"guilds"`
	Members int `json:"members_per_guild"`
	// Setup: guilds created (with their invite), members in a guild once
	// the joins were over (the creators included), refused or unanswered
	// creates and joins, and how long the creates and the joins took.
	Created       int64   `json:"created"`
	CreateErrors  int64   `json:"create_errors"`
	Joined        int64   `json:"members_joined"`
	JoinErrors    int64   `json:"join_errors"`
	AllJoined     bool    `json:"all_joined"`
	CreateSeconds float64 `json:"create_seconds"`
	JoinSeconds   float64 `json:"join_seconds"`
	JoinsPerSec   float64 `json:"joins_per_second"`

	// The channel sends: written, echoed, refused, skipped (the author
	// was not connected or not a member), per second of sending.
	Sent          int64   `json:"sent"`
	Acked         int64   `json:"acknowledged"`
	SendErrors    int64   `json:"send_errors"`
	Skipped       int64   `json:"skipped"`
	SentPerSecond float64 `json:"sent_per_second"`
	WarmupSent    int64   `json:"warmup_sent"`

	// Fan-out: expected, Σ over the guilds of sent × (members − 1);
	// delivered (send events received by the other members' sessions,
	// each message id once per session); per second over the sending
	// (delivered / --duration), in the warm-up (the deliveries of the
	// messages sent in the first --warmup / --warmup) and after it (the
	// rest / (--duration − --warmup)).
	Expected                 int64   `json:"expected_deliveries"`
	Delivered                int64   `json:"deliveries"`
	DeliveriesPerSecond      float64 `json:"deliveries_per_second"`
	WarmupDeliveries         int64   `json:"warmup_deliveries"`
	WarmupDeliveriesPerSec   float64 `json:"warmup_deliveries_per_second"`
	AfterWarmupDeliveries    int64   `json:"after_warmup_deliveries"`
	AfterWarmupDeliveriesSec float64 `json:"after_warmup_deliveries_per_second"`
	// Missing: expected − delivered (must be 0 when nothing closed);
	// Duplicates: a message id received twice by one session (its own
	// echo included); OutOfOrder: deliveries whose channel seq was below
	// one the session had seen; FramesWithoutSeq: deliveries without seq.
	Missing          int64 `json:"missing"`
	Duplicates       int64 `json:"duplicates"`
	OutOfOrder       int64 `json:"out_of_order"`
	FramesWithoutSeq int64 `json:"frames_without_seq"`
	UnexpectedCloses int64 `json:"unexpected_closes"`
	AllDelivered     bool  `json:"all_delivered"` // missing, duplicates and out of order all 0

	// Latencies, as latency_us's ack, delivery, delivery_warmup and
	// delivery_after_warmup: send → echo, send → delivery at each
	// receiver.
	Ack                 Latency `json:"ack_us"`
	Delivery            Latency `json:"delivery_us"`
	DeliveryWarmup      Latency `json:"delivery_warmup_us"`
	DeliveryAfterWarmup Latency `json:"delivery_after_warmup_us"`

	joined map[int]int64 // members by guild index
}

// guildSetup runs the creates and then the joins; false when the run
// was interrupted (or nothing was created).
func (r *runner) guildSetup() bool {
	cfg := r.cfg
	gr := &GuildResult{Guilds: cfg.Guilds, Members: cfg.Members, joined: map[int]int64{}}
	r.res.Guild = gr
	r.setPhase("creating guilds")
	t0 := time.Now()
	r.broadcast(cmdGuildCreate)
	r.waitUntil(t0.Add(guildSetupTimeout), false, func() bool {
		return r.allReported(func(p *proc) *workerReport { return p.guilds })
	})
	gr.CreateSeconds = time.Since(t0).Seconds()
	if r.interrupted {
		return false
	}
	var infos []guildInfo
	for _, p := range r.procs {
		if p.guilds != nil {
			infos = append(infos, p.guilds.GuildInfos...)
		}
	}
	slices.SortFunc(infos, func(a, b guildInfo) int { return a.Index - b.Index })
	fmt.Fprintf(r.out, "guilds: %d of %d created in %.2f s\n", len(infos), cfg.Guilds, gr.CreateSeconds)
	if len(infos) == 0 {
		return false
	}
	r.setPhase("joining")
	t1 := time.Now()
	r.broadcastCmd(command{Cmd: cmdGuildJoin, Guilds: infos})
	r.waitUntil(t1.Add(guildSetupTimeout), false, func() bool {
		return r.allReported(func(p *proc) *workerReport { return p.joined })
	})
	gr.JoinSeconds = time.Since(t1).Seconds()
	var members int64
	for _, p := range r.procs {
		if p.joined != nil {
			for g, n := range p.joined.GuildJoined {
				gr.joined[g] += n
				members += n
			}
		}
	}
	if joins := members - int64(len(infos)); joins > 0 && gr.JoinSeconds > 0 {
		gr.JoinsPerSec = float64(joins) / gr.JoinSeconds
	}
	fmt.Fprintf(r.out, "guilds: %d members in %d guilds after %.2f s of joins (%.0f joins/s)\n", members, len(infos), gr.JoinSeconds, gr.JoinsPerSec)
	return !r.interrupted
}

// guildResult fills the guild accounting from the merged counts and
// histograms (finish), and the dm figures compare reads.
func (r *runner) guildResult() {
	res, cfg := r.res, r.cfg
	c := res.Counts
	gr := res.Guild
	if gr == nil {
		gr = &GuildResult{Guilds: cfg.Guilds, Members: cfg.Members}
		res.Guild = gr
	}
	gr.Created, gr.CreateErrors = c["guilds_created"], c["guild_create_errors"]
	gr.Joined, gr.JoinErrors = c["guild_members_joined"], c["guild_join_errors"]
	gr.AllJoined = gr.Joined == int64(cfg.Guilds*cfg.Members)
	gr.Sent, gr.Acked, gr.SendErrors, gr.Skipped = c["sent"], c["acked"], c["send_errors"], c["skipped"]
	gr.WarmupSent = c["warmup_sent"]
	sent := map[int]int64{}
	for _, p := range r.procs {
		if p.result != nil {
			for g, n := range p.result.GuildSent {
				sent[g] += n
			}
		}
	}
	for g, n := range sent {
		if m := gr.joined[g]; m > 1 {
			gr.Expected += n * (m - 1)
		}
	}
	gr.Delivered = c["delivered"]
	gr.Missing = gr.Expected - gr.Delivered
	gr.Duplicates, gr.OutOfOrder, gr.FramesWithoutSeq = c["duplicates"], c["out_of_order"], c["frames_without_seq"]
	gr.UnexpectedCloses = c["unexpected_closes"]
	gr.AllDelivered = gr.Missing == 0 && gr.Duplicates == 0 && gr.OutOfOrder == 0
	lat := res.Latency
	gr.Ack, gr.Delivery, gr.DeliveryWarmup, gr.DeliveryAfterWarmup = lat[hAck], lat[hDelivery], lat[hDeliveryWarm], lat[hDeliveryAfter]
	gr.WarmupDeliveries, gr.AfterWarmupDeliveries = gr.DeliveryWarmup.Count, gr.DeliveryAfterWarmup.Count
	if d := r.phaseSeconds(); d > 0 {
		gr.SentPerSecond = float64(gr.Sent) / d
		gr.DeliveriesPerSecond = float64(gr.Delivered) / d
		warm := min(cfg.Warmup.Seconds(), d)
		if warm > 0 {
			gr.WarmupDeliveriesPerSec = float64(gr.WarmupDeliveries) / warm
		}
		if d > warm {
			gr.AfterWarmupDeliveriesSec = float64(gr.AfterWarmupDeliveries) / (d - warm)
		}
	}
	// The dm figures, for compare: messages are the channel sends,
	// delivered the fan-out deliveries, undelivered the missing ones.
	res.Messages = &MessagesResult{
		Sent: gr.Sent, Acked: gr.Acked, Delivered: gr.Delivered, SendErrors: gr.SendErrors,
		Unacked: gr.Sent - gr.Acked - gr.SendErrors, Undelivered: gr.Missing,
		Duplicates: gr.Duplicates, Skipped: gr.Skipped, SentPerSecond: gr.SentPerSecond, WarmupSent: gr.WarmupSent,
	}
}

// printGuild writes the guild lines of the summary.
func printGuild(tw io.Writer, gr *GuildResult) {
	joined := "all"
	if !gr.AllJoined {
		joined = "NOT ALL"
	}
	fmt.Fprintf(tw, "guilds\t%d of %d created (%d errors) in %.2f s; %d of %d members in them (%s; %d join errors), joins %.2f s (%.0f/s)\n",
		gr.Created, gr.Guilds, gr.CreateErrors, gr.CreateSeconds, gr.Joined, gr.Guilds*gr.Members, joined, gr.JoinErrors, gr.JoinSeconds, gr.JoinsPerSec)
	fmt.Fprintf(tw, "channel sends\tsent %d (%.0f/s), acknowledged %d, send errors %d, skipped %d\n",
		gr.Sent, gr.SentPerSecond, gr.Acked, gr.SendErrors, gr.Skipped)
	fmt.Fprintf(tw, "fan-out\t%d deliveries of %d expected (sent × (members − 1)): %.0f/s over the sending; warm-up %d (%.0f/s), after it %d (%.0f/s)\n",
		gr.Delivered, gr.Expected, gr.DeliveriesPerSecond, gr.WarmupDeliveries, gr.WarmupDeliveriesPerSec, gr.AfterWarmupDeliveries, gr.AfterWarmupDeliveriesSec)
	verdict := "every message reached every other member once, in order"
	if !gr.AllDelivered {
		verdict = "NOT every message reached every other member once, in order"
	}
	fmt.Fprintf(tw, "\tmissing %d, duplicates %d, out of order %d, without seq %d, unexpected closes %d: %s\n",
		gr.Missing, gr.Duplicates, gr.OutOfOrder, gr.FramesWithoutSeq, gr.UnexpectedCloses, verdict)
}
