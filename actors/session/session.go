// Package session is the actor of one WebSocket connection: the
// heartbeat/auth lifecycle of protocol.md §2.2, the rate limit of §2.7,
// request validation, and the routing of requests to the user and room
// actors that own their state. Answers go out in the order the requests
// arrived: a request that waits on another actor holds back the ones
// behind it, while heartbeat deadlines and rate limits still count at
// arrival.
package session

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/net/gateway"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/protocol"
)

// Conn is the connection as a session sees it: frames out, and close.
// Neither call blocks on the socket.
type Conn interface {
	// Send queues a text frame; false when the outbound queue is full.
	Send(frame []byte) bool
	// SendAll queues the frames of one answer, all or none; false when the
	// queue cannot take them (gateway.Conn.SendAll).
	SendAll(frames [][]byte) bool
	// Close sends what is queued, then a close frame.
	Close(code uint16, reason string)
	// Abort drops what is queued and closes.
	Abort(code uint16, reason string)
}

// AuthNoter is a Conn that wants to know when its session authenticates
// (the gateway counts unauthenticated connections per address); the
// session calls Authenticated once, the first time it is authenticated.
type AuthNoter interface {
	Authenticated()
}

// Config holds the protocol settings. A zero value takes the default its
// field names (package setting has the convention); AuthTimeout and Rate
// are turned off with setting.Off.
type Config struct {
	// HeartbeatInterval is the interval clients keep (protocol.md §2.2);
	// default DefaultHeartbeatInterval (40s).
	HeartbeatInterval time.Duration
	// HeartbeatGrace is the time past the interval before the session is
	// closed with 4003; default DefaultHeartbeatGrace (5s).
	HeartbeatGrace time.Duration
	// AuthTimeout is how long a connection may stay unauthenticated; past
	// it the session closes with 4001. Default DefaultAuthTimeout (30s);
	// setting.Off: no limit.
	AuthTimeout time.Duration
	// Rate is the request frames (pings included) per second a session
	// may send, sustained (protocol.md §2.7); default DefaultRate (10);
	// setting.Off: no limit.
	Rate float64
	// Burst is the request frames a session may send at once; default
	// DefaultBurst (60).
	Burst int
	// Location is the zone of wire times; required (server resolves
	// REWIND_TIMEZONE).
	Location *time.Location
	// RequestTimeout bounds the wait for a room or user actor; past it the
	// request is answered 5001 (outcome unknown) and the session goes on.
	// Default DefaultRequestTimeout (30s).
	RequestTimeout time.Duration
	// StoreTimeout bounds the session's own reads (auth, load, user);
	// default DefaultStoreTimeout (10s).
	StoreTimeout time.Duration
	// SendBytes is the connection's outbound bound in bytes
	// (REWIND_WS_SEND_BYTES; default gateway.DefaultSendBytes, 1 MiB): a
	// load changes page takes at most half of it, so that a page of long
	// messages never overflows the queue by itself (protocol.md §4.1: at
	// most 500 frames, fewer then, with more). An answer's frames do not
	// count against the queue's frame bound (Conn.SendAll).
	SendBytes int
}

// Defaults of Config; REWIND_HEARTBEAT_INTERVAL, REWIND_HEARTBEAT_GRACE,
// REWIND_WS_AUTH_TIMEOUT, REWIND_WS_RATE and REWIND_WS_BURST default to
// them.
const (
	DefaultHeartbeatInterval = 40 * time.Second
	DefaultHeartbeatGrace    = 5 * time.Second
	DefaultAuthTimeout       = 30 * time.Second
	DefaultRate              = 10
	DefaultBurst             = 60
	DefaultRequestTimeout    = 30 * time.Second
	DefaultStoreTimeout      = 10 * time.Second
)

// withDefaults resolves the zero values of c; a setting turned off stays
// negative, which the session reads as off.
func (c Config) withDefaults() Config {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.HeartbeatGrace <= 0 {
		c.HeartbeatGrace = DefaultHeartbeatGrace
	}
	if c.AuthTimeout == 0 {
		c.AuthTimeout = DefaultAuthTimeout
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Burst <= 0 {
		c.Burst = DefaultBurst
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = DefaultStoreTimeout
	}
	if c.SendBytes <= 0 {
		c.SendBytes = gateway.DefaultSendBytes
	}
	return c
}

// Deps are what sessions need; shared by all of them. Make them with
// NewDeps, which resolves the Config.
type Deps struct {
	Config
	Store     persistence.Store
	Tokens    *auth.Tokens
	Directory *directory.Directory
	// NewID makes the ids of new guilds and channels (protocol.md §3).
	NewID func() int64
	Log   zerolog.Logger
	// Draining reports whether the server shuts down (nil: never): its
	// gateway closes every connection with 1001 then, and a frame that no
	// longer fits is not a slow consumer's.
	Draining func() bool
}

// NewDeps returns d with the zero values of its Config resolved.
func NewDeps(d Deps) *Deps {
	d.Config = d.Config.withDefaults()
	return &d
}

const (
	// limitedFor is how long a session may stay over its rate limit.
	limitedFor = 10 * time.Second
	// maxQueued caps requests waiting behind one in flight.
	maxQueued = 1024
)

// Peer feeds what the gateway reads from one connection to its session.
// It applies the rate limit (protocol.md §2.7) as frames arrive, on the
// goroutine reading the connection, so that a ping, which the gateway
// answers there, is counted like a request. The gateway calls it one call
// at a time, so its limiter needs no lock of its own.
type Peer struct {
	root  *actor.RootContext
	pid   *actor.PID
	limit *limiter // nil: no limit
}

// limiter is a session's token bucket with the run of refusals it is in.
type limiter struct {
	bucket       *rate.Limiter
	limitedSince time.Time     // start of the current run of refusals
	lastRefused  time.Time     // the latest refusal
	refusalGap   time.Duration // a pause in refusals this long ends a run
	expired      bool          // the session was told to close
}

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{
		bucket:     rate.NewLimiter(rate.Limit(perSecond), burst),
		refusalGap: max(time.Second, time.Duration(2*float64(time.Second)/perSecond)),
	}
}

// allow counts one frame arriving now: refused when it is over the limit,
// expire when the session has been over it for limitedFor (the first time
// only).
func (l *limiter) allow(now time.Time) (refused, expire bool) {
	if l.bucket.AllowN(now, 1) {
		return false, false
	}
	// A client over the limit still gets a frame through now and then; it
	// stays "over" until its refusals pause.
	if now.Sub(l.lastRefused) > l.refusalGap {
		l.limitedSince = now
	}
	l.lastRefused = now
	if !l.expired && now.Sub(l.limitedSince) >= limitedFor {
		l.expired = true
		return true, true
	}
	return true, false
}

// NewRoot returns the root context to Start sessions from. Its guardian
// stops a session that fails, rather than restarting it with a blank state;
// the session closes its connection (1011) as it stops.
func NewRoot(system *actor.ActorSystem) *actor.RootContext {
	return actor.NewRootContext(system, nil).WithGuardian(
		actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective }))
}

// Start spawns the session of conn, speaking protocol version (1 or 2),
// from a root made by NewRoot.
func Start(root *actor.RootContext, conn Conn, version int, deps *Deps) *Peer {
	pid := root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &Actor{deps: deps, conn: conn, rules: rulesOf(version), channels: map[int64]int64{}}
	}))
	p := &Peer{root: root, pid: pid}
	if deps.Rate > 0 {
		p.limit = newLimiter(deps.Rate, deps.Burst)
	}
	return p
}

// Text, Binary, TooLarge, Ping and Closed implement the gateway's Peer.
func (p *Peer) Text(data []byte) { p.arrive(&inbound{data: data}) }

func (p *Peer) Binary() { p.arrive(&inbound{answer: protocol.ErrBinary}) }

// TooLarge reports a message over the gateway's frame limit, which the
// gateway drained unread: it is answered 1009 in its turn and the session
// goes on (protocol.md §2.1: the shipped client never reconnects).
func (p *Peer) TooLarge() { p.arrive(&inbound{answer: protocol.ErrFrameTooLarge}) }

// arrive counts m against the rate limit and hands it to the session.
func (p *Peer) arrive(m *inbound) {
	m.refused, m.expire = p.allow()
	p.root.Send(p.pid, m)
}

// Ping counts a ping like a request; one over the limit goes unanswered
// (a refusal frame would answer a flood with a flood).
func (p *Peer) Ping() bool {
	refused, expire := p.allow()
	if expire {
		p.root.Send(p.pid, &inbound{expire: true})
	}
	return !refused
}

func (p *Peer) Closed(reason error) { p.root.Send(p.pid, &disconnected{reason: reason}) }

func (p *Peer) allow() (refused, expire bool) {
	if p.limit == nil {
		return false, false
	}
	return p.limit.allow(time.Now())
}

type (
	inbound struct {
		data    []byte
		answer  *protocol.Error // decided as it arrived: binary, too large
		refused bool            // over the rate limit
		expire  bool            // over it for limitedFor: close
	}
	disconnected   struct{ reason error }
	heartbeatCheck struct{}
	authCheck      struct{}
	requestTimeout struct{ seq uint64 }
)

// answered ends the wait for request seq; false when it was answered
// already, by the timeout.
func (a *Actor) answered(seq uint64) bool {
	if seq != a.waiting {
		return false
	}
	a.waitTimer.Stop()
	a.waiting = 0
	return true
}

// queued is a request waiting its turn, or the answer already decided for
// a frame (refused by the rate limit, not JSON, binary).
type queued struct {
	req    protocol.Request
	answer *protocol.Error
	nonce  string
	at     time.Time // when it arrived: a write's time limit counts from here
}

// Actor is one session. Its fields are its own: only Receive touches them
// (timers reach it by message).
type Actor struct {
	deps  *Deps
	conn  Conn
	rules *rules // of the session's protocol version; every frame sent obeys them
	self  *actor.PID
	root  *actor.RootContext

	beaten   bool // the first heartbeat came
	deadline time.Time
	beat     *time.Timer

	authTimer *time.Timer // until the first successful auth; nil after

	user   persistence.User
	authed bool
	noted  bool // authed, and the connection and timer know it

	queue        []queued
	seq          uint64 // numbers requests sent to other actors
	waiting      uint64 // the seq in flight, 0 for none
	waitingNonce string
	// waitingSilent: the request in flight has no answer unless refused
	// (typing): losing its answer, or its timeout, ends it without one.
	waitingSilent bool
	waitTimer     *time.Timer
	// waitingGuild: the request in flight is a guild request, whose
	// answer the session reads to keep channels (guild.go).
	waitingGuild bool
	// channels are the channels of the user's guilds that the session
	// knows of, by channel id, each with its guild (guild.go).
	channels map[int64]int64

	closed bool
}

// Receive implements actor.Actor.
func (a *Actor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx)
	case *actor.Stopping:
		// Reached by a disconnect, or by a failure of this actor.
		a.close(protocol.CloseInternal, protocol.ReasonInternal)
	case *actor.Stopped:
		a.beat.Stop()
		if a.authTimer != nil {
			a.authTimer.Stop()
		}
		if a.waitTimer != nil {
			a.waitTimer.Stop()
		}
		if a.authed {
			a.deps.Directory.Detach(a.user.ID, a.self)
		}
	case *inbound:
		a.arrive(m)
		a.next()
	case *messages.Reply:
		if guild := a.waitingGuild; a.answered(m.Seq) {
			if guild {
				for _, f := range m.Frames {
					a.learnGuildFrame(f)
				}
			}
			a.sendAll(m.Frames)
			if m.User != nil {
				a.send(protocol.Frame("user", a.rules.user(m.User.Wire()), a.waitingNonce))
			}
			a.next()
		}
	case *resolved:
		if a.answered(m.seq) {
			a.authenticated(m)
			a.next()
		}
	case *messages.RequestLost:
		// The grain's member died with it, or the grain was not found
		// (actors/directory): as at the timeout, but sooner.
		if a.answered(m.Seq) {
			a.lost()
			a.next()
		}
	case *requestTimeout:
		if m.seq == a.waiting {
			// The request may have been applied, or may be yet.
			a.waiting = 0
			a.lost()
			a.next()
		}
	case *messages.Push:
		if f := a.rules.event(m); f != nil {
			if m.Kind == messages.EventGuild {
				a.learnGuildFrame(f)
			}
			a.send(f)
		}
	case *messages.CloseSession:
		a.close(uint16(m.Code), m.Reason)
	case *heartbeatCheck:
		if left := time.Until(a.deadline); left > 0 {
			a.beat.Reset(left)
		} else {
			a.close(protocol.CloseHeartbeat, protocol.ReasonHeartbeat)
		}
	case *authCheck:
		if !a.authed {
			a.close(protocol.CloseAuthTimeout, protocol.ReasonAuthTimeout)
		}
	case *disconnected:
		a.closed = true // the connection is gone already
		ctx.Stop(a.self)
	}
	if a.authed && !a.noted {
		// However the session came to be authenticated: the timer stops
		// and the connection stops counting as unauthenticated.
		a.noted = true
		if a.authTimer != nil {
			a.authTimer.Stop()
			a.authTimer = nil
		}
		if n, ok := a.conn.(AuthNoter); ok {
			n.Authenticated()
		}
	}
}

func (a *Actor) start(ctx actor.Context) {
	a.self, a.root = ctx.Self(), ctx.ActorSystem().Root
	d := a.deps.HeartbeatInterval + a.deps.HeartbeatGrace
	a.deadline = time.Now().Add(d)
	self, root := a.self, a.root
	a.beat = time.AfterFunc(d, func() { root.Send(self, &heartbeatCheck{}) })
	if a.deps.AuthTimeout > 0 {
		a.authTimer = time.AfterFunc(a.deps.AuthTimeout, func() { root.Send(self, &authCheck{}) })
	}
}

// arrive applies the rate limit (counted by the Peer) and the heartbeat
// deadline to a frame as it comes in, and queues it.
func (a *Actor) arrive(m *inbound) {
	if a.closed {
		return
	}
	if m.expire {
		a.close(protocol.CloseRateLimited, protocol.ReasonRateLimit)
		return
	}
	q := queued{at: time.Now(), answer: m.answer}
	if q.answer == nil {
		// A frame that fails to decode leaves q.req and q.nonce empty.
		q.req, q.answer = protocol.DecodeRequest(m.data)
		q.nonce = q.req.Nonce
	}
	if m.refused {
		q.answer = protocol.ErrRateLimited
	}
	if q.answer == nil && q.req.Type == "heartbeat" {
		a.beaten = true
		d := a.deps.HeartbeatInterval + a.deps.HeartbeatGrace
		a.deadline = time.Now().Add(d)
		a.beat.Reset(d)
	}
	if len(a.queue) >= maxQueued {
		a.close(protocol.CloseRateLimited, protocol.ReasonRateLimit)
		return
	}
	a.queue = append(a.queue, q)
}

// next handles queued requests until one has to wait for another actor.
func (a *Actor) next() {
	for a.waiting == 0 && len(a.queue) > 0 && !a.closed {
		q := a.queue[0]
		a.queue[0] = queued{}
		a.queue = a.queue[1:]
		if q.answer != nil {
			a.send(protocol.ErrorFrame(q.answer, q.nonce))
			continue
		}
		if err := a.handle(q.req, q.at); err != nil {
			a.send(protocol.ErrorFrame(err, q.req.Nonce))
		}
	}
	if len(a.queue) == 0 {
		a.queue = nil
	}
}

// lost answers the request whose answer did not come: 5001, outcome
// unknown, unless it is one answered only when refused.
func (a *Actor) lost() {
	if !a.waitingSilent {
		a.send(protocol.ErrorFrame(protocol.ErrUnknownResult, a.waitingNonce))
	}
}

// awaitSilent is await for a request that has no answer unless it is
// refused: the actor it goes to answers a Reply without frames otherwise,
// which ends the wait as any Reply does, and a lost answer ends it without
// a frame.
func (a *Actor) awaitSilent(nonce string) uint64 {
	seq := a.await(nonce)
	a.waitingSilent = true
	return seq
}

// await marks a request as sent to another actor and returns its number.
func (a *Actor) await(nonce string) uint64 {
	a.seq++
	a.waiting, a.waitingNonce, a.waitingSilent, a.waitingGuild = a.seq, nonce, false, false
	seq, self, root := a.seq, a.self, a.root
	a.waitTimer = time.AfterFunc(a.deps.RequestTimeout, func() { root.Send(self, &requestTimeout{seq: seq}) })
	return seq
}

// send queues a frame; a full queue means a slow consumer.
func (a *Actor) send(frame []byte) {
	if a.closed {
		return
	}
	if !a.conn.Send(frame) {
		a.slow()
	}
}

// sendAll queues the frames of one answer (a page of history or changes
// is bounded by its request, not by the queue's frame count).
func (a *Actor) sendAll(frames [][]byte) {
	switch {
	case a.closed:
	case len(frames) == 1:
		a.send(frames[0])
	case !a.conn.SendAll(frames):
		a.slow()
	}
}

// slow closes a slow consumer: its queue overflowed.
func (a *Actor) slow() {
	a.closed = true
	if a.deps.Draining != nil && a.deps.Draining() {
		// The connection is closing with 1001 already.
		a.deps.Log.Debug().Int64("user", a.user.ID).Msg("session: closed by the shutdown (1001)")
		return
	}
	a.deps.Log.Info().Int64("user", a.user.ID).Msg("session: slow consumer")
	a.conn.Abort(protocol.CloseSlow, protocol.ReasonSlow)
}

// close ends the session with code; the gateway then reports it gone.
func (a *Actor) close(code uint16, reason string) {
	if !a.closed {
		a.closed = true
		a.conn.Close(code, reason)
	}
}
