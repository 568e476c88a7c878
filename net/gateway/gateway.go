package gateway

import (
	"bufio"
	"context"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Config configures a Handler; zero values take the defaults.
type Config struct {
	// MaxFrame is the largest message accepted, all fragments together, in
	// bytes; default 16 KiB. A larger one is refused from its frame header,
	// before anything is allocated for it, with close 1009.
	MaxFrame int
	// SendQueue is the number of outbound frames queued per connection;
	// default 256. Conn.Send fails when it is full.
	SendQueue int
	// WriteTimeout bounds one write to the socket: a frame, or the queued
	// frames written together (at most 16 of them, 64 KiB); default 10s. A
	// write that exceeds it drops the connection (cause "write timeout").
	WriteTimeout time.Duration
	// Logger receives connection facts: open, and close with cause, code,
	// reason and duration. Never payloads. Default: no logging.
	Logger zerolog.Logger
	// Registerer, when set, receives the metrics: open connections, frames
	// in and out, closes by code.
	Registerer prometheus.Registerer
}

// Defaults of Config.
const (
	DefaultMaxFrame     = 16 << 10
	DefaultSendQueue    = 256
	DefaultWriteTimeout = 10 * time.Second
)

// closeWait is how long the client has to answer a close frame of ours
// before its socket is dropped.
const closeWait = 3 * time.Second

// Peer receives what one connection reads. The gateway calls it from the
// goroutine reading that connection at the time, one call at a time, in
// arrival order; Closed is called exactly once, last.
type Peer interface {
	// Text is one complete text message (fragments joined), passed as it
	// arrived, even when it is not valid UTF-8; data is the peer's to keep.
	Text(data []byte)
	// Binary reports a binary message; its payload was discarded.
	Binary()
	// Closed reports that the connection is gone; reason is a *Disconnect.
	Closed(reason error)
}

// Open is called once per upgraded connection, before its read loop starts,
// with the protocol version (1, or 2 for ?v=2), and returns its Peer.
type Open func(c *Conn, version int) Peer

// Handler serves GET /ws: it upgrades connections and runs them.
type Handler struct {
	cfg       Config
	open      Open
	upgrader  ws.HTTPUpgrader
	metrics   *metrics
	closeWait time.Duration // the const closeWait; tests shorten it

	mu      sync.Mutex
	conns   map[uint64]*Conn // upgraded and not yet ended, by id
	lastID  uint64
	poll    *poller       // while conns is not empty; nil if it could not start
	active  int           // handshakes in progress plus conns
	down    bool          // Shutdown was called
	drained chan struct{} // closed when down and active reaches 0
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler that calls open for every upgraded connection.
func New(cfg Config, open Open) *Handler {
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = DefaultSendQueue
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	return &Handler{
		cfg:       cfg,
		open:      open,
		upgrader:  ws.HTTPUpgrader{Timeout: cfg.WriteTimeout},
		metrics:   newMetrics(cfg.Registerer),
		closeWait: closeWait,
		conns:     make(map[uint64]*Conn),
		drained:   make(chan struct{}),
	}
}

// ServeHTTP upgrades the request and starts the connection; it returns once
// the connection is handed to the poller (or, when the poller cannot watch
// it, when it ends). It hijacks the connection, so w must be the server's
// own ResponseWriter (or one that unwraps to it): mount the Handler directly
// on the server's mux.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	version, ok := parseVersion(r)
	if !ok {
		http.Error(w, "unsupported protocol version", http.StatusBadRequest)
		return
	}
	if !h.enter() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	nc, rw, _, err := h.upgrader.Upgrade(r, w)
	if err != nil {
		// The upgrader has answered the client already.
		if nc != nil {
			nc.Close()
		}
		h.leave(nil)
		h.cfg.Logger.Debug().Err(err).Str("remote", r.RemoteAddr).Msg("websocket upgrade failed")
		return
	}
	// The hijacked reader may hold frames the client sent right after its
	// handshake, so it stays the connection's read buffer.
	h.serve(nc, rw.Reader, version)
}

// parseVersion reads ?v=: absent or 1 is version 1, 2 is version 2.
func parseVersion(r *http.Request) (int, bool) {
	q := r.URL.Query()
	if !q.Has("v") {
		return 1, true
	}
	switch q.Get("v") {
	case "1":
		return 1, true
	case "2":
		return 2, true
	}
	return 0, false
}

// serve starts one upgraded connection. A connection the poller watches
// has no goroutine until it has bytes to read, and serve returns at once;
// any other is read by the calling goroutine, and serve returns when it has
// ended.
func (h *Handler) serve(nc net.Conn, br *bufio.Reader, version int) {
	c := newConn(h, nc, version)
	if br.Buffered() > 0 {
		c.br = br
	}
	if late := h.add(c); late {
		// Shutdown began after our handshake started and did not see c.
		c.closeWith(uint16(ws.StatusGoingAway), shutdownReason, CauseShutdown, false)
	}
	h.cfg.Logger.Debug().Stringer("remote", nc.RemoteAddr()).Int("version", version).Msg("websocket open")
	c.peer = h.open(c, version)
	// This goroutine owns the read side (kicks fail meanwhile) and hands it
	// over now: to a reader for the bytes the hijacked reader holds, which
	// the poller cannot see, or to the poller by parking, which arms it.
	if c.rc != nil && c.br != nil {
		go c.readFn()
		return
	}
	c.readFrom(c.rc != nil)
}

// ended counts, logs and forgets a connection that has ended with d.
func (h *Handler) ended(c *Conn, d *Disconnect) {
	// Counted and logged before it leaves: once Shutdown returns or Open
	// drops, every ended connection is on record.
	h.metrics.ended(d)
	h.cfg.Logger.Info().
		Stringer("remote", c.nc.RemoteAddr()).
		Int("version", int(c.version)).
		Str("cause", string(d.Cause)).
		Uint16("code", d.Code).
		Str("reason", d.Reason).
		AnErr("error", d.Err).
		Dur("duration", time.Since(c.opened)).
		Int("frames_in", c.in).
		Int("frames_out", c.out).
		Msg("websocket closed")
	h.leave(c)
}

// Shutdown stops upgrading new connections (they get 503), closes every open
// one with 1001, and waits until all are gone or ctx ends.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if !h.down {
		h.down = true
		if h.active == 0 {
			close(h.drained)
		}
	}
	conns := slices.Collect(maps.Values(h.conns))
	h.mu.Unlock()
	for _, c := range conns {
		c.closeWith(uint16(ws.StatusGoingAway), shutdownReason, CauseShutdown, false)
	}
	select {
	case <-h.drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

const shutdownReason = "server shutting down"

// Open returns the number of connections open now.
func (h *Handler) Open() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// enter counts a handshake in, unless Shutdown was called.
func (h *Handler) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		return false
	}
	h.active++
	return true
}

// add registers an upgraded connection, and its socket with the poller
// when it can be watched (else c.rc is cleared); it reports whether Shutdown
// has begun meanwhile.
func (h *Handler) add(c *Conn) (late bool) {
	h.mu.Lock()
	h.lastID++
	c.id = h.lastID
	h.conns[c.id] = c
	if c.rc != nil && h.watch(c) != nil {
		c.rc = nil
	}
	late = h.down
	h.mu.Unlock()
	h.metrics.open.Inc()
	return late
}

// watch registers c's socket with the poller, starting the poller first if
// needed. h.mu must be held.
func (h *Handler) watch(c *Conn) error {
	if h.poll == nil {
		p, err := newPoller(h)
		if err != nil {
			h.cfg.Logger.Debug().Err(err).Msg("websocket poller unavailable: one read goroutine per connection")
			return err
		}
		h.poll = p
	}
	var err error
	if cerr := c.rc.Control(func(fd uintptr) { err = h.poll.ctl(pollAdd, fd, c.id) }); cerr != nil {
		return cerr
	}
	if err == nil {
		c.poll = h.poll
	}
	return err
}

// leave counts out a handshake that failed (c nil) or a connection that ended.
func (h *Handler) leave(c *Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c != nil {
		delete(h.conns, c.id)
		h.metrics.open.Dec()
		if len(h.conns) == 0 && h.poll != nil {
			h.poll.close()
			h.poll = nil
		}
	}
	h.active--
	if h.down && h.active == 0 {
		close(h.drained)
	}
}
