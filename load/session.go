package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// writeTimeout bounds one frame written to the server; a connection that
// cannot take a frame for that long is dropped.
const writeTimeout = 10 * time.Second

// closeWait is how long a session waits for the server to answer its close
// frame.
const closeWait = 5 * time.Second

var errStopped = errors.New("stopped")

// authError is the server refusing an auth: the session gives up.
type authError struct {
	code   int
	reason string
}

func (e *authError) Error() string { return fmt.Sprintf("auth refused: %d %s", e.code, e.reason) }

// session is one account's connection, reconnected as the scenario says.
// One goroutine runs it: it dials, heartbeats, authenticates and then reads
// every frame the server sends. Writes come from that goroutine (connect,
// control answers), the worker's heartbeat wheel and its dm sender, under
// mu.
type session struct {
	w      *worker
	acct   *Account
	dial   *ws.Dialer
	peer   *session // dm partner
	index  int      // global session index (centrifugo: its channel is u<index>)
	churn  bool     // a churn session: leaves after spec.Hold
	id     atomic.Int64
	authed atomic.Bool
	// node is the node of the current connection, or of the last one
	// (an index into the worker's urls).
	node atomic.Int32

	mu      sync.Mutex
	conn    net.Conn // the current connection; nil between connections
	gen     uint32   // counts connections; heartbeat entries of old ones are void
	hbCount int64
	closing bool // the harness closed the current connection
	storm   bool // ... to reconnect it at once (storm)
	// dropClose: ... to reconnect it after the resume scenario's down time
	dropClose bool
	// closeSent: a close frame went out on the current connection (ours,
	// or the answer to the server's); no data frame may follow it.
	closeSent bool
	// a request waiting for its answer (befriending over the gateway)
	callNonce string
	callCh    chan []byte
	// centrifugo: the last command id of the connection, and the publishes
	// waiting for their replies by id
	cmdID   uint32
	pending map[uint32]pendingSend

	// the sender goroutine's
	sendSeq uint64
	chatID  []byte
	// the session goroutine's
	lastSeq     uint64    // last delivered sequence number from the peer
	lostAt      time.Time // when the last connection ended, while it is not back
	lostCounted bool      // the loss is counted in the worker's losses
	stormed     bool      // the last connection was closed by a storm
	// lostNode is the node whose connection ended unexpectedly while the
	// session reconnects (-1: it is not reconnecting after a loss).
	lostNode int
	// firstAfter is the loss before the current connection while its
	// first live dm delivery is awaited (dm with a ledger).
	firstAfter time.Time
	ledger     *ledger // dm with --reconnect; nil otherwise
	// resume is the resume scenario's state of a paired session (resume.go).
	resume *resumeState
	// guild is the guild scenario's state of a member session (guild.go).
	guild *guildState
	// resuming: dropped by the resume scenario, the session comes back
	// after the down time (failed attempts are retried).
	resuming bool
	// churnSettled: the churn session authenticated or failed (rather than
	// being cut short by the end of the run).
	churnSettled bool
}

// run is the session's goroutine. first is called once, when the first
// connection attempt is over (ok: authenticated).
func (s *session) run(first func(ok bool)) {
	w := s.w
	defer w.wg.Done()
	reported := false
	report := func(ok bool) {
		if !reported {
			reported = true
			if first != nil {
				first(ok)
			}
		}
	}
	defer report(false)
	if s.churn {
		// A churn session the end of the run cut short, before it
		// authenticated or failed, is counted as cut.
		defer func() {
			if !s.churnSettled {
				w.c.add(cChurnCut, 1)
			}
		}()
	}
	attempt := 0
	for !w.stopped() {
		if s.lostNode >= 0 {
			s.node.Store(int32(reconnectNode(s.lostNode, s.index, max(attempt, 1), len(w.urls))))
		}
		r, t0, err := s.connect()
		if err != nil {
			s.churnSettled = !errors.Is(err, errStopped)
			var ae *authError
			if errors.Is(err, errStopped) || errors.As(err, &ae) || !w.spec.Reconnect && !s.reconnecting() {
				return
			}
			attempt++
			if !w.sleep(s.backoff(attempt)) {
				return
			}
			continue
		}
		attempt = 0
		s.resuming = false
		now := time.Now()
		w.hists[hConnect].record(now.Sub(t0))
		w.c.add(cAuthenticated, 1)
		w.c.add(cOpen, 1)
		nc := s.nodeC()
		nc.add(nAuthenticated, 1)
		nc.add(nOpen, 1)
		s.authed.Store(true)
		lostAt := s.lostAt
		if !s.lostAt.IsZero() {
			w.hists[hReauth].record(now.Sub(s.lostAt))
			s.lostAt = time.Time{}
		}
		if s.lostNode >= 0 {
			// Back after an unexpected close.
			w.c.add(cReconnected, 1)
			if int(s.node.Load()) != s.lostNode {
				w.c.add(cMoved, 1)
				nc.add(nMovedIn, 1)
			}
			s.lostNode = -1
			if l := s.ledger; l != nil {
				l.backNanos, l.caughtUpNanos = w.now(), 0
				l.reconnects++
				s.firstAfter = lostAt
				s.startCatchUp(lostAt)
			}
		}
		if s.resume != nil {
			s.resumeAuthed(t0, now)
		}
		if s.lostCounted {
			s.lostCounted = false
			w.back()
		}
		if s.stormed {
			s.stormed = false
			w.stormBack()
		}
		report(true)
		s.churnSettled = true
		var leave *time.Timer
		if s.churn {
			leave = time.AfterFunc(w.spec.Hold, s.close)
		}

		cerr := s.readLoop(r)

		if leave != nil {
			leave.Stop()
		}
		s.authed.Store(false)
		w.c.add(cOpen, -1)
		nc.add(nOpen, -1)
		if l := s.ledger; l != nil && l.catch != nil {
			w.c.add(cCatchUpFailed, 1) // cut by the connection's end
			l.catch = nil
		}
		s.changesFailed() // cut by the connection's end
		if s.resume != nil {
			s.resume.outstanding.Store(0) // what was not answered never will be
		}
		s.mu.Lock()
		expected, storm, drop := s.closing, s.storm, s.dropClose
		s.storm, s.dropClose = false, false
		s.conn.Close()
		s.conn = nil
		s.mu.Unlock()
		s.finalGiveUp() // cut by the connection's end (after conn is nil: see startFinal)
		s.viewGiveUp()
		w.closes.add(cerr.key())
		w.c.add(cCloses, 1)
		if !expected {
			w.c.add(cUnexpected, 1)
			nc.add(nUnexpected, 1)
			w.unexpected.add(cerr.key())
			if s.ledger != nil {
				s.ledger.lost()
				s.ledger.lostNanos = w.now()
			}
			if s.resume != nil {
				s.resume.down(w.now())
			}
			s.lostAt = time.Now()
			s.lostCounted = true
			w.lost()
		}
		switch {
		case s.churn:
			if expected {
				w.c.add(cChurnCompleted, 1)
				w.hists[hChurn].record(time.Since(t0))
			}
			return
		case storm && !w.stopped():
			s.lostAt = w.stormAt()
			s.stormed = true
			w.c.add(cReconnects, 1)
			continue
		case drop && !w.stopped():
			// Dropped (resume): back at the drop's time plus the down time.
			s.resuming = true
			if !w.sleep(time.Duration(w.backNanos.Load() - w.now())) {
				return
			}
			w.c.add(cReconnects, 1)
			continue
		case !expected && w.spec.Reconnect && !w.stopped():
			w.c.add(cReconnects, 1)
			s.lostNode = int(s.node.Load())
			attempt = 1
			if !w.sleep(s.backoff(attempt)) {
				return
			}
			continue
		}
		return
	}
}

// nodeC is the counters of the session's current node.
func (s *session) nodeC() *nodeCounters { return &s.w.nodes[s.node.Load()] }

// reconnecting reports whether the session is coming back from a loss or
// a storm, when failed attempts are retried whatever spec.Reconnect says.
func (s *session) reconnecting() bool { return !s.lostAt.IsZero() || s.resuming }

// backoff is the wait before attempt n (1, 2, …): full jitter over an
// exponential bound.
func (s *session) backoff(n int) time.Duration {
	b := s.w.spec.Backoff << min(n-1, 20)
	if b <= 0 || b > s.w.spec.BackoffMax {
		b = s.w.spec.BackoffMax
	}
	if b <= 0 {
		return 0
	}
	return rand.N(b)
}

// connect dials and authenticates: a first heartbeat {"count":0}, its
// answer, then auth with the account's token and its answer, as
// protocol.md §2.2 orders them. It returns when the dial began: after the
// wait for a connect slot, which is the harness's own queue.
func (s *session) connect() (*reader, time.Time, error) {
	w := s.w
	if w.sem != nil {
		select {
		case w.sem <- struct{}{}:
			defer func() { <-w.sem }()
		case <-w.stopCh:
			return nil, time.Time{}, errStopped
		}
	}
	t0 := time.Now()
	r, err := s.handshake()
	return r, t0, err
}

func (s *session) handshake() (*reader, error) {
	w := s.w
	ctx, cancel := context.WithTimeout(w.ctx, w.spec.DialTimeout)
	defer cancel()
	conn, br, _, err := s.dial.Dial(ctx, w.urls[s.node.Load()])
	if err != nil {
		if w.stopped() {
			return nil, errStopped
		}
		w.c.add(cConnectFailed, 1)
		s.nodeC().add(nConnectFailed, 1)
		w.closes.add("dial_failed")
		return nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, 512)
	}
	r := &reader{br: br, control: s.control}
	s.mu.Lock()
	s.conn = conn
	s.gen++
	gen := s.gen
	s.hbCount = 0
	s.closing = false
	s.storm = false
	s.closeSent = false
	s.cmdID = 0
	clear(s.pending)
	s.mu.Unlock()
	fail := func(err error) (*reader, error) {
		var ce *closeError
		if errors.As(err, &ce) {
			w.closes.add(ce.key())
		}
		s.mu.Lock()
		s.conn.Close()
		s.conn = nil
		s.mu.Unlock()
		if w.stopped() {
			return nil, errStopped
		}
		var ae *authError
		if errors.As(err, &ae) {
			w.c.add(cAuthFailed, 1)
		} else {
			w.c.add(cSetupFailed, 1)
		}
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(w.spec.DialTimeout))
	fb := getFrameBuf()
	defer putFrameBuf(fb)
	if w.centrifugo {
		if err := s.centSetup(r, fb); err != nil {
			return fail(err)
		}
		_ = conn.SetReadDeadline(time.Time{})
		return r, nil
	}
	fb.reset()
	fb.b = append(fb.b, `{"type":"heartbeat","payload":{"count":0}}`...)
	if err := s.write(fb.finish(ws.OpText), 0); err != nil {
		return fail(err)
	}
	// The next heartbeats are due an interval after this one, whether or
	// not auth has been answered by then.
	w.wheel.add(s, gen, w.spec.Heartbeat)
	if err := s.await(r, "heartbeat"); err != nil {
		return fail(err)
	}
	fb.reset()
	fb.b = append(fb.b, `{"type":"auth","payload":{"auth":`...)
	fb.b = strconv.AppendQuote(fb.b, s.acct.Token)
	fb.b = append(fb.b, `}}`...)
	if err := s.write(fb.finish(ws.OpText), 0); err != nil {
		return fail(err)
	}
	if err := s.await(r, "auth"); err != nil {
		if ae := (*authError)(nil); errors.As(err, &ae) {
			s.close()
			_ = s.readLoop(r) // the server's answer to the close
		}
		return fail(err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return r, nil
}

// await reads until a frame of type typ; an error frame fails it.
func (s *session) await(r *reader, typ string) error {
	for {
		op, p, err := r.next()
		if err != nil {
			return err
		}
		if op != ws.OpText {
			continue
		}
		switch frameType(p) {
		case typ:
			switch typ {
			case "heartbeat":
				s.w.c.add(cHeartbeatsAnswered, 1)
			case "auth":
				if id, ok := selfID(p); ok {
					s.id.Store(id)
				}
				if s.resume != nil {
					s.resume.authFrame = append(s.resume.authFrame[:0], p...)
				}
			}
			return nil
		case "error":
			code, reason := errorCode(p)
			s.w.countError(code, reason)
			if typ == "auth" && code != 5000 && code != 4029 {
				return &authError{code, reason} // a refused token: no retry
			}
			return fmt.Errorf("%s answered %d %s", typ, code, reason)
		default:
			s.handle(p)
		}
	}
}

// readLoop reads until the connection ends and says how it ended.
func (s *session) readLoop(r *reader) *closeError {
	for {
		op, p, err := r.next()
		if err != nil {
			var ce *closeError
			if errors.As(err, &ce) {
				return ce
			}
			return &closeError{Code: 1006, Err: err}
		}
		if op == ws.OpText {
			if s.w.centrifugo {
				eachLine(p, s.centHandle)
			} else {
				s.handle(p)
			}
		}
	}
}

// handle takes one frame of an authenticated session.
func (s *session) handle(p []byte) {
	w := s.w
	switch frameType(p) {
	case "heartbeat":
		w.c.add(cHeartbeatsAnswered, 1)
	case "chat":
		if s.guild != nil {
			s.guildChat(p)
			return
		}
		if nonce, ok := frameNonce(p); ok {
			switch {
			case isChanges(nonce):
				s.changesItem(p)
				return
			case isEdit(nonce):
				s.editEcho(p)
				return
			case isView(nonce):
				s.viewItem(p)
				return
			}
			if isHistory(nonce) {
				s.historyItem(p)
				return
			}
			if isFinal(nonce) {
				s.finalItem(p)
				return
			}
			if kind, cross, seq, nanos, ok := parseKindStamp(nonce); ok {
				var id int64
				if s.ledger != nil && kind == kindDM {
					id, _, _ = chatIDs(p)
				}
				s.acked(kind, cross, nanos, id)
				if s.resume != nil {
					s.resumeEcho(p, kind, seq)
				}
			}
			return
		}
		if s.resume != nil && bytes.HasPrefix(p, chatEditKind) {
			s.resumeLive(p, false)
			return
		}
		if !bytes.HasPrefix(p, chatSendKind) {
			return
		}
		if content, ok := stringAfter(p, len(chatSendKind), contentPrefix); ok {
			if s.resume != nil && !s.resumeLive(p, true) {
				return // seen before (in a catch-up): a duplicate
			}
			var id int64
			if s.ledger != nil {
				id, _, _ = chatIDs(p)
			}
			s.delivered(content, id)
		}
	case "load":
		nonce, ok := frameNonce(p)
		switch {
		case !ok:
		case isHistory(nonce):
			s.historyEnd(p)
		case isFinal(nonce):
			s.finalEnd(p)
		case isChanges(nonce):
			s.changesEnd(p)
		case isView(nonce):
			s.viewEnd(p)
		}
	case "error":
		code, reason := errorCode(p)
		w.countError(code, reason)
		nonce, ok := frameNonce(p)
		if !ok {
			return
		}
		if isHistory(nonce) {
			s.historyError()
			return
		}
		if isFinal(nonce) {
			s.finalGiveUp() // refused
			return
		}
		switch {
		case isChanges(nonce):
			s.changesFailed() // refused
			return
		case isEdit(nonce):
			s.editError()
			return
		case isView(nonce):
			s.viewGiveUp() // refused
			return
		}
		if kind, _, _, _, ok := parseKindStamp(nonce); ok {
			w.refused(kind)
			if s.resume != nil {
				s.resume.outstanding.Add(-1)
			}
			return
		}
		s.answer(nonce, p)
	case "ok", "guild":
		// guild: the answer to a request (nonce), or an event (none)
		if nonce, ok := frameNonce(p); ok {
			s.answer(nonce, p)
		}
	}
}

// acked counts the echo of a message of kind sent at nanos; id is its
// message id for the ledger (0: none kept).
func (s *session) acked(kind byte, cross bool, nanos int64, id int64) {
	s.w.acked(kind, cross, nanos)
	if kind == kindDM {
		s.nodeC().add(nAcked, 1)
		if s.ledger != nil {
			s.ledger.ack(id)
		}
	}
}

// delivered counts a message received by this session from the content
// (stamp first) of its event; id is its message id for the ledger (0:
// none kept).
func (s *session) delivered(content []byte, id int64) {
	w := s.w
	kind, cross, seq, nanos, ok := parseKindStamp(content)
	if !ok {
		return
	}
	d := time.Duration(w.now() - nanos)
	switch kind {
	case kindDM:
		if l := s.ledger; l != nil {
			switch l.live(id) {
			case seenLive:
				w.c.add(cDuplicates, 1)
				return
			case seenCaughtUp:
				w.c.add(cCatchUpOverlap, 1) // counted when caught up
				return
			}
			if !s.firstAfter.IsZero() {
				w.hists[hReconnectFirst].record(time.Since(s.firstAfter))
				s.firstAfter = time.Time{}
			}
		}
		w.c.add(cDelivered, 1)
		s.nodeC().add(nDelivered, 1)
		w.hists[hDelivery].record(d)
		w.byPhase(nanos, hDeliveryWarm, hDeliveryAfter).record(d)
		if w.spec.Resume != nil {
			w.byDrop(nanos).record(d)
		}
		if w.multi {
			if cross {
				w.hists[hDeliveryCross].record(d)
				w.byPhase(nanos, hDeliveryCrossWarm, hDeliveryCrossAfter).record(d)
			} else {
				w.hists[hDeliverySame].record(d)
				w.byPhase(nanos, hDeliverySameWarm, hDeliverySameAfter).record(d)
			}
		}
		if seq <= s.lastSeq {
			w.c.add(cDuplicates, 1)
		} else {
			s.lastSeq = seq
		}
	case kindWarm:
		w.c.add(cWarmDelivered, 1)
	case kindFirst:
		w.c.add(cFirstDelivered, 1)
		w.hists[hFirstDelivery].record(d)
	}
}

// answer hands p to a call waiting for nonce.
func (s *session) answer(nonce, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.callCh != nil && s.callNonce == string(nonce) {
		s.callCh <- bytes.Clone(p)
		s.callCh = nil
	}
}

// call sends a request with nonce and waits for its answer.
func (s *session) call(frame []byte, nonce string, timeout time.Duration) ([]byte, error) {
	ch := make(chan []byte, 1)
	s.mu.Lock()
	s.callNonce, s.callCh = nonce, ch
	s.mu.Unlock()
	if err := s.write(frame, 0); err != nil {
		return nil, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case p := <-ch:
		return p, nil
	case <-t.C:
		return nil, errors.New("no answer")
	case <-s.w.stopCh:
		return nil, errStopped
	}
}

// write sends one finished frame on the current connection when it is
// still connection gen (0: whichever is current). A failed write closes the
// connection, which ends its read loop.
func (s *session) write(frame []byte, gen uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeLocked(frame, gen)
}

var errGone = errors.New("connection gone")

func (s *session) writeLocked(frame []byte, gen uint32) error {
	if s.closeSent || gen != 0 && gen != s.gen {
		return errGone
	}
	return s.rawWriteLocked(frame)
}

// rawWriteLocked writes frame, whatever the state of the connection.
func (s *session) rawWriteLocked(frame []byte) error {
	if s.conn == nil {
		return errGone
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := s.conn.Write(frame); err != nil {
		s.conn.Close()
		return err
	}
	return nil
}

// control answers the server's ping and close frames.
func (s *session) control(op ws.OpCode, payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil || s.closeSent {
		return // the server answered our close, or it is gone
	}
	fb := getFrameBuf()
	defer putFrameBuf(fb)
	fb.reset()
	if op == ws.OpClose && len(payload) >= 2 {
		payload = payload[:2] // echo the code
	}
	fb.b = append(fb.b, payload...)
	_ = s.rawWriteLocked(fb.finish(op))
	if op == ws.OpClose {
		s.closeSent = true
		_ = s.conn.SetReadDeadline(time.Now().Add(closeWait))
	}
}

// close starts a normal close of the current connection: a close frame
// 1000; the read loop ends when the server answers it (or closeWait later).
func (s *session) close() { s.closeWith(false) }

func (s *session) closeWith(storm bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil || s.closeSent {
		return false
	}
	s.closing, s.storm, s.closeSent = true, storm, true
	fb := getFrameBuf()
	defer putFrameBuf(fb)
	fb.reset()
	fb.b = append(fb.b, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")...)
	_ = s.rawWriteLocked(fb.finish(ws.OpClose))
	_ = s.conn.SetReadDeadline(time.Now().Add(closeWait))
	return true
}

// abort closes the current connection at once.
func (s *session) abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.closing = true
		s.conn.Close()
	}
}

// heartbeat sends the next heartbeat of connection gen; false when that
// connection is gone.
func (s *session) heartbeat(fb *frameBuf, gen uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil || s.gen != gen || s.closeSent {
		return false
	}
	s.hbCount++
	fb.reset()
	fb.b = append(fb.b, `{"type":"heartbeat","payload":{"count":`...)
	fb.b = strconv.AppendInt(fb.b, s.hbCount, 10)
	fb.b = append(fb.b, `}}`...)
	if s.writeLocked(fb.finish(ws.OpText), gen) != nil {
		return false
	}
	s.w.c.add(cHeartbeatsSent, 1)
	return true
}

// send writes a message of kind to the peer; false when it was not sent.
// A dm message takes the next sequence number; the others are not
// sequenced (seq 0).
func (s *session) send(fb *frameBuf, kind byte) bool {
	w := s.w
	if s.chatID == nil {
		if w.centrifugo {
			s.chatID = strconv.AppendInt(nil, int64(s.index/2), 10) // the pair's
		} else {
			a, b := s.id.Load(), s.peer.id.Load()
			if a == 0 || b == 0 {
				return false
			}
			s.chatID = strconv.AppendInt(nil, a^b, 10)
		}
	}
	var seq uint64
	if kind == kindDM {
		seq = s.sendSeq + 1
	}
	// Where the two sides are now: the peer's node is that of its current
	// connection, or of its last one while it reconnects.
	node := s.node.Load()
	cross := node != s.peer.node.Load()
	nanos := w.now()
	if w.centrifugo {
		if !s.centPublish(fb, kind, seq, nanos) {
			return false
		}
	} else {
		fb.reset()
		fb.b = append(fb.b, `{"type":"chat","payload":{"type":"send","chat_id":"`...)
		fb.b = append(fb.b, s.chatID...)
		fb.b = append(fb.b, `","content":"`...)
		start := len(fb.b)
		fb.b = appendKindStamp(fb.b, kind, cross, seq, nanos)
		stamp := len(fb.b) - start
		fb.b = appendPadding(fb.b, stamp, w.spec.Size)
		fb.b = append(fb.b, `"},"nonce":"`...)
		fb.b = append(fb.b, fb.b[start:start+stamp]...)
		fb.b = append(fb.b, `"}`...)
		if s.resume != nil {
			s.resume.outstanding.Add(1) // before the write: the echo may come before it returns
		}
		if s.write(fb.finish(ws.OpText), 0) != nil {
			if s.resume != nil {
				s.resume.outstanding.Add(-1)
			}
			return false
		}
	}
	switch kind {
	case kindDM:
		s.sendSeq = seq
		w.c.add(cSent, 1)
		w.nodes[node].add(nSent, 1)
		if cross {
			w.c.add(cSentCross, 1)
		}
		if nanos < w.warmEnd.Load() {
			w.c.add(cWarmupSent, 1)
		}
	case kindWarm:
		w.c.add(cWarmSent, 1)
	case kindFirst:
		w.c.add(cFirstSent, 1)
	}
	return true
}

// appendPadding pads content of n bytes to size with x.
func appendPadding(dst []byte, n, size int) []byte {
	for ; n < size; n++ {
		dst = append(dst, 'x')
	}
	return dst
}

var frameBufs = sync.Pool{New: func() any { return newFrameBuf(256) }}

func getFrameBuf() *frameBuf  { return frameBufs.Get().(*frameBuf) }
func putFrameBuf(f *frameBuf) { frameBufs.Put(f) }

// pendingSend is a centrifugo publish waiting for its reply.
type pendingSend struct {
	kind  byte
	nanos int64
}

// centSetup connects and subscribes the session to its own channel,
// u<index>: what the heartbeat and auth exchange are to REWIND.
func (s *session) centSetup(r *reader, fb *frameBuf) error {
	var chb [24]byte
	channel := centChannel(chb[:0], s.index)
	for _, connect := range []bool{true, false} {
		s.mu.Lock()
		s.cmdID++
		id := s.cmdID
		fb.reset()
		if connect {
			fb.b = appendCentConnect(fb.b, id)
		} else {
			fb.b = appendCentSubscribe(fb.b, id, channel)
		}
		err := s.writeLocked(fb.finish(ws.OpText), 0)
		s.mu.Unlock()
		if err != nil {
			return err
		}
		if err := s.centAwait(r, id, connect); err != nil {
			return err
		}
	}
	return nil
}

// centAwait reads until the reply to command id; other messages are taken
// as usual. A refused connect is an authError: the session gives up.
func (s *session) centAwait(r *reader, id uint32, connect bool) error {
	for {
		op, p, err := r.next()
		if err != nil {
			return err
		}
		if op != ws.OpText {
			continue
		}
		var got *centMsg
		eachLine(p, func(line []byte) {
			m := parseCent(line)
			if got == nil && m.kind == centReply && m.id == id {
				got = &m
				return
			}
			s.centTake(m)
		})
		if got == nil {
			continue
		}
		if got.errCode == 0 {
			return nil
		}
		s.w.countError(got.errCode, got.errMsg)
		if connect {
			return &authError{got.errCode, got.errMsg}
		}
		return fmt.Errorf("subscribe answered %d %s", got.errCode, got.errMsg)
	}
}

// centHandle takes one line of a centrifugo frame.
func (s *session) centHandle(line []byte) { s.centTake(parseCent(line)) }

func (s *session) centTake(m centMsg) {
	w := s.w
	switch m.kind {
	case centPing:
		fb := getFrameBuf()
		fb.reset()
		fb.b = append(fb.b, centPong...)
		if s.write(fb.finish(ws.OpText), 0) == nil {
			w.c.add(cPings, 1)
		}
		putFrameBuf(fb)
	case centReply:
		s.mu.Lock()
		p, ok := s.pending[m.id]
		delete(s.pending, m.id)
		s.mu.Unlock()
		if m.errCode != 0 {
			w.countError(m.errCode, m.errMsg)
			if ok {
				w.refused(p.kind)
			}
			return
		}
		if ok {
			s.acked(p.kind, false, p.nanos, 0)
		}
	case centPush:
		if m.content != nil {
			s.delivered(m.content, 0)
		}
	}
}

// centPublish writes a publish of the chat send payload to the peer's
// channel; its reply is the message's ack, the peer's push its delivery.
func (s *session) centPublish(fb *frameBuf, kind byte, seq uint64, nanos int64) bool {
	w := s.w
	var chb [24]byte
	channel := centChannel(chb[:0], s.peer.index)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil || s.closeSent {
		return false
	}
	s.cmdID++
	id := s.cmdID
	fb.reset()
	fb.b = appendCentPublishHead(fb.b, id, channel, s.chatID)
	start := len(fb.b)
	fb.b = appendKindStamp(fb.b, kind, false, seq, nanos)
	fb.b = appendPadding(fb.b, len(fb.b)-start, w.spec.Size)
	fb.b = append(fb.b, centPublishTail...)
	if s.pending == nil {
		s.pending = make(map[uint32]pendingSend)
	}
	// Registered before the write: the reply may come before Write returns.
	s.pending[id] = pendingSend{kind: kind, nanos: nanos}
	if s.writeLocked(fb.finish(ws.OpText), 0) != nil {
		delete(s.pending, id)
		return false
	}
	return true
}
