package load

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// IsWorker reports whether this process was started by a rewind-load
// parent as one of its workers.
func IsWorker() bool { return os.Getenv(workerEnv) == "1" }

// WorkerMain runs a worker: it reads its spec and commands from in and
// writes its reports to out. It returns the exit code.
func WorkerMain(in io.Reader, out, errOut io.Writer) int {
	// Ctrl-C on a terminal reaches the whole process group; the parent
	// decides, and tells the workers to stop over their input.
	signal.Ignore(os.Interrupt)
	dec := json.NewDecoder(bufio.NewReaderSize(in, 1<<16))
	var spec workerSpec
	if err := dec.Decode(&spec); err != nil {
		fmt.Fprintln(errOut, "rewind-load worker: reading the spec:", err)
		return 2
	}
	w := newWorker(spec, out)
	cmds := make(chan command, 4)
	go func() {
		for {
			var c command
			if err := dec.Decode(&c); err != nil {
				cmds <- command{Cmd: cmdStop} // the parent is gone or done
				return
			}
			cmds <- c
		}
	}()
	w.run(cmds)
	return 0
}

// worker runs its share of the sessions of a run.
type worker struct {
	spec       workerSpec
	urls       []string // the nodes' gateway URLs
	multi      bool     // two nodes or more: dm latencies also same-node and cross-node
	centrifugo bool     // --target centrifugo
	epoch      time.Time
	out        *reportWriter

	c          counters
	nodes      []nodeCounters // by node
	hists      map[string]*hist
	errs       tally // error frames by code
	reasons    tally // by "code reason"
	closes     tally // ended connections by close code
	unexpected tally // ... that the harness did not cause

	ctx      context.Context
	cancel   context.CancelFunc
	stopCh   chan struct{} // closed by stop
	doneCh   chan struct{} // closed when every session has ended
	stopOnce sync.Once
	wg       sync.WaitGroup // session goroutines
	sem      chan struct{}  // connect concurrency; nil: no cap
	wheel    *wheel
	dialers  []*ws.Dialer

	sessions []*session // the long-lived ones (not churn)
	churnMu  sync.Mutex
	churning map[*session]struct{}

	pending atomic.Int64 // sessions whose first connect attempt is not over
	readyCh chan struct{}

	down atomic.Int64 // sessions lost and not back yet
	// firstLoss is the first unexpected close of a session, in w.now()
	// nanoseconds (0: none yet); lostEvents the breakdown of the messages
	// found in history at the end (checkLedgers).
	firstLoss  atomic.Int64
	lostEvents *LostEvents
	stormMu    sync.Mutex
	stormTime  time.Time
	stormLeft  atomic.Int64

	senderDone chan struct{}
	// warmEnd is when the dm's warm-up ends, in w.now() nanoseconds: a
	// message stamped before it counts as sent during the warm-up.
	warmEnd  atomic.Int64
	warmDone chan struct{} // closed when the --warm-rooms messages are over

	// resume: when the drop was made and when the dropped sessions are to
	// come back, in w.now() nanoseconds (math.MaxInt64 until the drop);
	// the timer of the drop.
	dropNanos atomic.Int64
	backNanos atomic.Int64
	dropTimer *time.Timer

	// guild: the channel sends written by guild index (the sender's,
	// handed over when it ends).
	guildSentMu sync.Mutex
	guildSent   map[int]int64
}

func newWorker(spec workerSpec, out io.Writer) *worker {
	w := &worker{
		spec:       spec,
		urls:       spec.URLs,
		multi:      len(spec.URLs) > 1,
		nodes:      make([]nodeCounters, max(1, len(spec.URLs))),
		centrifugo: spec.Target == "centrifugo",
		epoch:      time.Now(),
		out:        &reportWriter{w: bufio.NewWriter(out)},
		hists:      make(map[string]*hist, len(histNames)),
		stopCh:     make(chan struct{}),
		doneCh:     make(chan struct{}),
		churning:   make(map[*session]struct{}),
		readyCh:    make(chan struct{}),
	}
	if len(w.urls) == 0 {
		w.urls = []string{""}
	}
	if spec.Epoch != 0 {
		// The run's common origin, read off the wall clock once; the
		// monotonic clock from here on.
		w.epoch = time.Now().Add(-time.Since(time.Unix(0, spec.Epoch)))
	}
	w.dropNanos.Store(math.MaxInt64)
	w.backNanos.Store(math.MaxInt64)
	for _, n := range histNames {
		w.hists[n] = newHist()
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	if spec.ConnectConcurrency > 0 {
		w.sem = make(chan struct{}, spec.ConnectConcurrency)
	}
	if len(spec.SourceIPs) == 0 {
		spec.SourceIPs = []string{""}
		w.spec.SourceIPs = spec.SourceIPs
	}
	for _, ip := range spec.SourceIPs {
		d := dialer(ip, spec.DialTimeout)
		w.dialers = append(w.dialers, &d)
	}
	w.wheel = newWheel(spec.Heartbeat)
	return w
}

// now is the time since the worker's epoch, in nanoseconds (monotonic):
// what dm stamps carry.
func (w *worker) now() int64 { return int64(time.Since(w.epoch)) }

func (w *worker) stopped() bool {
	select {
	case <-w.stopCh:
		return true
	default:
		return false
	}
}

// sleep waits d; false when the worker stopped meanwhile.
func (w *worker) sleep(d time.Duration) bool {
	if d <= 0 {
		return !w.stopped()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.stopCh:
		return false
	}
}

func (w *worker) countError(code int, reason string) {
	w.c.add(cErrors, 1)
	w.errs.add(strconv.Itoa(code))
	w.reasons.add(strconv.Itoa(code) + " " + reason)
}

// home is the node Accounts[i] starts on.
func (w *worker) home(i int) int {
	if i < len(w.spec.Homes) && w.spec.Homes[i] < len(w.urls) {
		return w.spec.Homes[i]
	}
	return 0
}

// newSession makes the session of Accounts[i] (global index index), on its
// home node.
func (w *worker) newSession(i, index int, churn bool) *session {
	s := &session{w: w, acct: &w.spec.Accounts[i], dial: w.dialerFor(index - w.spec.Offset), index: index, churn: churn, lostNode: -1}
	s.node.Store(int32(w.home(i)))
	return s
}

// dialerFor returns the dialer of global session index i: sessions take
// the source addresses in turn.
func (w *worker) dialerFor(i int) *ws.Dialer {
	return w.dialers[(w.spec.Offset+i)%len(w.dialers)]
}

func (w *worker) run(cmds <-chan command) {
	started := time.Now()
	// Heartbeats go on while the run drains and closes its sessions.
	go w.wheel.run(w.doneCh)
	go w.progress()
	deadline := time.Until(time.Unix(0, w.spec.Deadline))
	if w.spec.Deadline == 0 {
		deadline = time.Hour
	}
	hard := time.NewTimer(deadline)
	defer hard.Stop()

	if w.spec.Scenario == "churn" {
		w.emit(workerReport{Type: repReady, Started: started.UnixNano()})
		go w.churnLoop()
	} else {
		w.startSessions()
		go w.awaitReady(started)
	}
	for {
		select {
		case c := <-cmds:
			switch c.Cmd {
			case cmdDM:
				if w.senderDone == nil {
					if w.warmDone != nil {
						<-w.warmDone // the sender's state is its own from here on
					}
					at := time.Now()
					if c.At != 0 {
						at = time.Unix(0, c.At)
					}
					w.warmEnd.Store(int64(at.Sub(w.epoch) + w.spec.Warmup))
					w.senderDone = make(chan struct{})
					go w.sendLoop()
					if rs := w.spec.Resume; rs != nil {
						w.dropTimer = time.AfterFunc(time.Until(at.Add(rs.DropAt)), w.drop)
					}
				}
			case cmdWarm:
				if w.warmDone == nil && w.senderDone == nil {
					w.warmDone = make(chan struct{})
					go func() {
						defer close(w.warmDone)
						w.pairMessages(kindWarm, repWarmed)
					}()
				}
			case cmdFirst:
				go w.pairMessages(kindFirst, repFirstDone)
			case cmdStorm:
				w.storm()
			case cmdGuildCreate:
				go w.guildCreate()
			case cmdGuildJoin:
				go w.guildJoin(c.Guilds)
			default:
				w.stop()
				return
			}
		case <-hard.C:
			w.stop()
			return
		}
	}
}

// startSessions starts every long-lived session.
func (w *worker) startSessions() {
	n := len(w.spec.Accounts)
	w.sessions = make([]*session, n)
	for i := range n {
		w.sessions[i] = w.newSession(i, w.spec.Offset+i, false)
		w.sessions[i].nodeC().add(nSessions, 1)
	}
	for i := 0; i < w.spec.Pairs && 2*i+1 < n; i++ {
		a, b := w.sessions[2*i], w.sessions[2*i+1]
		a.peer, b.peer = b, a
		if w.spec.Ledger {
			a.ledger, b.ledger = newLedger(), newLedger()
		}
		if w.spec.Resume != nil {
			a.resume, b.resume = newResumeState(), newResumeState()
		}
	}
	if w.spec.Guild != nil {
		w.guildSessions()
	}
	w.pending.Store(int64(n))
	if n == 0 {
		close(w.readyCh)
	}
	done := func(bool) {
		if w.pending.Add(-1) == 0 {
			close(w.readyCh)
		}
	}
	w.wg.Add(n)
	for _, s := range w.sessions {
		go s.run(done)
	}
}

// awaitReady reports the end of the first connect phase: every session's
// first attempt is over, or spec.ConnectTimeout passed. Pairs that are not
// friends yet are befriended first.
func (w *worker) awaitReady(started time.Time) {
	t := time.NewTimer(w.spec.ConnectTimeout)
	defer t.Stop()
	select {
	case <-w.readyCh:
	case <-t.C:
	case <-w.stopCh:
		return
	}
	at := time.Now()
	if w.spec.Befriend {
		w.befriend()
	}
	w.emit(workerReport{Type: repReady, At: at.UnixNano(), Started: started.UnixNano(), Counts: w.c.snapshot()})
}

// befriend makes every connected pair friends over the gateway: a asks b,
// then b asks a, which accepts (protocol.md §2.5).
func (w *worker) befriend() {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := 0; i < w.spec.Pairs && 2*i+1 < len(w.sessions); i++ {
		a, b := w.sessions[2*i], w.sessions[2*i+1]
		if !a.authed.Load() || !b.authed.Load() {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if ask(a, b.acct.Name, "f1") && ask(b, a.acct.Name, "f2") {
				w.c.add(cBefriended, 1)
			}
		}()
	}
	wg.Wait()
}

// ask sends a friend request from s to name; "already friend" counts as
// done.
func ask(s *session, name, nonce string) bool {
	fb := newFrameBuf(128)
	fb.b = append(fb.b, `{"type":"mutual_users","payload":{"type":"request","name":`...)
	fb.b = strconv.AppendQuote(fb.b, name)
	fb.b = append(fb.b, `},"nonce":"`...)
	fb.b = append(fb.b, nonce...)
	fb.b = append(fb.b, `"}`...)
	p, err := s.call(fb.finish(ws.OpText), nonce, 30*time.Second)
	if err != nil {
		return false
	}
	switch frameType(p) {
	case "ok":
		return true
	case "error":
		_, reason := errorCode(p)
		return reason == "select named user is already friend."
	}
	return false
}

// sendLoop sends the dm messages at spec.Rate, the pairs' two directions in
// turn, open loop: a send that falls behind its schedule is made at once
// (and its lag recorded), never dropped. A send is skipped when its author
// is not connected (or, resume, is being dropped), and without a ledger or
// resume state also when its peer is not: with one, the peer catches up on
// what it missed once back.
func (w *worker) sendLoop() {
	defer close(w.senderDone)
	if w.spec.Guild != nil {
		w.guildSendLoop()
		return
	}
	var dirs []*session
	for i := 0; i < w.spec.Pairs && 2*i+1 < len(w.sessions); i++ {
		dirs = append(dirs, w.sessions[2*i], w.sessions[2*i+1])
	}
	if len(dirs) == 0 || w.spec.Rate <= 0 {
		return
	}
	w.paced(dirs, func(s *session, fb *frameBuf) bool {
		catchesUp := w.spec.Ledger || s.resume != nil
		return s.authed.Load() && (s.resume == nil || !s.resume.dropping.Load()) && (catchesUp || s.peer.authed.Load()) && s.send(fb, kindDM)
	})
}

// paced calls send for the senders in turn at spec.Rate in all until the
// worker stops, each call on its schedule (the lag behind it recorded),
// and counts a send that did not go out as skipped.
func (w *worker) paced(senders []*session, send func(*session, *frameBuf) bool) {
	fb := newFrameBuf(128 + w.spec.Size)
	lag := w.hists[hSendLag]
	start := time.Now()
	per := float64(time.Second) / w.spec.Rate
	var n int64
	k := 0
	for !w.stopped() {
		// Sends 0..due-1 are scheduled at or before now.
		due := int64(float64(time.Since(start))/per) + 1
		for n < due && !w.stopped() {
			sched := start.Add(time.Duration(float64(n) * per))
			n++
			s := senders[k]
			k = (k + 1) % len(senders)
			if !send(s, fb) {
				w.c.add(cSkipped, 1)
				continue
			}
			lag.record(time.Since(sched))
		}
		next := start.Add(time.Duration(float64(n) * per))
		w.sleep(max(time.Until(next), 200*time.Microsecond))
	}
}

// pairMessages sends one message of kind from the first side of every
// connected pair, all at once, then waits up to spec.Drain for their echoes
// and deliveries and reports rep.
func (w *worker) pairMessages(kind byte, rep string) {
	sent, acked, delivered, refused := cWarmSent, cWarmAcked, cWarmDelivered, cWarmErrors
	if kind == kindFirst {
		sent, acked, delivered, refused = cFirstSent, cFirstAcked, cFirstDelivered, cFirstErrors
	}
	fb := newFrameBuf(128 + w.spec.Size)
	for i := 0; i < w.spec.Pairs && 2*i+1 < len(w.sessions); i++ {
		a := w.sessions[2*i]
		if a.authed.Load() && a.peer.authed.Load() {
			a.send(fb, kind)
		}
	}
	for deadline := time.Now().Add(w.spec.Drain); time.Now().Before(deadline); {
		n, errs := w.c.get(sent), w.c.get(refused)
		if w.c.get(acked)+errs >= n && w.c.get(delivered)+errs >= n {
			break
		}
		if !w.sleep(5 * time.Millisecond) {
			return
		}
	}
	w.emit(workerReport{Type: rep, At: time.Now().UnixNano(), Counts: w.c.snapshot()})
}

// byPhase is the warm-up or the after-warm-up histogram of a dm message
// sent at nanos.
func (w *worker) byPhase(nanos int64, warm, after string) *hist {
	if nanos < w.warmEnd.Load() {
		return w.hists[warm]
	}
	return w.hists[after]
}

// acked counts the echo of a message of kind sent at nanos, between sides
// on different nodes when cross.
func (w *worker) acked(kind byte, cross bool, nanos int64) {
	d := time.Duration(w.now() - nanos)
	switch kind {
	case kindDM:
		w.c.add(cAcked, 1)
		w.hists[hAck].record(d)
		w.byPhase(nanos, hAckWarm, hAckAfter).record(d)
		if w.multi {
			if cross {
				w.hists[hAckCross].record(d)
			} else {
				w.hists[hAckSame].record(d)
			}
		}
	case kindWarm:
		w.c.add(cWarmAcked, 1)
	case kindFirst:
		w.c.add(cFirstAcked, 1)
		w.hists[hFirstAck].record(d)
	}
}

// refused counts an error answering a message of kind.
func (w *worker) refused(kind byte) {
	switch kind {
	case kindDM:
		w.c.add(cSendErrors, 1)
	case kindWarm:
		w.c.add(cWarmErrors, 1)
	case kindFirst:
		w.c.add(cFirstErrors, 1)
	}
}

// churnLoop starts churn sessions at spec.Churn per second: each connects,
// authenticates, stays spec.Hold and leaves with a normal close.
func (w *worker) churnLoop() {
	if w.spec.Churn <= 0 || len(w.spec.Accounts) == 0 {
		return
	}
	start := time.Now()
	per := float64(time.Second) / w.spec.Churn
	var n int64
	for !w.stopped() {
		due := int64(float64(time.Since(start))/per) + 1
		for ; n < due && !w.stopped(); n++ {
			i := int(n % int64(len(w.spec.Accounts)))
			s := w.newSession(i, w.spec.Offset+int(n), true)
			s.node.Store(int32(int(n) % len(w.urls))) // churn sessions take the nodes in turn
			w.churnMu.Lock()
			w.churning[s] = struct{}{}
			w.churnMu.Unlock()
			w.c.add(cChurnStarted, 1)
			w.wg.Add(1)
			go func() {
				s.run(nil)
				w.churnMu.Lock()
				delete(w.churning, s)
				w.churnMu.Unlock()
			}()
		}
		next := start.Add(time.Duration(float64(n) * per))
		w.sleep(max(time.Until(next), time.Millisecond))
	}
}

// storm closes every connected session at once; each reconnects at once.
func (w *worker) storm() {
	now := time.Now()
	w.stormMu.Lock()
	w.stormTime = now
	w.stormMu.Unlock()
	w.stormLeft.Store(1) // held until every close is out
	for _, s := range w.sessions {
		if s.authed.Load() {
			w.stormLeft.Add(1)
			if !s.closeWith(true) {
				w.stormLeft.Add(-1)
			}
		}
	}
	w.stormBack()
}

func (w *worker) stormAt() time.Time {
	w.stormMu.Lock()
	defer w.stormMu.Unlock()
	return w.stormTime
}

// stormBack counts a session back after a storm.
func (w *worker) stormBack() {
	if w.stormLeft.Add(-1) == 0 {
		w.emit(workerReport{Type: repStormed, At: time.Now().UnixNano(), Counts: w.c.snapshot()})
	}
}

// lost counts a session the server closed or lost.
func (w *worker) lost() {
	w.firstLoss.CompareAndSwap(0, max(1, w.now()))
	if w.down.Add(1) == 1 {
		w.emit(workerReport{Type: repLost, At: time.Now().UnixNano()})
	}
}

// back counts a lost session back.
func (w *worker) back() {
	if w.down.Add(-1) == 0 {
		w.emit(workerReport{Type: repRecovered, At: time.Now().UnixNano(), Counts: w.c.snapshot()})
	}
}

// stop ends the run: no more sends or churn; outstanding dm messages get
// spec.Drain to be acknowledged and delivered; with a ledger, the final
// check looks for those still unseen in history (finalCheckTime at most);
// every session is closed normally; the result is reported.
func (w *worker) stop() {
	w.stopOnce.Do(func() { close(w.stopCh) })
	w.cancel() // dials in flight are not needed any more
	if w.dropTimer != nil {
		w.dropTimer.Stop()
	}
	if w.senderDone != nil {
		<-w.senderDone
		deadline := time.Now().Add(w.spec.Drain)
		if w.spec.Guild != nil {
			w.guildDrain()
			deadline = time.Now()
		}
		for time.Now().Before(deadline) {
			sent, acked, errs, delivered := w.c.get(cSent), w.c.get(cAcked), w.c.get(cSendErrors), w.c.get(cDelivered)+w.c.get(cCaughtUp)
			if w.spec.Resume != nil {
				// Every send and edit answered, every change acknowledged
				// to a peer connected arrived there (deleted messages
				// need not: a catch-up leaves them out).
				edits := w.c.get(cEditsSent) + w.c.get(cDeletesSent)
				answered := w.c.get(cEditsAcked) + w.c.get(cDeletesAcked) + w.c.get(cEditErrors)
				if acked+errs >= sent && answered >= edits && w.resumeSettled() {
					break
				}
				time.Sleep(40 * time.Millisecond) // resumeSettled reads every view
			} else if acked+errs >= sent && delivered >= acked {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if w.spec.Ledger {
			// What is acknowledged and still unseen: in history, or not?
			w.checkHistory(finalCheckTime)
		}
		if w.spec.Resume != nil && w.spec.Resume.CheckViews > 0 {
			// Does each dropped session's view equal the chat's history?
			w.checkViews(finalCheckTime)
		}
	}
	// The sessions open on each node when the run ends, before they close.
	open := make([]int64, len(w.nodes))
	for i := range w.nodes {
		open[i] = w.nodes[i][nOpen].Load()
	}
	for _, s := range w.sessions {
		s.close()
	}
	w.churnMu.Lock()
	for s := range w.churning {
		s.close()
	}
	w.churnMu.Unlock()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	ended := true
	select {
	case <-done:
	case <-time.After(closeWait + 2*time.Second):
		for _, s := range w.sessions {
			s.abort()
		}
		w.churnMu.Lock()
		for s := range w.churning {
			s.abort()
		}
		w.churnMu.Unlock()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			ended = false
		}
	}
	// Every session goroutine is over: their own state can be read.
	switch {
	case !ended:
		if w.spec.Ledger {
			w.c.add(cLedgerUnchecked, 1)
		}
		if w.spec.Resume != nil {
			w.c.add(cResumeUnchecked, 1)
		}
	default:
		w.c.add(cStillDown, w.down.Load())
		if w.spec.Ledger {
			w.checkLedgers()
		}
		if w.spec.Resume != nil {
			w.checkResume()
		}
	}
	close(w.doneCh)
	r := w.result()
	for i := range r.Nodes {
		r.Nodes[i]["open"] = open[i]
	}
	w.emit(r)
}

func (w *worker) result() workerReport {
	r := workerReport{
		Type: repResult, At: time.Now().UnixNano(), Counts: w.c.snapshot(),
		Hists:  make(map[string]string, len(w.hists)),
		Errors: w.errs.snapshot(), Reasons: w.reasons.snapshot(),
		Closes: w.closes.snapshot(), UnexpectedCloses: w.unexpected.snapshot(),
		Nodes: make([]map[string]int64, len(w.nodes)),
	}
	for i := range w.nodes {
		r.Nodes[i] = w.nodes[i].snapshot()
	}
	for name, h := range w.hists {
		e, err := h.encode()
		if err != nil {
			r.Error = err.Error()
			continue
		}
		r.Hists[name] = e
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.CPUSeconds = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
	}
	r.MaxRSS = peakRSS()
	w.guildSentMu.Lock()
	r.GuildSent = w.guildSent
	w.guildSentMu.Unlock()
	r.LostEvents = w.lostEvents
	return r
}

// peakRSS is this process's VmHWM. (getrusage's ru_maxrss survives exec on
// Linux, so a worker would report its parent's size.)
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func tvSeconds(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// progress reports the counters every spec.Progress until the worker
// stops.
func (w *worker) progress() {
	t := time.NewTicker(w.spec.Progress)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.emit(workerReport{Type: repProgress, At: time.Now().UnixNano(), Counts: w.c.snapshot()})
		case <-w.stopCh:
			return
		}
	}
}

func (w *worker) emit(r workerReport) {
	r.Worker = w.spec.Index
	w.out.write(r)
}

// reportWriter writes one report a line.
type reportWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (o *reportWriter) write(r workerReport) {
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.w.Write(b)
	o.w.WriteByte('\n')
	o.w.Flush()
}

// wheel sends every session's heartbeats from one goroutine: a session is
// filed under the tick its next heartbeat is due at.
type wheel struct {
	interval time.Duration
	tick     time.Duration
	mu       sync.Mutex
	slots    [][]wheelEntry
	pos      int // the slot handled last
}

type wheelEntry struct {
	s   *session
	gen uint32
}

func newWheel(interval time.Duration) *wheel {
	tick := min(100*time.Millisecond, max(interval/20, time.Millisecond))
	return &wheel{interval: interval, tick: tick, slots: make([][]wheelEntry, int(interval/tick)+2)}
}

// add files connection gen of s for a heartbeat after d (rounded down to a
// tick, so never late).
func (wh *wheel) add(s *session, gen uint32, d time.Duration) {
	n := min(max(int(d/wh.tick), 1), len(wh.slots)-1)
	wh.mu.Lock()
	i := (wh.pos + n) % len(wh.slots)
	wh.slots[i] = append(wh.slots[i], wheelEntry{s, gen})
	wh.mu.Unlock()
}

func (wh *wheel) run(stop <-chan struct{}) {
	t := time.NewTicker(wh.tick)
	defer t.Stop()
	fb := newFrameBuf(64)
	start := time.Now()
	var done int64 // ticks handled
	var spare []wheelEntry
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		// Catch up on every tick that passed, should the goroutine run late.
		for now := int64(time.Since(start) / wh.tick); done < now; done++ {
			wh.mu.Lock()
			wh.pos = (wh.pos + 1) % len(wh.slots)
			batch := wh.slots[wh.pos]
			wh.slots[wh.pos] = spare[:0]
			wh.mu.Unlock()
			for _, e := range batch {
				if e.s.heartbeat(fb, e.gen) {
					wh.add(e.s, e.gen, wh.interval)
				}
			}
			clear(batch)
			spare = batch
		}
	}
}
