package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Conn is one connection's outbound side. All its methods are safe for
// concurrent use and never block on the socket.
type Conn struct {
	h      *Handler
	nc     net.Conn
	rc     syscall.RawConn // nc's descriptor when the poller watches it, else nil
	poll   *poller         // set with rc
	id     uint64          // the key in Handler.conns and in poller events
	peer   Peer
	opened time.Time
	br     *bufio.Reader // the hijacked reader, until its buffered bytes are read

	// The read and write loops, bound once: a go statement on a bound
	// method value allocates nothing.
	readFn, writeFn func()

	// reading is set while a goroutine owns the read side (the pooled
	// reader it holds, and in). Only the one that sets it from false starts
	// a reader (kick); the reader clears it to park.
	reading  atomic.Bool
	closing  atomic.Bool // set with mu held: Send fails, reads are discarded
	dropping atomic.Bool // Abort: the queued frames are not written
	version  uint8

	mu          sync.Mutex // guards the fields below
	queue       queue      // text frames for the writer, at most SendQueue and SendBytes
	dropped     int        // queued frames never written (Abort, a slow client, the end)
	writer      writerState
	pongPending bool
	closeFrame  bool // the writer owes a close frame with closeCode and closeReason
	closeCode   uint16
	closeReason string
	pong        []byte        // the payload of the last ping, nil before any
	writerExit  chan struct{} // closed when the running writer stops; made by teardown
	end         *Disconnect   // the first cause that ended the connection

	in  int // frames read; owned by the read side
	out int // frames written; owned by the running writer
}

// writerState says whether a goroutine writes for the connection.
type writerState uint8

const (
	writerIdle    writerState = iota // nothing to write: no goroutine
	writerRunning                    // a goroutine writes until the queue is empty
	writerDone                       // the close frame went out, or a write failed
)

func newConn(h *Handler, nc net.Conn, version int) *Conn {
	c := &Conn{h: h, nc: nc, version: uint8(version), opened: time.Now()}
	c.readFn, c.writeFn = c.read, c.write
	c.reading.Store(true) // the serving goroutine's until it parks or reads
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.rc = rc
		}
	}
	return c
}

// Send queues one text frame. It returns false when the queue is full
// (SendQueue frames, or SendBytes bytes: a frame larger than SendBytes only
// goes into an empty queue) or the connection is closing; the caller decides
// what overflow means (the session aborts with 4009). frame is not copied,
// so it must not be modified afterwards: one encoded broadcast is shared by
// many connections.
func (c *Conn) Send(frame []byte) bool {
	c.mu.Lock()
	if c.closing.Load() || c.queue.len() >= c.h.cfg.SendQueue ||
		c.queue.len() > 0 && int(c.queue.bytes)+len(frame) > c.h.cfg.SendBytes {
		c.mu.Unlock()
		return false
	}
	c.queue.push(frame)
	start := c.startWriter()
	c.mu.Unlock()
	if start {
		go c.writeFn()
	}
	return true
}

// SendAll queues the frames of one answer together: all or none. An
// answer is bounded by its request (a history or catch-up page), not by
// SendQueue: its frames count against SendBytes only, so a 500-frame
// page fits a 256-frame queue, and it goes into an empty queue whatever
// its size. It returns false, queueing nothing, when the bytes already
// queued and the answer's pass SendBytes, or the connection is closing.
func (c *Conn) SendAll(frames [][]byte) bool {
	size := 0
	for _, f := range frames {
		size += len(f)
	}
	c.mu.Lock()
	if c.closing.Load() || c.queue.len() > 0 && int(c.queue.bytes)+size > c.h.cfg.SendBytes {
		c.mu.Unlock()
		return false
	}
	for _, f := range frames {
		c.queue.push(f)
	}
	start := len(frames) > 0 && c.startWriter()
	c.mu.Unlock()
	if start {
		go c.writeFn()
	}
	return true
}

// startWriter marks the writer running and reports whether the caller has
// to start it. Lock must be held.
func (c *Conn) startWriter() bool {
	if c.writer != writerIdle {
		return false
	}
	c.writer = writerRunning
	return true
}

// stopWriter records that the running writer stops, as idle or done. Lock
// must be held.
func (c *Conn) stopWriter(s writerState) {
	c.writer = s
	if c.writerExit != nil {
		close(c.writerExit)
		c.writerExit = nil
	}
}

// Close writes the frames already queued (each bounded by WriteTimeout),
// then a close frame with code and reason, then closes the socket once the
// client answers or after a few seconds. Only the first Close or Abort
// counts; Sends after it fail.
func (c *Conn) Close(code uint16, reason string) {
	c.closeWith(code, reason, CauseServerClose, false)
}

// Abort is Close without writing the queued frames first: for a client too
// slow to keep up (4009).
func (c *Conn) Abort(code uint16, reason string) {
	c.closeWith(code, reason, CauseServerClose, true)
}

// RemoteAddr returns the client's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Authenticated tells the Handler that the connection has authenticated: it
// no longer counts against MaxUnauthenticatedPerIP. Later calls do nothing.
func (c *Conn) Authenticated() { c.h.authenticated(c) }

func (c *Conn) closeWith(code uint16, reason string, cause Cause, drop bool) {
	c.requestClose(code, reason, &Disconnect{Cause: cause, Code: code, Reason: reason}, drop)
}

// requestClose asks the writer for a close frame, recording d as the cause,
// unless the connection is closing already.
func (c *Conn) requestClose(code uint16, reason string, d *Disconnect, drop bool) {
	c.mu.Lock()
	if c.closing.Load() {
		c.mu.Unlock()
		return
	}
	c.dropping.Store(drop)
	c.closing.Store(true)
	c.closeFrame, c.closeCode, c.closeReason = true, code, reason
	if c.end == nil {
		c.end = d
	}
	start := c.startWriter()
	c.mu.Unlock()
	if start {
		go c.writeFn()
	}
}

// ended records d as the cause unless one is recorded already.
func (c *Conn) ended(d *Disconnect) {
	c.mu.Lock()
	if c.end == nil {
		c.end = d
	}
	c.mu.Unlock()
}

// The read side. A polled connection has no goroutine while it idles: the
// poller kicks one when the socket becomes readable, and it reads, with
// pooled buffers, until it has handed over the last complete message
// buffered, then gives the buffers back and parks the socket with the
// poller again. A message that is not complete yet keeps it reading. Once
// the connection is closing it reads on until the end, then tears the
// connection down. A connection the poller cannot watch is read by the
// goroutine that served it, from start to end.

// reader is the read side's buffers, pooled between bursts of reading.
type reader struct {
	br    *bufio.Reader
	hdr   [ws.MaxHeaderSize - 2]byte
	ctl   [ws.MaxControlFramePayloadSize]byte
	skip  [skipBufSize]byte // a text message past MaxFrame passes through it
	c     *Conn
	err   error
	armFn func(fd uintptr) // arm, bound once
}

// readBufSize is the read buffer of a connection while it reads. The
// buffered bytes are never handed to the Peer: a message is its own
// allocation.
const readBufSize = 4 << 10

// skipBufSize is the piece in which a text message past MaxFrame is
// unmasked and checked as UTF-8 before it is dropped.
const skipBufSize = 512

var readers = sync.Pool{New: func() any {
	r := &reader{br: bufio.NewReaderSize(nil, readBufSize)}
	r.armFn = r.arm
	return r
}}

// arm re-arms the poller for the socket fd (RawConn.Control holds it).
func (r *reader) arm(fd uintptr) {
	r.err = r.c.poll.ctl(pollArm, fd, r.c.id)
}

// kick starts a reader unless a goroutine owns the read side.
func (c *Conn) kick() {
	if c.reading.CompareAndSwap(false, true) {
		go c.readFn()
	}
}

// read runs the read side from a kick: the socket has bytes to read.
func (c *Conn) read() { c.readFrom(false) }

// readFrom runs the read side until it parks or the connection ends; idle
// means it may park before reading anything. The caller owns the read side.
func (c *Conn) readFrom(idle bool) {
	r := readers.Get().(*reader)
	r.c = c
	if c.br != nil {
		r.br, c.br = c.br, nil // its bytes come first
	} else {
		r.br.Reset(c.nc)
	}
	for c.readLoop(r, idle) {
		if c.park(r) {
			c.release(r)
			return
		}
		idle = false
	}
	c.release(r)
	c.teardown()
}

func (c *Conn) release(r *reader) {
	r.br.Reset(nil)
	r.c = nil
	readers.Put(r)
}

// park gives the read side back to the poller, r's buffer being empty. It
// reports false when this goroutine must read on instead: the socket is
// closed (a failed write closes it) or the connection is closing, and no
// kick has started another reader for it meanwhile.
func (c *Conn) park(r *reader) bool {
	c.reading.Store(false)
	err := c.rc.Control(r.armFn)
	if err == nil {
		err = r.err
	}
	if err == nil && !c.closing.Load() {
		return true
	}
	return !c.reading.CompareAndSwap(false, true)
}

// teardown ends the connection once its read side has: it lets the writer
// finish a close frame, but not forever (the client may have stopped
// reading), closes the socket, and tells the Peer and the Handler.
func (c *Conn) teardown() {
	c.mu.Lock()
	c.closing.Store(true)
	var exited chan struct{}
	if c.writer == writerRunning {
		exited = make(chan struct{})
		c.writerExit = exited
	}
	owed := c.closeFrame
	c.mu.Unlock()
	if exited != nil && owed {
		t := time.NewTimer(c.h.closeWait)
		select {
		case <-exited:
		case <-t.C:
		}
		t.Stop()
	}
	// Before the socket closes: a client that sees it closed may connect
	// again at once, and must not find itself still counted.
	c.h.authenticated(c)
	c.nc.Close()
	if exited != nil {
		<-exited // the socket is closed: its write fails if it was blocked
	}
	c.mu.Lock()
	d := c.end
	c.dropQueue()
	c.mu.Unlock()
	c.peer.Closed(d)
	c.h.ended(c, d)
}

// readLoop reads frames until the connection ends, and records why; it
// returns false then. A polled connection returns true instead when it can
// park: between messages, with nothing buffered, not closing, and after a
// frame at least unless idle.
func (c *Conn) readLoop(r *reader, idle bool) bool {
	var (
		state = ws.StateServerSide
		op    ws.OpCode // of the message being read
		size  int64     // of the message being read, so far
		msg   []byte    // the text message being assembled
		valid int       // msg[:valid] is checked UTF-8; the rest starts a rune
		over  bool      // the message is past MaxFrame: read, checked, dropped
		pend  int       // over: r.skip[:pend] starts a rune not checked yet
	)
	for {
		if idle && c.rc != nil && !state.Fragmented() && r.br.Buffered() == 0 && !c.closing.Load() {
			return true
		}
		h, err := ws.ReadHeaderBuffer(r.br, r.hdr[:])
		if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
			// RFC 6455 §5.2: "the most significant bit MUST be 0". A
			// protocol error like any other, never a silent drop.
			c.fail(r, errLengthMSB)
			return false
		}
		if err != nil {
			c.readFailed(err)
			return false
		}
		idle = true
		c.in++
		c.h.metrics.framesIn.Inc()
		if err := ws.CheckHeader(h, state); err != nil {
			c.fail(r, err)
			return false
		}
		if h.OpCode.IsControl() {
			if !c.control(r, h) {
				return false
			}
			continue
		}
		if h.Fin {
			state = state.Clear(ws.StateFragmented)
		} else {
			state = state.Set(ws.StateFragmented)
		}
		if h.OpCode != ws.OpContinuation {
			op, size, valid, over, pend = h.OpCode, 0, 0, false, 0
		}
		// The caps are checked on the header, before reading or allocating.
		closing := c.closing.Load()
		switch {
		case closing:
		case h.Length > int64(c.h.cfg.MaxMessage)-size:
			c.requestClose(uint16(ws.StatusMessageTooBig), "message too big",
				&Disconnect{Cause: CauseTooLarge, Code: uint16(ws.StatusMessageTooBig), Err: ErrTooLarge}, true)
			closing = true
		case !over && h.Length > int64(c.h.cfg.MaxFrame)-size:
			// protocol.md §2.1: the message is dropped, not the
			// connection. What was kept of it goes, but for the start of
			// a rune that the rest must complete.
			over = true
			pend = copy(r.skip[:], msg[valid:])
			msg = nil
		}
		size += h.Length
		switch {
		case closing || op == ws.OpBinary:
			// Binary payloads, and everything once closing, are skipped
			// unread: the frames still have to be parsed to see the
			// client's close frame.
			msg = nil
			if err := discard(r.br, h.Length); err != nil {
				c.readFailed(err)
				return false
			}
		case over:
			if pend, err = r.skipText(h, pend); err != nil {
				if err == errInvalidUTF8 {
					c.fail(r, err)
				} else {
					c.readFailed(err)
				}
				return false
			}
			if h.Fin && pend != 0 {
				c.fail(r, errInvalidUTF8) // ends inside a rune
				return false
			}
		default:
			n, m := len(msg), int(h.Length)
			msg = slices.Grow(msg, m)[:n+m]
			// Read as the bytes come, checking UTF-8 on the way (RFC 6455
			// §8.1): a message that cannot become valid fails at once, not
			// when its last fragment arrives.
			for got := 0; got < m; {
				k, err := r.br.Read(msg[n+got:])
				if k > 0 {
					ws.Cipher(msg[n+got:n+got+k], h.Mask, got)
					got += k
					var ok bool
					if valid, ok = checkUTF8(msg[:n+got], valid); !ok {
						c.fail(r, errInvalidUTF8)
						return false
					}
				}
				if err != nil && got < m {
					c.readFailed(err)
					return false
				}
			}
			if h.Fin && valid != len(msg) {
				c.fail(r, errInvalidUTF8) // ends inside a rune
				return false
			}
		}
		if !h.Fin {
			continue
		}
		if !c.closing.Load() {
			switch {
			case op == ws.OpBinary:
				c.peer.Binary()
			case over:
				c.peer.TooLarge()
			default:
				c.peer.Text(msg)
			}
		}
		msg = nil
	}
}

// skipText reads the payload of a frame of a text message past MaxFrame
// and drops it, piece by piece through r.skip, whose first pend bytes start
// a rune that the payload goes on. It checks UTF-8 all the same, so that
// the message fails as soon as it cannot be valid (RFC 6455 §8.1: "When an
// endpoint is to interpret a byte stream as UTF-8 but finds that the byte
// stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail
// the WebSocket Connection_"), and returns how many bytes of a rune it
// leaves at the start of r.skip. The error is errInvalidUTF8 or a read
// error.
func (r *reader) skipText(h ws.Header, pend int) (int, error) {
	for got := int64(0); got < h.Length; {
		k, err := r.br.Read(r.skip[pend : pend+int(min(h.Length-got, int64(len(r.skip)-pend)))])
		if k > 0 {
			ws.Cipher(r.skip[pend:pend+k], h.Mask, int(got%4))
			got += int64(k)
			valid, ok := checkUTF8(r.skip[:pend+k], 0)
			if !ok {
				return 0, errInvalidUTF8
			}
			pend = copy(r.skip[:], r.skip[valid:pend+k])
		}
		if err != nil && got < h.Length {
			return 0, err
		}
	}
	return pend, nil
}

// control handles a control frame (CheckHeader has bounded it to 125 bytes,
// unfragmented). It reports whether reading goes on.
func (c *Conn) control(r *reader, h ws.Header) bool {
	b := r.ctl[:h.Length]
	if _, err := io.ReadFull(r.br, b); err != nil {
		c.readFailed(err)
		return false
	}
	ws.Cipher(b, h.Mask, 0)
	switch h.OpCode {
	case ws.OpPing:
		// The Peer counts pings like requests (protocol.md §2.7): one over
		// its limit gets no pong.
		if !c.closing.Load() && c.peer.Ping() {
			c.queuePong(b)
		}
	case ws.OpClose:
		c.clientClosed(b)
		return false
	}
	return true
}

var (
	errCloseBody = ws.ProtocolError("close frame payload of one byte")
	errLengthMSB = ws.ProtocolError("frame length with the most significant bit set")
)

// ErrInvalidUTF8 is wrapped by the Disconnect of a connection that sent a
// text message that is not valid UTF-8: closed with 1007 (RFC 6455 §8.1).
var ErrInvalidUTF8 = errors.New("text message is not valid UTF-8")

// errInvalidUTF8 fails a connection with 1007.
var errInvalidUTF8 = &failure{code: uint16(ws.StatusInvalidFramePayloadData), reason: invalidUTF8Reason, cause: CauseInvalidUTF8, err: ErrInvalidUTF8}

const invalidUTF8Reason = "Invalid UTF-8."

// failure is a reason to fail the connection other than a protocol error.
type failure struct {
	code   uint16
	reason string
	cause  Cause
	err    error
}

func (f *failure) Error() string { return f.err.Error() }

// clientClosed answers the client's close frame. RFC 6455 §5.5.1: "If an
// endpoint receives a Close frame and did not previously send a Close frame,
// the endpoint MUST send a Close frame in response. (When sending a Close
// frame in response, the endpoint typically echoes the status code it
// received.)" When ours went first, this is its answer and requestClose does
// nothing.
func (c *Conn) clientClosed(b []byte) {
	code, reason := ws.StatusNoStatusRcvd, ""
	var err error
	switch {
	case len(b) == 1:
		err = errCloseBody
	case len(b) >= 2:
		code, reason = ws.ParseCloseFrameData(b)
		err = ws.CheckCloseFrameData(code, reason)
	}
	if err != nil {
		c.requestClose(uint16(ws.StatusProtocolError), err.Error(),
			&Disconnect{Cause: CauseProtocolError, Code: uint16(ws.StatusProtocolError), Err: err}, true)
		return
	}
	c.requestClose(uint16(code), "", &Disconnect{Cause: CauseClientClose, Code: uint16(code), Reason: reason}, true)
}

// fail closes with 1002 (with 1007 for invalid UTF-8) and then, as RFC 6455
// §7.1.7 asks, processes nothing more from the client: it only drains the
// socket until the client hangs up or the close wait set by the writer ends.
func (c *Conn) fail(r *reader, err error) {
	if f, ok := err.(*failure); ok {
		c.requestClose(f.code, f.reason, &Disconnect{Cause: f.cause, Code: f.code, Reason: f.reason, Err: f.err}, true)
	} else {
		c.requestClose(uint16(ws.StatusProtocolError), err.Error(),
			&Disconnect{Cause: CauseProtocolError, Code: uint16(ws.StatusProtocolError), Err: err}, true)
	}
	_, _ = io.Copy(io.Discard, r.br)
}

// checkUTF8 checks b[from:], where b[:from] is valid UTF-8 and from starts a
// rune, and returns how far b is valid: to its end, or to the start of a
// rune that the next bytes may complete. ok is false when b holds a
// sequence no further bytes can make valid.
func checkUTF8(b []byte, from int) (valid int, ok bool) {
	p := b[from:]
	if utf8.Valid(p) {
		return len(b), true
	}
	// Invalid, or cut inside its last rune: find where that rune starts.
	i := len(p) - 1
	for i > 0 && len(p)-i < utf8.UTFMax && !utf8.RuneStart(p[i]) {
		i--
	}
	if !runePrefix(p[i:]) || !utf8.Valid(p[:i]) {
		return 0, false
	}
	return from + i, true
}

// runePrefix reports whether p is the beginning, not the whole, of the
// UTF-8 encoding of a rune (RFC 3629 §4: no overlong forms, no surrogates,
// nothing past U+10FFFF).
func runePrefix(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	var n int
	lo, hi := byte(0x80), byte(0xbf) // the second byte's range
	switch b := p[0]; {
	case b >= 0xc2 && b <= 0xdf:
		n = 2
	case b == 0xe0:
		n, lo = 3, 0xa0
	case b == 0xed:
		n, hi = 3, 0x9f
	case b >= 0xe1 && b <= 0xef:
		n = 3
	case b == 0xf0:
		n, lo = 4, 0x90
	case b == 0xf4:
		n, hi = 4, 0x8f
	case b >= 0xf1 && b <= 0xf3:
		n = 4
	default:
		return false
	}
	if len(p) >= n {
		return false
	}
	for i, b := range p[1:] {
		if i > 0 {
			lo, hi = 0x80, 0xbf
		}
		if b < lo || b > hi {
			return false
		}
	}
	return true
}

func (c *Conn) readFailed(err error) {
	c.ended(&Disconnect{Cause: CauseReadError, Code: uint16(ws.StatusAbnormalClosure), Err: err})
}

// discard skips n payload bytes without buffering them.
func discard(br *bufio.Reader, n int64) error {
	for n > 0 {
		k, err := br.Discard(int(min(n, 1<<30)))
		n -= int64(k)
		if err != nil {
			return err
		}
	}
	return nil
}

// queuePong hands the writer a pong for b, unless the connection is
// closing. A pong not written yet is replaced: RFC 6455 §5.5.3 allows
// answering only the most recent ping.
func (c *Conn) queuePong(b []byte) {
	c.mu.Lock()
	if c.closing.Load() {
		c.mu.Unlock()
		return
	}
	if c.pong == nil {
		c.pong = make([]byte, 0, ws.MaxControlFramePayloadSize)
	}
	c.pong = append(c.pong[:0], b...)
	c.pongPending = true
	start := c.startWriter()
	c.mu.Unlock()
	if start {
		go c.writeFn()
	}
}

// The write side. A goroutine writes only while there is something to
// write: the first Send (or pong, or close) to an idle connection starts it,
// and it ends when the queue is empty, with its pooled buffers given back.
// It is the only one that writes to the socket.

// writer is the write side's buffers, pooled between runs of writing.
type writer struct {
	hdr     [maxBatch]header
	scratch [ws.MaxHeaderSize]byte
	ctl     [ws.MaxControlFramePayloadSize]byte
	wv      [2 * maxBatch][]byte // header, payload, header, payload...
	vec     [2 * maxBatch][]byte // wv's copy that writev consumes
	bufs    net.Buffers
	joined  [joinedWrite]byte
}

// joinedWrite bounds the writes that are copied into one buffer and
// written with write(2); larger ones go out uncopied with writev(2). Small
// writes are the common case, and writev would leave its vector cached on
// the socket for the connection's life (poll.FD keeps it): up to 0.5 KiB
// per connection.
const joinedWrite = 4 << 10

var writers = sync.Pool{New: func() any { return new(writer) }}

// write runs the writer until there is nothing left to write.
func (c *Conn) write() {
	w := writers.Get().(*writer)
	for c.writeNext(w) {
	}
	writers.Put(w)
}

// writeNext writes what comes next: a pending pong, the queued frames (not
// when aborting), then the close frame. It reports whether the writer goes
// on.
func (c *Conn) writeNext(w *writer) bool {
	c.mu.Lock()
	switch {
	case c.pongPending:
		n := copy(w.ctl[:], c.pong)
		c.pongPending = false
		c.mu.Unlock()
		return c.writeOne(w, ws.OpPong, w.ctl[:n])
	case c.queue.len() > 0 && !c.dropping.Load():
		n := c.batch(w)
		c.mu.Unlock()
		for i := range n {
			w.header(i, ws.OpText)
		}
		return c.send(w, n, false)
	case c.closeFrame:
		c.dropQueue() // empty, or dropped by Abort
		code, reason := c.closeCode, c.closeReason
		c.mu.Unlock()
		if c.writeOne(w, ws.OpClose, closeBody(w.ctl[:0], code, reason)) {
			// The reader now waits for the client's answer, but not forever.
			_ = c.nc.SetReadDeadline(time.Now().Add(c.h.closeWait))
			c.mu.Lock()
			c.stopWriter(writerDone)
			c.mu.Unlock()
			c.kick()
		}
		return false
	default:
		c.stopWriter(writerIdle)
		c.mu.Unlock()
		return false
	}
}

// dropQueue empties the queue, counting what it held as dropped. Lock
// must be held.
func (c *Conn) dropQueue() {
	c.dropped += c.queue.len()
	c.queue.reset()
}

// batch takes the frames at the head of the queue that one write sends
// together, puts them in place and returns how many. Lock must be held.
func (c *Conn) batch(w *writer) int {
	n, size := 0, 0
	for _, f := range c.queue.front() {
		if size >= maxBatchBytes {
			break
		}
		w.wv[2*n+1] = f
		size += len(f)
		n++
	}
	c.queue.drop(n)
	return n
}

// A batch is the queued frames that one writev takes at once: it saves a
// syscall per frame when frames pile up (BenchmarkSend), and its byte bound
// keeps WriteTimeout about as tight as for one frame of that size.
const (
	maxBatch      = 16
	maxBatchBytes = 64 << 10
)

// writeOne writes one frame.
func (c *Conn) writeOne(w *writer, op ws.OpCode, p []byte) bool {
	w.wv[1] = p
	w.header(0, op)
	return c.send(w, 1, op == ws.OpClose)
}

// header encodes the header of the i-th frame of the next write, whose
// payload is in place, into a reused buffer. Server frames are unmasked.
func (w *writer) header(i int, op ws.OpCode) {
	// Cannot fail: the header is well formed and hdr takes every byte.
	_ = ws.WriteHeaderBuffer(&w.hdr[i], ws.Header{Fin: true, OpCode: op, Length: int64(len(w.wv[2*i+1]))}, w.scratch[:])
	w.wv[2*i] = w.hdr[i].b[:w.hdr[i].n]
}

// send writes the first n frames put in place (the last of them the close
// frame when closeFrame), in one writev bounded by WriteTimeout, and reports
// whether it did. A write that runs past WriteTimeout goes to slow. On any
// other failure it records the cause, closes the socket and stops the
// writer for good; a reader sees the closed socket and ends the connection.
func (c *Conn) send(w *writer, n int, closeFrame bool) bool {
	err := c.nc.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout))
	var written int64
	if err == nil {
		written, err = w.writeTo(c.nc, w.wv[:2*n])
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		rest := w.unwritten(n, written)
		clear(w.wv[:2*n])
		return c.slow(rest, closeFrame)
	}
	clear(w.wv[:2*n]) // the pool must not keep frames
	if err != nil {
		c.mu.Lock()
		if c.end == nil {
			c.end = &Disconnect{Cause: CauseWriteError, Code: uint16(ws.StatusAbnormalClosure), Err: err}
		}
		c.stopWriter(writerDone)
		c.mu.Unlock()
		c.nc.Close()
		c.kick()
		return false
	}
	c.out += n
	c.h.metrics.framesOut.Add(float64(n))
	return true
}

// slow ends a connection whose write ran past WriteTimeout: the client does
// not read (protocol.md §2.1: a slow consumer, 4009). Nothing is dropped
// silently: the queued frames are dropped and counted, and the client is
// told why when it reads again, if it does so within closeWait. rest is
// what remains of the frame the write cut short, which has to be finished
// before any other frame can follow; then the close frame goes out, unless
// rest is the close frame's own, 4009 "Slow consumer." or the close asked
// for earlier. Only if that cannot be written either is the socket dropped.
func (c *Conn) slow(rest net.Buffers, closeSent bool) bool {
	c.mu.Lock()
	if c.end == nil {
		c.end = &Disconnect{Cause: CauseWriteTimeout, Code: CloseSlowConsumer, Reason: SlowConsumerReason, Err: os.ErrDeadlineExceeded}
	}
	if !c.closeFrame {
		c.closeFrame, c.closeCode, c.closeReason = true, CloseSlowConsumer, SlowConsumerReason
	}
	code, reason := c.closeCode, c.closeReason
	c.closing.Store(true)
	c.dropping.Store(true)
	c.pongPending = false
	c.dropQueue()
	c.mu.Unlock()
	if !closeSent || rest == nil { // rest nil: the write stopped before its frame
		body := closeBody(make([]byte, 0, ws.MaxControlFramePayloadSize), code, reason)
		rest = append(rest, ws.MustCompileFrame(ws.NewCloseFrame(body)))
	}
	err := c.nc.SetWriteDeadline(time.Now().Add(c.h.closeWait))
	if err == nil {
		_, err = rest.WriteTo(c.nc)
	}
	if err == nil {
		// As after any close frame: the reader waits for the answer.
		err = c.nc.SetReadDeadline(time.Now().Add(c.h.closeWait))
	}
	c.mu.Lock()
	c.stopWriter(writerDone)
	c.mu.Unlock()
	if err != nil {
		c.nc.Close()
	}
	c.kick()
	return false
}

// unwritten returns what a write of the first n frames in place left of
// the frame it cut short after written bytes: nil when it stopped between
// two frames.
func (w *writer) unwritten(n int, written int64) net.Buffers {
	for i := range n {
		hdr, p := w.wv[2*i], w.wv[2*i+1]
		size := int64(len(hdr) + len(p))
		if written >= size {
			written -= size
			continue
		}
		switch {
		case written == 0:
			return nil
		case written < int64(len(hdr)):
			return net.Buffers{slices.Clone(hdr[written:]), p}
		default:
			return net.Buffers{p[written-int64(len(hdr)):]}
		}
	}
	return nil
}

// writeTo writes v to nc: joined when it is small, else with writev. It
// returns how many bytes it wrote; v is left as it was.
func (w *writer) writeTo(nc net.Conn, v [][]byte) (int64, error) {
	b := w.joined[:0]
	for _, p := range v {
		if len(b)+len(p) > len(w.joined) {
			// WriteTo consumes the vector it writes: give it a copy.
			w.bufs = append(w.vec[:0], v...)
			k, err := w.bufs.WriteTo(nc)
			clear(w.vec[:len(v)])
			w.bufs = nil
			return k, err
		}
		b = append(b, p...)
	}
	k, err := nc.Write(b)
	return int64(k), err
}

// header receives the encoded frame header from ws.WriteHeaderBuffer.
type header struct {
	b [ws.MaxHeaderSize]byte
	n int
}

func (h *header) Write(p []byte) (int, error) {
	h.n = copy(h.b[:], p)
	return h.n, nil
}

// closeBody encodes a close frame payload into b (125 bytes of capacity).
// 1005 stands for "no status code": it must not be sent (RFC 6455 §7.4.1),
// so its body is empty. A long reason is cut on a rune boundary.
func closeBody(b []byte, code uint16, reason string) []byte {
	if code == uint16(ws.StatusNoStatusRcvd) {
		return b[:0]
	}
	for len(reason) > ws.MaxControlFramePayloadSize-2 {
		_, n := utf8.DecodeLastRuneInString(reason)
		reason = reason[:len(reason)-n]
	}
	b = b[:2+len(reason)]
	ws.PutCloseFrameBody(b, ws.StatusCode(code), reason)
	return b
}
