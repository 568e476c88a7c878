package load

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// WorkerCommand returns the command that starts one worker process; the
// default re-executes this program. Tests may replace it.
var WorkerCommand = func() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(exe, "worker"), nil
}

// proc is one worker process as the parent sees it.
type proc struct {
	index    int
	sessions int
	cmd      *exec.Cmd
	in       io.WriteCloser
	enc      *json.Encoder
	counts   map[string]int64 // latest
	ready    *workerReport
	stormed  *workerReport
	warmed   *workerReport
	first    *workerReport
	guilds   *workerReport // guild: its creates and invites
	joined   *workerReport // guild: its joins
	lost     bool          // lost sessions and not recovered yet
	lostAt   int64
	recovAt  int64
	result   *workerReport
	exited   bool
	exitErr  error
	// delivered by report time, to count the deliveries between two
	// server samples
	delivered []countAt
}

type countAt struct{ at, n int64 }

// event is a worker's report, or its end (rep nil).
type event struct {
	w   *proc
	rep *workerReport
	err error
}

// runner drives one run from the parent.
type runner struct {
	cfg    *Config
	out    io.Writer
	errOut io.Writer
	tty    bool
	procs  []*proc
	events chan event
	smp    *sampler
	watch  *nodeWatch // two nodes or more
	start  time.Time
	res    *Result
	web    *http.Client // reads the server's /metrics

	sig         chan os.Signal
	ctxDone     <-chan struct{} // nil once seen
	interrupted bool
	open        atomic.Int64 // sessions authenticated now, for the sampler
	lastLine    time.Time
	phase       string
	phaseStart  time.Time
}

// Run runs cfg and returns its results; the error says what stopped it
// early. A run interrupted by ctx (Ctrl-C) still returns its results.
func Run(ctx context.Context, cfg *Config, stdout, stderr io.Writer) (*Result, error) {
	// The workers' standard errors go to stderr too, each copied by its own
	// goroutine when stderr is not a file.
	r := &runner{cfg: cfg, out: stdout, errOut: &lockedWriter{w: stderr}, events: make(chan event, 1024), sig: make(chan os.Signal, 2)}
	if f, ok := stdout.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			r.tty = true
		}
	}
	if cfg.Progress <= 0 {
		cfg.Progress = 5 * time.Second
		if r.tty {
			cfg.Progress = time.Second
		}
	}
	signal.Notify(r.sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(r.sig)
	return r.run(ctx)
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	r.ctxDone = ctx.Done()
	sources := sourceAddrs(cfg.SourceBase, cfg.SourceIPs)
	r.res = newResult(cfg, sources)

	// Accounts.
	t0 := time.Now()
	nAccounts := cfg.Sessions
	var accounts []Account
	var err error
	info := accountsInfo{Count: nAccounts, Prefix: cfg.Prefix, Method: "store", Tokens: cfg.Tokens}
	actx, cancelAccounts := context.WithCancel(ctx)
	go func() {
		select {
		case <-r.sig:
			cancelAccounts()
		case <-actx.Done():
		}
	}()
	switch {
	case cfg.Target == "centrifugo":
		// No accounts: Centrifugo runs with client.insecure; session i's
		// name is its channel.
		info.Method, info.Tokens, info.Prefix = "none", "none", ""
		accounts = make([]Account, nAccounts)
		for i := range accounts {
			accounts[i].Name = "u" + strconv.Itoa(i)
		}
	case cfg.ViaHTTP:
		info.Method, info.Tokens = "http", "login"
		accounts, err = httpAccounts(actx, cfg, nAccounts, r.out)
	default:
		fmt.Fprintf(r.out, "accounts: creating %d in the store (%s)…\n", nAccounts, storeKind(cfg.DatabaseURL))
		accounts, err = storeAccounts(actx, cfg, nAccounts, cfg.Pairs, r.out)
	}
	cancelAccounts()
	info.Seconds = time.Since(t0).Seconds()
	r.res.Accounts = info
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	if cfg.Target != "centrifugo" {
		fmt.Fprintf(r.out, "accounts: %d ready in %.1f s (%s, tokens by %s, prefix %s)\n", nAccounts, info.Seconds, info.Method, info.Tokens, cfg.Prefix)
	}

	// Server sampling, from before the sessions on.
	r.start = time.Now()
	r.res.Start = r.start
	var pg *procGroup
	if cfg.PGCPU {
		pg = newProcGroup("postgres")
	}
	r.smp = newSampler(cfg.ServerPID, cfg.HTTP+"/metrics", r.start, r.open.Load, pg)
	r.web = &http.Client{Timeout: 3 * time.Second}
	if cfg.chatting() {
		r.res.Rooms = &RoomsResult{Pairs: cfg.Pairs, Warmed: cfg.WarmRooms}
		r.res.Rooms.AtStart = r.roomsCounter()
	}
	sctx, stopSampling := context.WithCancel(context.Background())
	defer stopSampling()
	sampled := make(chan struct{})
	go func() { r.smp.run(sctx); close(sampled) }()
	wctx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	watched := make(chan struct{})
	if len(cfg.nodes) > 1 {
		r.watch = newNodeWatch(cfg.nodes)
		go func() { r.watch.watch(wctx); close(watched) }()
	} else {
		close(watched)
	}

	if err := r.spawn(accounts, sources, cfg.Pairs > 0 && cfg.ViaHTTP); err != nil {
		r.killAll()
		return nil, err
	}
	r.scenario()

	// Stop.
	r.res.Server.steady, _ = r.smp.last()
	r.res.Server.steadyOpen = r.openNow()
	r.setPhase("stopping")
	r.res.stopAt = time.Now()
	// The nodes that went away did so during the scenario: what follows
	// is the harness's own closing.
	stopWatching()
	<-watched
	r.broadcast(cmdStop)
	for _, p := range r.procs {
		p.in.Close()
	}
	stopBy := time.Now().Add(cfg.Drain + closeWait + 15*time.Second)
	if cfg.ledger() || cfg.Scenario == "resume" {
		stopBy = stopBy.Add(finalCheckTime) // the final check on history, the state check
	}
	r.waitUntil(stopBy, true, func() bool {
		for _, p := range r.procs {
			if !p.exited {
				return false
			}
		}
		return true
	})
	r.killAll()
	r.drainExits(3 * time.Second)
	if r.res.Rooms != nil {
		r.res.Rooms.AtEnd = r.roomsCounter()
	}
	stopSampling()
	<-sampled
	r.clearLine()
	r.res.End = time.Now()
	r.res.Interrupted = r.interrupted
	return r.res, r.finish()
}

func storeKind(u string) string {
	if len(u) >= 7 && u[:7] == "sqlite:" {
		return u
	}
	return "postgres"
}

// spawn starts the workers and hands each its share of the accounts. Pairs
// stay within one worker, so a dm's two sides share a clock.
func (r *runner) spawn(accounts []Account, sources []string, befriend bool) error {
	cfg := r.cfg
	n := len(accounts)
	w := min(cfg.Workers, n)
	per := (n + w - 1) / w
	if per%2 == 1 {
		per++
	}
	drops := 0 // resume: the drops of the workers so far
	deadline := time.Now().Add(cfg.ConnectTimeout + cfg.Duration + cfg.Drain + time.Minute)
	if cfg.WarmRooms || cfg.Scenario == "storm" && cfg.Pairs > 0 {
		deadline = deadline.Add(cfg.Drain) // the warming or the first messages' wait
	}
	var epoch int64
	if cfg.guild() {
		deadline = deadline.Add(2 * guildSetupTimeout) // the creates and the joins
		epoch = time.Now().UnixNano()
	}
	for i := 0; i*per < n; i++ {
		lo, hi := i*per, min((i+1)*per, n)
		pairs := max(0, min(cfg.Pairs-lo/2, (hi-lo)/2))
		homes := make([]int, hi-lo)
		for j := range homes {
			homes[j] = cfg.homeNode(lo + j)
		}
		spec := workerSpec{
			Index: i, Scenario: cfg.Scenario, Target: cfg.Target, URLs: cfg.gatewayURLs(), Homes: homes, SourceIPs: sources, Warmup: cfg.Warmup,
			Offset: lo, Accounts: accounts[lo:hi], Pairs: pairs, Befriend: befriend, Ledger: cfg.ledger(),
			Size: cfg.Size, Hold: cfg.Hold, Heartbeat: cfg.Heartbeat,
			DialTimeout: cfg.DialTimeout, ConnectTimeout: cfg.ConnectTimeout,
			Reconnect: cfg.Reconnect, Backoff: cfg.Backoff, BackoffMax: cfg.BackoffMax,
			Drain: cfg.Drain, Progress: time.Second, Deadline: deadline.UnixNano(), Epoch: epoch,
		}
		if cfg.guild() {
			// A guild's members may be on several workers: the common
			// epoch times a send where another worker receives it.
			spec.Guild = &guildSpec{Guilds: cfg.Guilds, Members: cfg.Members}
			spec.Rate = cfg.Rate * float64(hi-lo) / float64(n)
		}
		share := float64(hi-lo) / float64(n)
		if cfg.chatting() {
			spec.Rate = cfg.Rate * float64(pairs) / float64(cfg.Pairs)
		}
		if cfg.Scenario == "resume" {
			spec.Resume = cfg.resumeShare(lo/2, pairs, drops)
			drops += len(spec.Resume.Drops)
		}
		if cfg.Scenario == "churn" {
			spec.Churn = cfg.Churn * share
		}
		if cfg.ConnectConcurrency > 0 {
			spec.ConnectConcurrency = max(1, int(float64(cfg.ConnectConcurrency)*share))
		}
		p, err := r.startWorker(spec)
		if err != nil {
			return fmt.Errorf("worker %d: %w", i, err)
		}
		r.procs = append(r.procs, p)
	}
	r.res.Workers = len(r.procs)
	fmt.Fprintf(r.out, "workers: %d processes, %d source addresses from %s; %s\n",
		len(r.procs), len(sources), sources[0], strings.Join(cfg.gatewayURLs(), ", "))
	if len(cfg.nodes) > 1 && cfg.Pairs > 0 {
		where := "both sides of pair p on node p mod " + strconv.Itoa(len(cfg.nodes))
		if cfg.CrossNode {
			where = "pair p's side A on node p mod N, side B on node (p+1) mod N"
		}
		fmt.Fprintf(r.out, "nodes: %d; %s\n", len(cfg.nodes), where)
	}
	return nil
}

func (r *runner) startWorker(spec workerSpec) (*proc, error) {
	cmd, err := WorkerCommand()
	if err != nil {
		return nil, err
	}
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	cmd.Stderr = r.errOut
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{index: spec.Index, sessions: len(spec.Accounts), cmd: cmd, in: in, counts: map[string]int64{}}
	bw := bufio.NewWriterSize(in, 1<<16)
	p.enc = json.NewEncoder(in)
	if err := json.NewEncoder(bw).Encode(spec); err != nil {
		return p, err
	}
	if err := bw.Flush(); err != nil {
		return p, err
	}
	go func() {
		sc := bufio.NewScanner(outPipe)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for sc.Scan() {
			var rep workerReport
			if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
				fmt.Fprintf(r.errOut, "worker %d: %s\n", p.index, sc.Bytes())
				continue
			}
			r.events <- event{w: p, rep: &rep}
		}
		r.events <- event{w: p, err: cmd.Wait()}
	}()
	return p, nil
}

func (r *runner) broadcast(cmd string) { r.broadcastCmd(command{Cmd: cmd}) }

func (r *runner) broadcastCmd(c command) {
	for _, p := range r.procs {
		if !p.exited {
			_ = p.enc.Encode(c)
		}
	}
}

// allReported reports whether every worker still running has sent the
// report got picks.
func (r *runner) allReported(got func(p *proc) *workerReport) bool {
	for _, p := range r.procs {
		if got(p) == nil && !p.exited {
			return false
		}
	}
	return true
}

// roomActivations is the server's counter of room actors started.
const roomActivations = "rewind_room_activations_total"

// roomsCounter reads roomActivations, added up over the nodes (each
// address once); nil when a node does not export it (or did not answer:
// the error is kept).
func (r *runner) roomsCounter() *float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var sum float64
	seen := map[string]bool{}
	for _, n := range r.cfg.nodes {
		if seen[n.HTTP] {
			continue
		}
		seen[n.HTTP] = true
		v, found, err := scrapeCounter(ctx, r.web, n.HTTP+"/metrics", roomActivations)
		if err != nil {
			r.res.Rooms.Error = err.Error()
			return nil
		}
		if !found {
			return nil
		}
		sum += v
	}
	return &sum
}

func (r *runner) killAll() {
	for _, p := range r.procs {
		if !p.exited && p.cmd.Process != nil {
			_ = p.cmd.Process.Kill()
		}
	}
}

// drainExits takes the end events of killed workers.
func (r *runner) drainExits(d time.Duration) {
	deadline := time.After(d)
	for {
		all := true
		for _, p := range r.procs {
			all = all && p.exited
		}
		if all {
			return
		}
		select {
		case e := <-r.events:
			r.take(e)
		case <-deadline:
			return
		}
	}
}

// take applies one event.
func (r *runner) take(e event) {
	p := e.w
	if e.rep == nil {
		p.exited = true
		p.exitErr = e.err
		return
	}
	rep := e.rep
	if rep.Counts != nil {
		p.counts = rep.Counts
		r.open.Store(r.openNow())
		if rep.At > 0 {
			p.delivered = append(p.delivered, countAt{rep.At, rep.Counts["delivered"]})
		}
	}
	switch rep.Type {
	case repReady:
		p.ready = rep
	case repStormed:
		p.stormed = rep
	case repWarmed:
		p.warmed = rep
	case repFirstDone:
		p.first = rep
	case repLost:
		if !p.lost {
			p.lost = true
			if p.lostAt == 0 {
				p.lostAt = rep.At
			}
		}
	case repRecovered:
		p.lost = false
		p.recovAt = rep.At
	case repResult:
		p.result = rep
	case repGuilds:
		p.guilds = rep
	case repJoined:
		p.joined = rep
	}
}

// waitUntil handles events until done() holds, the deadline passes or the
// run is interrupted (unless stopping: then a second interrupt kills the
// workers). It reports whether done() held.
func (r *runner) waitUntil(deadline time.Time, stopping bool, done func() bool) bool {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if done() {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		select {
		case e := <-r.events:
			r.take(e)
		case <-tick.C:
			r.progress(false)
		case <-r.sig:
			if stopping {
				fmt.Fprintln(r.errOut, "\nrewind-load: interrupted again: killing the workers")
				r.killAll()
				return false
			}
			r.interrupted = true
			r.clearLine()
			fmt.Fprintln(r.errOut, "rewind-load: interrupted: stopping the workers (Ctrl-C again to kill them)")
			return false
		case <-r.ctxDone:
			r.ctxDone = nil
			if stopping {
				continue
			}
			r.interrupted = true
			r.clearLine()
			fmt.Fprintln(r.errOut, "rewind-load: cancelled: stopping the workers")
			return false
		}
	}
}

// sleep handles events for d; false when interrupted.
func (r *runner) sleep(d time.Duration) bool {
	r.waitUntil(time.Now().Add(d), false, func() bool { return false })
	return !r.interrupted
}

func (r *runner) setPhase(name string) {
	r.phase = name
	r.phaseStart = time.Now()
	r.progress(true)
}

// scenario runs the timeline of the scenario, from the workers' start to
// the moment they are told to stop.
func (r *runner) scenario() {
	cfg := r.cfg
	if cfg.Scenario == "churn" {
		r.setPhase("churn")
		r.res.phaseStart = time.Now()
		r.sleep(cfg.Duration)
		return
	}
	r.setPhase("connecting")
	allReady := func() bool {
		for _, p := range r.procs {
			if p.ready == nil && !p.exited {
				return false
			}
		}
		return true
	}
	r.waitUntil(time.Now().Add(cfg.ConnectTimeout+30*time.Second), false, allReady)
	r.connectPhase()
	if r.interrupted {
		return
	}
	r.res.phaseStart = time.Now()
	switch cfg.Scenario {
	case "idle":
		r.setPhase("holding")
		r.sleep(cfg.Duration)
	case "dm", "resume":
		if cfg.WarmRooms {
			r.setPhase("warming rooms")
			r.broadcast(cmdWarm)
			r.waitUntil(time.Now().Add(cfg.Drain+30*time.Second), false, func() bool {
				return r.allReported(func(p *proc) *workerReport { return p.warmed })
			})
			if r.interrupted {
				return
			}
		}
		r.res.Rooms.AtMeasure = r.roomsCounter()
		r.res.phaseStart = time.Now()
		r.setPhase("sending")
		r.broadcastCmd(command{Cmd: cmdDM, At: r.res.phaseStart.UnixNano()})
		if cfg.Scenario == "resume" {
			// The workers drop and bring back their sessions themselves;
			// the phases are for the progress line.
			if r.sleep(cfg.DropAt) {
				r.setPhase("down")
				if r.sleep(cfg.Down) {
					r.setPhase("resumed")
					r.sleep(cfg.Duration - cfg.DropAt - cfg.Down)
				}
			}
			return
		}
		r.sleep(cfg.Duration)
	case "storm":
		if cfg.AfterRestart {
			r.afterRestart()
		} else {
			r.storm()
		}
	case "guild":
		if !r.guildSetup() {
			return
		}
		r.res.phaseStart = time.Now()
		r.setPhase("sending")
		r.broadcastCmd(command{Cmd: cmdDM, At: r.res.phaseStart.UnixNano()})
		r.sleep(cfg.Duration)
	}
}

// connectPhase records the first connect phase's figures.
func (r *runner) connectPhase() {
	var first, last int64
	var authed int64
	for _, p := range r.procs {
		if p.ready == nil {
			continue
		}
		if first == 0 || p.ready.Started < first {
			first = p.ready.Started
		}
		last = max(last, p.ready.At)
		authed += p.ready.Counts["authenticated"]
	}
	s := &r.res.Sessions
	s.FirstAuthenticated = authed
	s.AllAuthenticated = authed == int64(r.cfg.Sessions)
	if first > 0 && last > first {
		s.ConnectSeconds = float64(last-first) / 1e9
		s.ConnectRate = float64(authed) / s.ConnectSeconds
	}
	if s.AllAuthenticated {
		ms := s.ConnectSeconds * 1000
		s.TimeToAllAuthenticatedMs = &ms
	}
}

// storm closes every session at once and waits until all are back.
func (r *runner) storm() {
	cfg := r.cfg
	st := &StormResult{Mode: "reconnect", Sessions: r.openNow()}
	r.res.Storm = st
	// Let the first phase settle for a moment, as after a quiet spell.
	if !r.sleep(min(time.Second, cfg.Duration/10)) {
		return
	}
	r.setPhase("storm")
	at := time.Now()
	r.broadcast(cmdStorm)
	ok := r.waitUntil(at.Add(cfg.Duration), false, func() bool {
		for _, p := range r.procs {
			if p.stormed == nil && !p.exited {
				return false
			}
		}
		return true
	})
	st.Completed = ok
	var last int64
	for _, p := range r.procs {
		if p.stormed != nil {
			last = max(last, p.stormed.At)
		}
	}
	if ok && last > 0 {
		ms := float64(last-at.UnixNano()) / 1e6
		st.TimeToAllReauthenticatedMs = &ms
	}
	if ok && cfg.Pairs > 0 {
		r.firstMessages()
	}
	r.setPhase("holding")
	r.sleep(min(2*time.Second, cfg.Duration/10))
}

// afterRestart waits, up to --duration, for the server to drop the
// sessions (an operator restarts it) and for every session to come back.
func (r *runner) afterRestart() {
	cfg := r.cfg
	st := &StormResult{Mode: "after-restart", Sessions: r.openNow()}
	r.res.Storm = st
	r.setPhase("waiting for a server restart")
	fmt.Fprintf(r.out, "storm: restart the server now; waiting up to %s for the sessions to be dropped and come back\n", cfg.Duration)
	deadline := time.Now().Add(cfg.Duration)
	anyLost := func() bool {
		for _, p := range r.procs {
			if p.lostAt != 0 {
				return true
			}
		}
		return false
	}
	if !r.waitUntil(deadline, false, anyLost) {
		return
	}
	r.setPhase("reconnecting")
	ok := r.waitUntil(deadline, false, func() bool {
		for _, p := range r.procs {
			if p.lost && !p.exited {
				return false
			}
		}
		return true
	})
	st.Completed = ok
	var first, last int64
	for _, p := range r.procs {
		if p.lostAt != 0 && (first == 0 || p.lostAt < first) {
			first = p.lostAt
		}
		last = max(last, p.recovAt)
	}
	if ok && first > 0 {
		ms := float64(last-first) / 1e6
		st.TimeToAllReauthenticatedMs = &ms
		st.FirstLoss = time.Unix(0, first)
	}
	if ok && cfg.Pairs > 0 {
		r.firstMessages()
	}
	r.setPhase("holding")
	r.sleep(min(2*time.Second, cfg.Duration/10))
}

// firstMessages has the first side of every pair send one message at once
// and waits for them to be answered: the first messages after a storm,
// which find the rooms cold.
func (r *runner) firstMessages() {
	r.res.First = &FirstResult{Pairs: r.cfg.Pairs}
	r.setPhase("first messages")
	r.broadcast(cmdFirst)
	r.waitUntil(time.Now().Add(r.cfg.Drain+10*time.Second), false, func() bool {
		return r.allReported(func(p *proc) *workerReport { return p.first })
	})
}

// openNow is the sessions authenticated now, by the latest progress.
func (r *runner) openNow() int64 {
	var n int64
	for _, p := range r.procs {
		n += p.counts["open"]
	}
	return n
}

// total adds up the latest counts of every worker.
func (r *runner) total() map[string]int64 {
	t := map[string]int64{}
	for _, p := range r.procs {
		c := p.counts
		if p.result != nil {
			c = p.result.Counts
		}
		addCounts(t, c)
	}
	return t
}

// progress prints the progress line: in place on a terminal, or a plain
// line every cfg.Progress otherwise.
func (r *runner) progress(force bool) {
	if r.cfg.Quiet || r.start.IsZero() {
		return
	}
	if !force && time.Since(r.lastLine) < r.cfg.Progress {
		return
	}
	r.lastLine = time.Now()
	t := r.total()
	line := fmt.Sprintf("%5.1fs %-12s open %d/%d auth %d fail %d",
		time.Since(r.start).Seconds(), r.phase, t["open"], r.cfg.Sessions, t["authenticated"],
		t["connect_failed"]+t["auth_failed"]+t["setup_failed"])
	if r.cfg.chatting() || r.cfg.guild() {
		line += fmt.Sprintf(" | sent %d ack %d dlv %d", t["sent"], t["acked"], t["delivered"])
	}
	if r.cfg.guild() {
		line += fmt.Sprintf(" | guilds %d members %d", t["guilds_created"], t["guild_members_joined"])
	}
	if r.cfg.Scenario == "resume" {
		line += fmt.Sprintf(" | edits %d deletes %d dropped %d back %d caught up %d", t["edits_acked"], t["deletes_acked"], t["dropped"], t["resumed"], t["resume_catch_ups"])
	}
	if r.cfg.Scenario == "churn" {
		line += fmt.Sprintf(" | churn %d done %d", t["churn_started"], t["churn_completed"])
	}
	line += fmt.Sprintf(" | err %d unexp %d", t["errors"], t["unexpected_closes"])
	if s, ok := r.smp.last(); ok {
		line += fmt.Sprintf(" | server %s cpu %.0f%%", mib(s.RSS), s.CPUPercent)
	}
	if r.tty {
		fmt.Fprintf(r.out, "\r%s\x1b[K", line)
	} else {
		fmt.Fprintln(r.out, line)
	}
}

func (r *runner) clearLine() {
	if r.tty && !r.cfg.Quiet {
		fmt.Fprint(r.out, "\r\x1b[K")
	}
}

// finish merges the workers' results into r.res.
func (r *runner) finish() error {
	res := r.res
	hists := map[string]*hdr.Histogram{}
	res.Counts = map[string]int64{}
	res.Errors, res.ErrorReasons, res.Closes, res.UnexpectedCloses = map[string]int64{}, map[string]int64{}, map[string]int64{}, map[string]int64{}
	var problems []error
	var lostEvents *LostEvents // the workers' added up, each from its own t0
	res.Nodes = make([]NodeResult, len(r.cfg.nodes))
	gateways := r.cfg.gatewayURLs()
	for i, n := range r.cfg.nodes {
		res.Nodes[i] = NodeResult{Index: i + 1, Gateway: gateways[i], HTTP: n.HTTP}
	}
	for _, p := range r.procs {
		if p.result == nil {
			problems = append(problems, fmt.Errorf("worker %d ended without a result (%v)", p.index, p.exitErr))
			addCounts(res.Counts, p.counts)
			continue
		}
		if p.exitErr != nil {
			problems = append(problems, fmt.Errorf("worker %d: %w", p.index, p.exitErr))
		}
		rep := p.result
		addCounts(res.Counts, rep.Counts)
		addCounts(res.Errors, rep.Errors)
		addCounts(res.ErrorReasons, rep.Reasons)
		addCounts(res.Closes, rep.Closes)
		addCounts(res.UnexpectedCloses, rep.UnexpectedCloses)
		mergeNodes(res.Nodes, rep.Nodes)
		if rep.LostEvents != nil {
			if lostEvents == nil {
				lostEvents = &LostEvents{}
			}
			lostEvents.merge(rep.LostEvents)
		}
		if err := mergeHists(hists, rep.Hists); err != nil {
			problems = append(problems, fmt.Errorf("worker %d histograms: %w", p.index, err))
		}
		res.Harness.CPUSeconds += rep.CPUSeconds
		res.Harness.MaxRSSPerWorker = max(res.Harness.MaxRSSPerWorker, rep.MaxRSS)
		if rep.Error != "" {
			problems = append(problems, fmt.Errorf("worker %d: %s", p.index, rep.Error))
		}
	}
	res.Latency = map[string]Latency{}
	for name, h := range hists {
		if h.TotalCount() > 0 {
			res.Latency[name] = summarize(h)
		}
	}
	c := res.Counts
	res.UnexpectedTotal = c["unexpected_closes"]
	if r.watch != nil {
		r.watch.fill(res.Nodes)
		var surviving, away int64
		for _, n := range res.Nodes {
			if n.WentAway {
				away += n.UnexpectedCloses
			} else {
				surviving += n.UnexpectedCloses
			}
		}
		res.UnexpectedOnSurviving, res.UnexpectedOnLost = &surviving, &away
	}
	if r.cfg.chatting() {
		m := &MessagesResult{
			Sent: c["sent"], Acked: c["acked"], Delivered: c["delivered"], SendErrors: c["send_errors"],
			Duplicates: c["duplicates"], Skipped: c["skipped"],
		}
		m.Unacked = m.Sent - m.Acked - m.SendErrors
		m.CaughtUp = c["caught_up"]
		m.Undelivered = m.Acked - m.Delivered - m.CaughtUp - c["deleted_unseen"] - c["seen_by_edit"]
		m.SentCrossNode = c["sent_cross_node"]
		if d := r.phaseSeconds(); d > 0 {
			m.SentPerSecond = float64(m.Sent) / d
		}
		m.WarmupSent = c["warmup_sent"]
		res.Messages = m
		if r.cfg.ledger() {
			res.Reconnect = reconnectResult(c, res.Latency)
			if res.Reconnect.Missing != nil {
				res.Reconnect.LostEvents = lostEvents
			}
		}
		if r.cfg.Scenario == "resume" {
			res.Resume = resumeResult(r.cfg, c, res.Latency)
		}
	}
	if r.cfg.guild() {
		r.guildResult()
	}
	if rm := res.Rooms; rm != nil && rm.AtEnd != nil {
		if rm.AtStart != nil {
			n := int64(*rm.AtEnd - *rm.AtStart)
			rm.Activated = &n
		}
		if rm.AtMeasure != nil {
			n := int64(*rm.AtEnd - *rm.AtMeasure)
			rm.ActivatedMeasured = &n
		}
	}
	if f := res.First; f != nil {
		f.Sent, f.Acked, f.Delivered, f.SendErrors = c["first_sent"], c["first_acked"], c["first_delivered"], c["first_errors"]
		f.AllAcked = f.Acked == int64(f.Pairs)
		f.AllDelivered = f.Delivered == int64(f.Pairs)
		f.Ack, f.Delivery = res.Latency[hFirstAck], res.Latency[hFirstDelivery]
	}
	if r.cfg.Scenario == "churn" {
		ch := &ChurnResult{Started: c["churn_started"], Completed: c["churn_completed"], Cut: c["churn_cut"]}
		if d := r.phaseSeconds(); d > 0 {
			ch.StartedPerSecond = float64(ch.Started) / d
		}
		res.Churn = ch
	}
	r.serverFigures()
	return errors.Join(problems...)
}

// phaseSeconds is how long the main phase ran.
func (r *runner) phaseSeconds() float64 {
	if r.res.phaseStart.IsZero() || r.res.stopAt.IsZero() {
		return 0
	}
	return r.res.stopAt.Sub(r.res.phaseStart).Seconds()
}

func (r *runner) serverFigures() {
	samples, errs, lastErr := r.smp.all()
	s := &r.res.Server
	s.Source = r.smp.source
	s.Samples = samples
	s.SampleErrors = errs
	s.LastSampleError = lastErr
	if len(samples) == 0 {
		return
	}
	s.RSSStart = samples[0].RSS
	s.RSSEnd = samples[len(samples)-1].RSS
	var phase0, phase1 Sample // the main phase's first and last samples
	phaseFrom := r.res.phaseStart.Sub(r.start).Seconds()
	for _, x := range samples {
		s.RSSPeak = max(s.RSSPeak, x.RSS)
		s.CPUPeakPercent = max(s.CPUPeakPercent, x.CPUPercent)
		if !r.res.phaseStart.IsZero() && x.T >= phaseFrom && x.T <= s.steady.T {
			if phase0.T == 0 {
				phase0 = x
			}
			phase1 = x
		}
	}
	phaseT0, phaseCPU0, phaseT1, phaseCPU1 := phase0.T, phase0.CPUSeconds, phase1.T, phase1.CPUSeconds
	first, last := samples[0], samples[len(samples)-1]
	s.CPUSeconds = last.CPUSeconds - first.CPUSeconds
	if dt := last.T - first.T; dt > 0 {
		s.CPUAvgPercent = 100 * s.CPUSeconds / dt
	}
	// per 1,000 delivered: the deliveries between the same two samples
	var per1000 func(cpu float64) *float64
	if dt := phaseT1 - phaseT0; dt > 0 {
		s.PhaseCPUSeconds = phaseCPU1 - phaseCPU0
		s.PhaseSeconds = dt
		s.PhaseCPUPercent = 100 * s.PhaseCPUSeconds / dt
		if r.cfg.chatting() || r.cfg.guild() {
			s.PhaseDelivered = r.deliveredAt(r.sampleTime(phase1)) - r.deliveredAt(r.sampleTime(phase0))
		}
		per1000 = func(cpu float64) *float64 {
			if s.PhaseDelivered < 1 {
				return nil
			}
			v := 1000 * cpu / s.PhaseDelivered
			return &v
		}
		s.CPUPer1000 = per1000(s.PhaseCPUSeconds)
	}
	if r.smp.pg != nil {
		pg := &PostgresCPU{Processes: last.PGProcesses, CPUSeconds: last.PGCPUSeconds - first.PGCPUSeconds}
		if dt := last.T - first.T; dt > 0 {
			pg.CPUAvgPercent = 100 * pg.CPUSeconds / dt
		}
		if dt := phaseT1 - phaseT0; dt > 0 {
			pg.PhaseCPUSeconds = phase1.PGCPUSeconds - phase0.PGCPUSeconds
			pg.PhaseCPUPercent = 100 * pg.PhaseCPUSeconds / dt
			pg.CPUPer1000 = per1000(pg.PhaseCPUSeconds)
		}
		s.Postgres = pg
	}
	if s.steady.RSS > 0 {
		s.RSSSteady = s.steady.RSS
		if s.steadyOpen > 0 && r.cfg.Scenario != "churn" {
			s.SessionsAtSteady = s.steadyOpen
			s.RSSPerSession = s.steady.RSS / s.steadyOpen
			s.RSSPerSessionAboveStart = (s.steady.RSS - s.RSSStart) / s.steadyOpen
		}
	}
}

// sampleTime is when x was taken, in unix nanoseconds.
func (r *runner) sampleTime(x Sample) int64 {
	return r.start.Add(time.Duration(x.T * float64(time.Second))).UnixNano()
}

// deliveredAt is how many messages had been delivered at t, interpolated
// between each worker's reports (one a second).
func (r *runner) deliveredAt(t int64) float64 {
	var n float64
	for _, p := range r.procs {
		n += interpolate(p.delivered, t)
	}
	return n
}

// interpolate reads a count at t from its values at report times: none
// before the first report, the last one after it.
func interpolate(pts []countAt, t int64) float64 {
	slices.SortStableFunc(pts, func(a, b countAt) int { return cmp.Compare(a.at, b.at) })
	i, _ := slices.BinarySearchFunc(pts, t, func(x countAt, t int64) int { return cmp.Compare(x.at, t) })
	switch {
	case len(pts) == 0 || i == 0 && pts[0].at > t:
		return 0
	case i == len(pts):
		return float64(pts[len(pts)-1].n)
	case pts[i].at == t || i == 0:
		return float64(pts[i].n)
	}
	a, b := pts[i-1], pts[i]
	return float64(a.n) + float64(b.n-a.n)*float64(t-a.at)/float64(b.at-a.at)
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
