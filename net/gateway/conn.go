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
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Conn is one connection's outbound side. All its methods are safe for
// concurrent use and never block on the socket.
type Conn struct {
	h      *Handler
	nc     net.Conn
	br     *bufio.Reader
	opened time.Time

	queue      chan []byte   // text frames for the writer, SendQueue deep
	wake       chan struct{} // capacity 1: a pong or a close frame is pending
	stop       chan struct{} // closed by the reader once the socket is closed
	writerDone chan struct{} // closed when the writer returns

	// closing is set once the connection winds down (a close frame is
	// pending or the reader has ended): Send fails and messages read from
	// then on are discarded. It is only set with mu held.
	closing  atomic.Bool
	dropping atomic.Bool // Abort: the queued frames are not written

	mu          sync.Mutex // guards the fields below
	pong        [ws.MaxControlFramePayloadSize]byte
	pongLen     int
	pongPending bool
	closeFrame  bool // the writer owes a close frame with closeCode and closeReason
	closeCode   uint16
	closeReason string
	end         *Disconnect // the first cause that ended the connection

	// Owned by the read goroutine.
	rhdr [ws.MaxHeaderSize - 2]byte
	rctl [ws.MaxControlFramePayloadSize]byte
	in   int

	// Owned by the write goroutine.
	whdr     [maxBatch]header
	wscratch [ws.MaxHeaderSize]byte
	wctl     [ws.MaxControlFramePayloadSize]byte
	wv       [2 * maxBatch][]byte // header, payload, header, payload...
	bufs     net.Buffers
	out      int
}

func newConn(h *Handler, nc net.Conn, br *bufio.Reader) *Conn {
	return &Conn{
		h:          h,
		nc:         nc,
		br:         br,
		opened:     time.Now(),
		queue:      make(chan []byte, h.cfg.SendQueue),
		wake:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
}

// Send queues one text frame. It returns false when the queue is full or
// the connection is closing; the caller decides what overflow means (the
// session aborts with 4009). frame is not copied, so it must not be modified
// afterwards: one encoded broadcast is shared by many connections.
func (c *Conn) Send(frame []byte) bool {
	if c.closing.Load() {
		return false
	}
	select {
	case c.queue <- frame:
		return true
	default:
		return false
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
	c.mu.Unlock()
	c.signal()
}

// ended records d as the cause unless one is recorded already.
func (c *Conn) ended(d *Disconnect) {
	c.mu.Lock()
	if c.end == nil {
		c.end = d
	}
	c.mu.Unlock()
}

func (c *Conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// run reads until the connection ends, then tears it down and tells p.
// It runs in the read goroutine; the writer must have been started.
func (c *Conn) run(p Peer) *Disconnect {
	c.readLoop(p)
	c.mu.Lock()
	owed := c.closeFrame
	c.closing.Store(true)
	c.mu.Unlock()
	if owed {
		// Let the writer finish its close frame, but not forever: the
		// client may have stopped reading.
		t := time.NewTimer(c.h.closeWait)
		select {
		case <-c.writerDone:
		case <-t.C:
		}
		t.Stop()
	}
	c.nc.Close()
	close(c.stop)
	<-c.writerDone
	c.mu.Lock()
	d := c.end
	c.mu.Unlock()
	p.Closed(d)
	return d
}

// readLoop reads frames until the connection ends, and records why.
func (c *Conn) readLoop(p Peer) {
	var (
		state = ws.StateServerSide
		op    ws.OpCode // of the message being read
		size  int64     // of the message being read, so far
		msg   []byte    // the text message being assembled
	)
	for {
		h, err := ws.ReadHeaderBuffer(c.br, c.rhdr[:])
		if err != nil {
			c.readFailed(err)
			return
		}
		c.in++
		c.h.metrics.framesIn.Inc()
		if err := ws.CheckHeader(h, state); err != nil {
			c.fail(err)
			return
		}
		if h.OpCode.IsControl() {
			if !c.control(h) {
				return
			}
			continue
		}
		if h.Fin {
			state = state.Clear(ws.StateFragmented)
		} else {
			state = state.Set(ws.StateFragmented)
		}
		if h.OpCode != ws.OpContinuation {
			op, size = h.OpCode, 0
		}
		keep := op == ws.OpText && !c.closing.Load()
		// The cap is checked on the header, before reading or allocating.
		if h.Length > int64(c.h.cfg.MaxFrame)-size && !c.closing.Load() {
			c.requestClose(uint16(ws.StatusMessageTooBig), "message too big",
				&Disconnect{Cause: CauseTooLarge, Code: uint16(ws.StatusMessageTooBig), Err: ErrTooLarge}, true)
			keep = false
		}
		size += h.Length
		if keep {
			n, m := len(msg), int(h.Length)
			msg = slices.Grow(msg, m)[:n+m]
			if _, err := io.ReadFull(c.br, msg[n:]); err != nil {
				c.readFailed(err)
				return
			}
			ws.Cipher(msg[n:], h.Mask, 0)
		} else {
			// Binary payloads, and everything once closing, are skipped
			// without being buffered: the frames still have to be parsed to
			// see the client's close frame.
			msg = nil
			if err := c.discard(h.Length); err != nil {
				c.readFailed(err)
				return
			}
		}
		if !h.Fin {
			continue
		}
		if !c.closing.Load() {
			if op == ws.OpText {
				p.Text(msg)
			} else {
				p.Binary()
			}
		}
		msg = nil
	}
}

// control handles a control frame (CheckHeader has bounded it to 125 bytes,
// unfragmented). It reports whether reading goes on.
func (c *Conn) control(h ws.Header) bool {
	b := c.rctl[:h.Length]
	if _, err := io.ReadFull(c.br, b); err != nil {
		c.readFailed(err)
		return false
	}
	ws.Cipher(b, h.Mask, 0)
	switch h.OpCode {
	case ws.OpPing:
		if !c.closing.Load() {
			c.queuePong(b)
		}
	case ws.OpClose:
		c.clientClosed(b)
		return false
	}
	return true
}

var errCloseBody = ws.ProtocolError("close frame payload of one byte")

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

// fail closes with 1002 and then, as RFC 6455 §7.1.7 asks, processes nothing
// more from the client: it only drains the socket until the client hangs up
// or the close wait set by the writer ends.
func (c *Conn) fail(err error) {
	c.requestClose(uint16(ws.StatusProtocolError), err.Error(),
		&Disconnect{Cause: CauseProtocolError, Code: uint16(ws.StatusProtocolError), Err: err}, true)
	_, _ = io.Copy(io.Discard, c.br)
}

func (c *Conn) readFailed(err error) {
	c.ended(&Disconnect{Cause: CauseReadError, Code: uint16(ws.StatusAbnormalClosure), Err: err})
}

// discard skips n payload bytes without buffering them.
func (c *Conn) discard(n int64) error {
	for n > 0 {
		k, err := c.br.Discard(int(min(n, 1<<30)))
		n -= int64(k)
		if err != nil {
			return err
		}
	}
	return nil
}

// queuePong hands the writer a pong for b. A pong not written yet is
// replaced: RFC 6455 §5.5.3 allows answering only the most recent ping.
func (c *Conn) queuePong(b []byte) {
	c.mu.Lock()
	c.pongLen = copy(c.pong[:], b)
	c.pongPending = true
	c.mu.Unlock()
	c.signal()
}

// writeLoop is the only goroutine that writes to the socket.
func (c *Conn) writeLoop() {
	defer close(c.writerDone)
	for {
		select {
		case f := <-c.queue:
			if !c.dropping.Load() && !c.writeQueued(f) {
				return
			}
		case <-c.wake:
			if !c.writeControl() {
				return
			}
		case <-c.stop:
			return
		}
	}
}

// writeControl writes a pending pong, then a pending close frame (after the
// queued frames unless aborting). It reports whether the writer goes on.
func (c *Conn) writeControl() bool {
	c.mu.Lock()
	pong, n := c.pongPending, copy(c.wctl[:], c.pong[:c.pongLen])
	c.pongPending = false
	closeFrame, code, reason := c.closeFrame, c.closeCode, c.closeReason
	c.mu.Unlock()
	if pong && !c.write(ws.OpPong, c.wctl[:n]) {
		return false
	}
	if !closeFrame {
		return true
	}
	if !c.dropping.Load() && !c.flush() {
		return false
	}
	if c.write(ws.OpClose, closeBody(c.wctl[:0], code, reason)) {
		// The reader now waits for the client's answer, but not forever.
		_ = c.nc.SetReadDeadline(time.Now().Add(c.h.closeWait))
	}
	return false
}

// flush writes the frames queued before the close was asked for: Send fails
// since, so the queue only drains.
func (c *Conn) flush() bool {
	for {
		select {
		case f := <-c.queue:
			if !c.writeQueued(f) {
				return false
			}
		default:
			return true
		}
	}
}

// A batch is the queued frames that one writev takes at once: it saves a
// syscall per frame when frames pile up (BenchmarkSend), and its byte bound
// keeps WriteTimeout about as tight as for one frame of that size.
const (
	maxBatch      = 16
	maxBatchBytes = 64 << 10
)

// writeQueued writes f and the frames queued behind it, up to a batch.
func (c *Conn) writeQueued(f []byte) bool {
	size := 0
	for n := 1; ; n++ {
		c.frame(n-1, ws.OpText, f)
		size += len(f)
		if n == maxBatch || size >= maxBatchBytes {
			return c.send(n)
		}
		select {
		case f = <-c.queue:
		default:
			return c.send(n)
		}
	}
}

// write writes one frame.
func (c *Conn) write(op ws.OpCode, p []byte) bool {
	c.frame(0, op, p)
	return c.send(1)
}

// frame puts the i-th frame of the next write in place: its header, encoded
// into a reused buffer, and its payload, uncopied. Server frames are unmasked.
func (c *Conn) frame(i int, op ws.OpCode, p []byte) {
	// Cannot fail: the header is well formed and whdr takes every byte.
	_ = ws.WriteHeaderBuffer(&c.whdr[i], ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}, c.wscratch[:])
	c.wv[2*i], c.wv[2*i+1] = c.whdr[i].b[:c.whdr[i].n], p
}

// send writes the first n frames put in place, in one writev bounded by
// WriteTimeout. On failure it records the cause and closes the socket, which
// ends the reader too.
func (c *Conn) send(n int) bool {
	err := c.nc.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout))
	if err == nil {
		c.bufs = c.wv[:2*n] // WriteTo consumes bufs and clears wv's entries
		_, err = c.bufs.WriteTo(c.nc)
	}
	if err != nil {
		cause := CauseWriteError
		if errors.Is(err, os.ErrDeadlineExceeded) {
			cause = CauseWriteTimeout
		}
		c.ended(&Disconnect{Cause: cause, Code: uint16(ws.StatusAbnormalClosure), Err: err})
		c.nc.Close()
		return false
	}
	c.out += n
	c.h.metrics.framesOut.Add(float64(n))
	return true
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
