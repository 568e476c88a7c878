package gateway

import (
	"bufio"
	"context"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Config configures a Handler. A zero value takes the default its field
// names; MaxUnauthenticatedPerIP and MaxConnections are turned off with
// setting.Off (package setting has the convention).
type Config struct {
	// MaxFrame is the largest message handed to the Peer, all fragments
	// together, in bytes; default DefaultMaxFrame (64 KiB), at most
	// MaxMessage. A larger text message, up to MaxMessage, is read and
	// dropped as it arrives, never buffered, and reported by Peer.TooLarge
	// (protocol.md §2.1: the connection stays open); a binary one is
	// reported by Peer.Binary, as any is.
	MaxFrame int
	// MaxMessage is the largest message read at all, all fragments
	// together, in bytes; default and maximum DefaultMaxMessage (1 MiB). A
	// larger one is refused from its frame header, before anything is read
	// or allocated for it, with close 1009.
	MaxMessage int
	// SendQueue is the number of outbound frames queued per connection;
	// default DefaultSendQueue (256). Conn.Send fails when it is full.
	SendQueue int
	// SendBytes bounds the outbound queue in bytes as well; default
	// DefaultSendBytes (1 MiB). Conn.Send fails when a frame would take the
	// queue past it.
	SendBytes int
	// WriteTimeout bounds one write to the socket: a frame, or the queued
	// frames written together (at most 16 of them, 64 KiB); default
	// DefaultWriteTimeout (10s). A write that exceeds it ends the
	// connection as a slow consumer: the queue is dropped and a close frame
	// 4009 follows the frame the write was in, if the client reads them
	// within a few seconds (cause "write timeout", code 4009).
	WriteTimeout time.Duration
	// MaxUnauthenticatedPerIP bounds the connections from one client
	// address (an IPv6 /64) that have not called Conn.Authenticated,
	// handshakes included; the next upgrade from it is answered 429 before
	// the handshake. Default DefaultMaxUnauthenticatedPerIP (64);
	// setting.Off: no bound.
	MaxUnauthenticatedPerIP int
	// MaxConnections bounds the connections, handshakes included; past it
	// upgrades are answered 503 at once, so the process keeps descriptors
	// for everything else. Default DefaultMaxConnections() (the open-files
	// limit less DescriptorReserve); setting.Off: no bound.
	MaxConnections int
	// ClientAddr returns the client address of an upgrade request; default
	// the host of r.RemoteAddr. Behind a reverse proxy, the address the
	// proxy reports.
	ClientAddr func(r *http.Request) string
	// Logger receives connection facts: open, and close with cause, code,
	// reason and duration. Never payloads. Default: no logging.
	Logger zerolog.Logger
	// Registerer, when set, receives the metrics: open connections, frames
	// in and out, closes by code.
	Registerer prometheus.Registerer
}

// Defaults of Config; REWIND_WS_MAX_FRAME, REWIND_WS_SEND_QUEUE,
// REWIND_WS_SEND_BYTES and REWIND_WS_MAX_UNAUTHENTICATED_PER_IP default to
// them.
const (
	DefaultMaxFrame                = 64 << 10
	DefaultMaxMessage              = 1 << 20
	DefaultSendQueue               = 256
	DefaultSendBytes               = 1 << 20
	DefaultWriteTimeout            = 10 * time.Second
	DefaultMaxUnauthenticatedPerIP = 64
)

// DescriptorReserve is what DefaultMaxConnections leaves of the open-files
// limit for everything that is not a WebSocket: the database, the
// listener, HTTP requests (health, login), logs.
const DescriptorReserve = 512

// DefaultMaxConnections, the default of Config.MaxConnections and
// REWIND_MAX_CONNECTIONS, is the open-files limit (RLIMIT_NOFILE) less
// DescriptorReserve, or less half of it when it is under twice that; 0 (no
// bound) where there is no such limit.
func DefaultMaxConnections() int {
	n := openFilesLimit()
	if n <= 0 {
		return 0
	}
	return n - min(DescriptorReserve, n/2)
}

// closeWait is how long the client has to answer a close frame of ours
// before its socket is dropped.
const closeWait = 3 * time.Second

// Peer receives what one connection reads. The gateway calls it from the
// goroutine reading that connection at the time, one call at a time, in
// arrival order; Closed is called exactly once, last.
type Peer interface {
	// Text is one complete text message (fragments joined), valid UTF-8
	// (any other closes the connection with 1007); data is the peer's to
	// keep.
	Text(data []byte)
	// Binary reports a binary message; its payload was discarded.
	Binary()
	// TooLarge reports a text message larger than MaxFrame (and at most
	// MaxMessage), in its place among Text and Binary: it was read and
	// discarded as it arrived, valid UTF-8 all the same.
	TooLarge()
	// Ping reports a ping and whether to answer it; a Peer that counts
	// pings against a rate limit says false to one over it, and the ping
	// goes unanswered.
	Ping() bool
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
	poll    *poller           // while conns is not empty; nil if it could not start
	active  int               // handshakes in progress plus conns
	unauth  map[string]int    // by client address key: active and not authenticated
	pending map[uint64]string // the address keys of conns not authenticated, by id
	down    bool              // Shutdown was called
	drained chan struct{}     // closed when down and active reaches 0
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler that calls open for every upgraded connection.
func New(cfg Config, open Open) *Handler {
	if cfg.MaxMessage <= 0 || cfg.MaxMessage > DefaultMaxMessage {
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	cfg.MaxFrame = min(cfg.MaxFrame, cfg.MaxMessage)
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = DefaultSendQueue
	}
	if cfg.SendBytes <= 0 {
		cfg.SendBytes = DefaultSendBytes
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxUnauthenticatedPerIP == 0 {
		cfg.MaxUnauthenticatedPerIP = DefaultMaxUnauthenticatedPerIP
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = DefaultMaxConnections()
	}
	if cfg.ClientAddr == nil {
		cfg.ClientAddr = remoteHost
	}
	return &Handler{
		cfg:       cfg,
		open:      open,
		upgrader:  ws.HTTPUpgrader{Timeout: cfg.WriteTimeout},
		metrics:   newMetrics(cfg.Registerer),
		closeWait: closeWait,
		conns:     make(map[uint64]*Conn),
		unauth:    make(map[string]int),
		pending:   make(map[uint64]string),
		drained:   make(chan struct{}),
	}
}

// remoteHost is the host of r.RemoteAddr.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// addrKey is the key a client address is counted under: the address, or
// its /64 for IPv6, which one subscriber usually holds whole.
func addrKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.WithZone("").Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
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
	addr := addrKey(h.cfg.ClientAddr(r))
	if status, reason := h.enter(addr); status != 0 {
		// The refused request's socket must not linger as an idle
		// keep-alive connection: it is a descriptor too.
		w.Header().Set("Connection", "close")
		http.Error(w, reason, status)
		h.metrics.refused(status)
		return
	}
	nc, rw, _, err := h.upgrader.Upgrade(r, w)
	if err != nil {
		// The upgrader has answered the client already.
		if nc != nil {
			nc.Close()
		}
		h.mu.Lock()
		h.forget(addr)
		h.mu.Unlock()
		h.leave(nil)
		h.cfg.Logger.Debug().Err(err).Str("remote", r.RemoteAddr).Msg("websocket upgrade failed")
		return
	}
	// The hijacked reader may hold frames the client sent right after its
	// handshake, so it stays the connection's read buffer.
	h.serve(nc, rw.Reader, version, addr)
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
func (h *Handler) serve(nc net.Conn, br *bufio.Reader, version int, addr string) {
	c := newConn(h, nc, version)
	if br.Buffered() > 0 {
		c.br = br
	}
	if late := h.add(c, addr); late {
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
		Int("frames_dropped", c.dropped).
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

// enter counts a handshake in from the client address key addr, or
// returns the HTTP status and text that refuse it: 503 when Shutdown was
// called or MaxConnections are active, 429 when addr has
// MaxUnauthenticatedPerIP connections that have not authenticated.
func (h *Handler) enter(addr string) (status int, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.down:
		return http.StatusServiceUnavailable, shutdownReason
	case h.cfg.MaxConnections > 0 && h.active >= h.cfg.MaxConnections:
		return http.StatusServiceUnavailable, "too many connections"
	case h.cfg.MaxUnauthenticatedPerIP > 0 && h.unauth[addr] >= h.cfg.MaxUnauthenticatedPerIP:
		return http.StatusTooManyRequests, "too many unauthenticated connections from this address"
	}
	h.active++
	h.unauth[addr]++
	return 0, ""
}

// authenticated stops counting c as unauthenticated, once.
func (h *Handler) authenticated(c *Conn) {
	h.mu.Lock()
	h.authenticatedLocked(c)
	h.mu.Unlock()
}

// authenticatedLocked is authenticated with h.mu held.
func (h *Handler) authenticatedLocked(c *Conn) {
	if addr, ok := h.pending[c.id]; ok {
		delete(h.pending, c.id)
		h.forget(addr)
	}
}

// forget counts one unauthenticated connection from addr out. h.mu must be
// held.
func (h *Handler) forget(addr string) {
	if h.unauth[addr] <= 1 {
		delete(h.unauth, addr)
	} else {
		h.unauth[addr]--
	}
}

// add registers an upgraded connection from the client address key addr,
// as not authenticated, and its socket with the poller when it can be
// watched (else c.rc is cleared); it reports whether Shutdown has begun
// meanwhile.
func (h *Handler) add(c *Conn, addr string) (late bool) {
	h.mu.Lock()
	h.lastID++
	c.id = h.lastID
	h.conns[c.id] = c
	h.pending[c.id] = addr
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

// leave counts out a handshake that failed (c nil) or a connection that
// ended.
func (h *Handler) leave(c *Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c != nil {
		h.authenticatedLocked(c)
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
