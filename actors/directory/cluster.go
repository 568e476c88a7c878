package directory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/rs/zerolog"

	"github.com/rewind-chat/rewind/messages"
)

// The grain kinds of a cluster (cluster.Config.Kinds): a user grain's
// identity is the user id in decimal (UserIdentity), a room grain's the
// room's two member ids, "low-high" (RoomIdentity; a channel's is
// "0-<channel id>"), a guild grain's "g" and the guild id (GuildIdentity).
const (
	UserKind  = "user"
	RoomKind  = "room"
	GuildKind = "guild"
)

// GuildIdentity is the grain identity of guild id.
func GuildIdentity(id int64) string { return "g" + strconv.FormatInt(id, 10) }

// ParseGuildIdentity reads GuildIdentity.
func ParseGuildIdentity(s string) (int64, error) {
	if !strings.HasPrefix(s, "g") {
		return 0, fmt.Errorf("guild identity %q: want g<id>", s)
	}
	return strconv.ParseInt(s[1:], 10, 64)
}

// DefaultReattach is the default of ClusterConfig.Reattach: the safety
// net's interval. A node re-attaches a user's sessions at once when the
// user's grain may have moved or restarted (a member left, leaves or
// joined and the identity is now placed elsewhere; its
// ActivationTerminated); the periodic re-attach only covers what no event
// tells (protoactor-go#799: two activations of one identity).
const DefaultReattach = 30 * time.Second

// ReattachForget is how many re-attach intervals a user grain keeps a
// session that was not attached again: a session of a node that died
// without detaching it is forgotten after that.
const ReattachForget = 3

// DefaultLookupTimeout is the default of ClusterConfig.LookupTimeout.
const DefaultLookupTimeout = 10 * time.Second

// activatorPrefix is how disthash names the grains it spawns:
// partition-activator/<identity>$<n>.
const activatorPrefix = activatorName + "/"

// activatorName is the name of disthash's placement actor on each member.
const activatorName = "partition-activator"

// UserIdentity is the grain identity of user id.
func UserIdentity(id int64) string { return strconv.FormatInt(id, 10) }

// RoomIdentity is the grain identity of room k.
func RoomIdentity(k messages.RoomKey) string { return fmt.Sprintf("%d-%d", k.Low, k.High) }

// ParseUserIdentity reads UserIdentity.
func ParseUserIdentity(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }

// ParseRoomIdentity reads RoomIdentity.
func ParseRoomIdentity(s string) (messages.RoomKey, error) {
	// The ids are positive snowflakes, but a made-up chat_id can make a
	// negative one: split at the '-' after the first character.
	i := strings.IndexByte(s[min(1, len(s)):], '-') + min(1, len(s))
	if i <= 0 || i >= len(s) {
		return messages.RoomKey{}, fmt.Errorf("room identity %q: want low-high", s)
	}
	low, err1 := strconv.ParseInt(s[:i], 10, 64)
	high, err2 := strconv.ParseInt(s[i+1:], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return messages.RoomKey{}, fmt.Errorf("room identity %q: %w", s, err)
	}
	return messages.RoomKey{Low: low, High: high}, nil
}

// ClusterConfig is what a clustered directory adds to Config.
type ClusterConfig struct {
	// Reattach is how often this node tells the user grains of its
	// sessions again, besides at once on a move (DefaultReattach);
	// default DefaultReattach (30s). A user grain forgets
	// a session not attached again within ReattachForget intervals.
	Reattach time.Duration
	// LookupTimeout bounds how long messages to a grain wait for its
	// lookup before they are dropped (and logged); default
	// DefaultLookupTimeout (10s).
	LookupTimeout time.Duration
	Log           zerolog.Logger
}

// grains is the cluster backend of a Directory: it finds grains by kind
// and identity. Lookups (Cluster.Get, which may wait up to 5 s) run in a
// goroutine, never under a lock or in an actor's Receive: messages to a
// grain whose PID is not known yet queue, in order, behind one lookup.
//
// A PID it knows stops being used when the grain's activation ends:
// protoactor broadcasts ActivationTerminated to every member when a grain
// stops (idle passivation, a move, a failure), and a member that leaves
// takes its PIDs with it. A message that still reaches a stopped grain
// (sent before that news arrived) becomes a dead letter on the node it
// reached, and that node sends it again by identity, which activates the
// grain afresh: no message is lost to a stale PID.
type grains struct {
	root *actor.RootContext
	dir  *Directory
	cfg  ClusterConfig

	ready   chan struct{} // closed by Join
	cluster *pcluster.Cluster
	sub     *eventstream.Subscription
	stop    chan struct{} // closed by Close

	mu     sync.Mutex
	routes map[string]*route // by kind/identity
	closed bool
	// self is this node's remote address; members the latest topology's
	// members (nil before the first). away holds the members that leave
	// (MemberLeaving; self after Leave), until a topology no longer
	// lists them: lookups place identities over the other members, and
	// nothing is routed to a grain on one of them. leaving is set by
	// Leave.
	self    string
	members pcluster.Members
	away    map[string]bool
	leaving atomic.Bool
	// asked holds the requests sent to grains on other members, by
	// member address, oldest first, for AskedMemory: if the member leaves
	// without handing them on (it died), they are answered lost.
	asked map[string][]asked

	// users are this node's user grains, told of the members that leave
	// (messages.MembersLeft).
	usersMu sync.Mutex
	users   map[int64]*actor.PID

	// events holds what the event stream published, for the one goroutine
	// that handles it: subscribers run on the publisher's goroutine, which
	// may hold mu (a send to a dead local PID publishes a dead letter).
	evMu   sync.Mutex
	events []any
	wake   chan struct{}
}

// route is one grain: its PID once looked up, and the messages waiting
// for the lookup.
type route struct {
	kind, identity string
	pid            *actor.PID
	pending        []any
	resolving      bool
}

// users of a clustered directory: this node's sessions of each user.
// (Directory.gone holds those whose last session here ended lately.)
type localUser struct {
	sessions map[string]localSession // by PID id
}

type localSession struct {
	pid   *actor.PID
	since int64 // SessionAttached.SinceUnixNano
}

// NewClustered returns an empty directory whose user and room actors are
// cluster grains (UserKind, RoomKind). Config.User and Config.Room are not
// used (the grains' producers are the cluster kinds'). Call Join once the
// node's cluster has started; messages sent before wait for it.
// MaxSessions is enforced per node.
func NewClustered(root *actor.RootContext, cfg Config, ccfg ClusterConfig) *Directory {
	d := New(root, cfg)
	if ccfg.Reattach <= 0 {
		ccfg.Reattach = DefaultReattach
	}
	if ccfg.LookupTimeout <= 0 {
		ccfg.LookupTimeout = DefaultLookupTimeout
	}
	d.grains = &grains{
		root: root, dir: d, cfg: ccfg, ready: make(chan struct{}), stop: make(chan struct{}),
		routes: map[string]*route{}, wake: make(chan struct{}, 1), away: map[string]bool{}, users: map[int64]*actor.PID{},
		asked: map[string][]asked{},
	}
	d.local = map[int64]*localUser{}
	d.gone = map[int64]time.Time{}
	return d
}

// Join gives a clustered directory its started cluster: lookups begin,
// and so does the re-attach of this node's sessions.
func (d *Directory) Join(c *pcluster.Cluster) {
	g := d.grains
	g.cluster = c
	g.self = c.ActorSystem.Address()
	g.sub = c.ActorSystem.EventStream.Subscribe(g.publish)
	// The members as of now: the topologies of the nodes that joined
	// before this subscription came and went, and without members the
	// placement before the next one (a member killed) would be unknown,
	// and reattachMoved would re-attach nobody (docs/benchmarks.md §8:
	// ~13 s without live events to the users whose grain had lived on a
	// killed node).
	g.mu.Lock()
	if g.members == nil {
		g.members = c.MemberList.Members().Members()
	}
	g.mu.Unlock()
	// The other nodes' Leave tells this node's directory through it.
	if _, err := g.root.SpawnNamed(actor.PropsFromFunc(g.receive), DirectoryActor); err != nil {
		g.cfg.Log.Error().Err(err).Msg("directory: spawning its actor")
	}
	close(g.ready)
	go g.handleEvents()
	go d.reattach()
}

// Close stops a clustered directory's lookups, re-attach and redelivery:
// messages sent after it are dropped. The server closes it as the node
// leaves.
func (d *Directory) Close() {
	g := d.grains
	if g == nil {
		return
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	g.mu.Unlock()
	close(g.stop)
	if g.sub != nil {
		g.cluster.ActorSystem.EventStream.Unsubscribe(g.sub)
	}
}

// DirectoryActor is the name of each node's directory actor, which the
// other nodes' Leave tells that they leave (messages.MemberLeaving).
const DirectoryActor = "rewind-directory"

// LeaveTimeout bounds how long Leave waits for each other node's answer.
const LeaveTimeout = 2 * time.Second

// Leave is the first step of this node's graceful leave, before its
// member key leaves etcd (cluster.Node.Leave). From now on this node
// routes nothing to its own grains: a lookup places the identity over the
// other members, as they will once they see the leave, and asks the
// owner's placement actor directly; a message that reaches one of this
// node's grains is handed there by the grain (Leaving), and one that
// reaches a stopped grain (a dead letter, or left in its mailbox) is sent
// there again.
//
// Then it tells every other node's directory (MemberLeaving), which does
// the same for this node's address, and waits for their answers (within
// LeaveTimeout each). An answer travels on the stream that carried what
// its node sent here before, so once all have answered nothing more is
// on its way to this node's grains: when the others then see the leave
// and close their connections to it, they lose nothing.
//
// Last it waits, until ctx ends, for this node's actors to answer what
// they had started (Working): a grain that stops hands on what it has not
// started, but a write already at the writer can only be answered by the
// room that handed it there, and for a send without a nonce, which no
// other activation can retry, that answer would be 5001.
func (d *Directory) Leave(ctx context.Context) {
	g := d.grains
	if g == nil {
		return
	}
	g.mu.Lock()
	g.leaving.Store(true)
	g.awayLocked(g.self)
	members := g.members
	g.mu.Unlock()
	if members == nil {
		members = g.cluster.MemberList.Members().Members()
	}
	var wg sync.WaitGroup
	for _, m := range members {
		if m.Address() == g.self {
			continue
		}
		wg.Go(func() {
			_, err := g.root.RequestFuture(actor.NewPID(m.Address(), DirectoryActor),
				&messages.MemberLeaving{Address: g.self}, LeaveTimeout).Result()
			if err != nil {
				g.cfg.Log.Warn().Err(err).Str("member", m.Address()).Msg("directory: a member did not answer this node's leave")
			}
		})
	}
	wg.Wait()
	if err := d.settle(ctx); err != nil {
		g.cfg.Log.Warn().Err(err).Int64("working", d.working.Load()).Msg("directory: leaving with requests not answered yet")
	}
}

// settleTick is how often settle looks at the count of what is in flight:
// a write commits in milliseconds, and a leave happens once.
const settleTick = 2 * time.Millisecond

// settle waits until this node's actors have answered all they started,
// or ctx ends.
func (d *Directory) settle(ctx context.Context) error {
	t := time.NewTicker(settleTick)
	defer t.Stop()
	for d.working.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Working adds n (negative when answered) to what this node's actors have
// started and not answered yet: a room's writes at the writer, a guild's
// and a user's queued operations. A graceful leave waits for none to be
// left (Leave); a node alone never leaves, and counts nothing.
func (d *Directory) Working(n int) {
	if d.grains != nil {
		d.working.Add(int64(n))
	}
}

// receive is the directory actor's: another node leaves, asks which
// users are online here, or pushes an event to this node's sessions of
// some users.
func (g *grains) receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.PresenceQuery:
		ctx.Respond(&messages.PresenceAnswer{Online: g.dir.onlineHere(m.UserIds)})
	case *messages.PushToUsers:
		g.dir.pushHere(m.UserIds, &messages.Push{Frame: m.Frame, Kind: m.Kind})
	case *messages.MemberLeaving:
		g.mu.Lock()
		before := g.placementLocked()
		g.awayLocked(m.Address)
		after := g.placementLocked()
		g.mu.Unlock()
		g.dir.reattachMoved(before, after)
		g.cfg.Log.Info().Str("member", m.Address).Msg("directory: a member leaves")
		ctx.Respond(&messages.MemberLeavingSeen{})
	}
}

// others are the addresses of the cluster's other members (none before
// the cluster has started).
func (g *grains) others() []string {
	select {
	case <-g.ready:
	default:
		return nil
	}
	g.mu.Lock()
	members := g.members
	g.mu.Unlock()
	if members == nil {
		members = g.cluster.MemberList.Members().Members()
	}
	out := make([]string, 0, len(members))
	for _, m := range members {
		if m.Address() != g.self {
			out = append(out, m.Address())
		}
	}
	return out
}

// onlineHere is the part of ids online on this node: with a session here,
// or whose last session here ended within the offline delay.
func (d *Directory) onlineHere(ids []int64) []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.forgetGone(now)
	var out []int64
	for _, id := range ids {
		if d.local[id] != nil {
			out = append(out, id)
		} else if _, ok := d.gone[id]; ok {
			out = append(out, id)
		}
	}
	return out
}

// forgetGone drops the users whose last session here ended longer than
// the offline delay ago. Lock must be held.
func (d *Directory) forgetGone(now time.Time) {
	n := 0
	for _, l := range d.goneList {
		if now.Sub(l.at) < d.cfg.OfflineDelay {
			break
		}
		if d.gone[l.user].Equal(l.at) {
			delete(d.gone, l.user)
		}
		n++
	}
	if n > 0 {
		clear(d.goneList[:n])
		d.goneList = d.goneList[n:]
		if len(d.goneList) == 0 {
			d.goneList = nil
		}
	}
}

// pushHere sends push to this node's sessions of ids.
func (d *Directory) pushHere(ids []int64, push *messages.Push) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		if u := d.local[id]; u != nil {
			for _, s := range u.sessions {
				d.root.Send(s.pid, push)
			}
		}
	}
}

func (d *Directory) pushToUsersClustered(ids []int64, frame []byte, kind messages.EventKind) {
	g := d.grains
	msg := &messages.PushToUsers{UserIds: ids, Frame: frame, Kind: kind}
	for _, address := range g.others() {
		g.root.Send(actor.NewPID(address, DirectoryActor), msg)
	}
	d.pushHere(ids, &messages.Push{Frame: frame, Kind: kind})
}

func (d *Directory) onlineAmongClustered(ids []int64) map[int64]bool {
	g := d.grains
	others := g.others()
	answers := make([][]int64, len(others)+1)
	var wg sync.WaitGroup
	for i, address := range others {
		wg.Go(func() {
			res, err := g.root.RequestFuture(actor.NewPID(address, DirectoryActor),
				&messages.PresenceQuery{UserIds: ids}, StatusTimeout).Result()
			if a, ok := res.(*messages.PresenceAnswer); ok && err == nil {
				answers[i] = a.Online
			} else {
				g.cfg.Log.Debug().Err(err).Str("member", address).Msg("directory: a member did not answer a presence query; its users count as offline")
			}
		})
	}
	answers[len(others)] = d.onlineHere(ids)
	wg.Wait()
	online := map[int64]bool{}
	for _, a := range answers {
		for _, id := range a {
			online[id] = true
		}
	}
	return online
}

// awayLocked marks the member at address as leaving and forgets the
// routes to its grains. Its grains hand on what they were asked, so the
// requests sent there are not answered lost. Lock must be held.
func (g *grains) awayLocked(address string) {
	g.away[address] = true
	delete(g.asked, address)
	for k, r := range g.routes {
		if r.pid != nil && r.pid.Address == address {
			delete(g.routes, k)
		}
	}
}

// Leaving reports whether Leave was called: a grain then forwards what
// it has not taken on yet to its identity (through the directory, which
// routes it to another node) rather than start it here.
func (d *Directory) Leaving() bool {
	return d.grains != nil && d.grains.leaving.Load()
}

// Reattach is the interval at which this node re-attaches its sessions
// (0 for a directory that is not clustered).
func (d *Directory) Reattach() time.Duration {
	if d.grains == nil {
		return 0
	}
	return d.grains.cfg.Reattach
}

// send sends msg to the grain, looking it up first when its PID is not
// known. It never blocks.
func (g *grains) send(kind, identity string, msg any) {
	k := kind + "/" + identity
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	r := g.routes[k]
	if r == nil {
		r = &route{kind: kind, identity: identity}
		g.routes[k] = r
	}
	if r.pid != nil && g.away[r.pid.Address] {
		r.pid = nil // its member leaves since this route was made
	}
	if r.pid != nil {
		g.root.Send(r.pid, msg)
		g.trackLocked(r.pid.Address, msg)
		return
	}
	r.pending = append(r.pending, msg)
	if !r.resolving {
		r.resolving = true
		go g.resolve(k, r)
	}
}

// resolve looks r up, retrying within LookupTimeout, then sends it what
// waited.
func (g *grains) resolve(k string, r *route) {
	select {
	case <-g.ready:
	case <-g.stop:
		return
	}
	deadline := time.Now().Add(g.cfg.LookupTimeout)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		if pid := g.lookup(r.kind, r.identity); pid != nil && g.found(r, pid) {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-g.stop:
			return
		case <-time.After(wait):
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r.resolving = false
	g.cfg.Log.Warn().Str("kind", r.kind).Str("identity", r.identity).Int("dropped", len(r.pending)).
		Msg("directory: grain lookup failed")
	for _, m := range r.pending {
		if a, ok := request(m); ok {
			g.lose(a)
		}
	}
	r.pending = nil
	if g.routes[k] == r {
		delete(g.routes, k)
	}
}

// found makes pid r's PID and sends it what waited, unless pid is one not
// to use (usable); it reports whether it did.
func (g *grains) found(r *route, pid *actor.PID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return true
	}
	if !g.usable(pid) {
		return false
	}
	r.resolving = false
	r.pid = pid
	for i, m := range r.pending {
		g.root.Send(pid, m)
		g.trackLocked(pid.Address, m)
		r.pending[i] = nil
	}
	r.pending = nil
	return true
}

// usable reports whether a PID a lookup found may be used: not one on a
// member that left since the lookup began (the latest topology does not
// list it), nor one on a member that leaves (this one too). Lock must be
// held.
func (g *grains) usable(pid *actor.PID) bool {
	if g.away[pid.Address] {
		return false
	}
	return g.members == nil || slices.ContainsFunc(g.members, func(m *pcluster.Member) bool { return m.Address() == pid.Address })
}

// lookup finds the grain's PID, activating it where it is placed (over
// the other members while this node leaves); nil when that failed.
func (g *grains) lookup(kind, identity string) *actor.PID {
	g.mu.Lock()
	var away map[string]bool
	if len(g.away) > 0 {
		away = maps.Clone(g.away)
	}
	members := g.members
	g.mu.Unlock()
	if away != nil {
		return g.lookupElsewhere(kind, identity, away, members)
	}
	return g.cluster.Get(identity, kind)
}

// lookupElsewhere is disthash's lookup over the members but those away:
// it asks the placement actor of the identity's owner among them to
// activate it. (disthash's own would still place on them until etcd
// tells of their leave, and a leaving node's own is never told.)
func (g *grains) lookupElsewhere(kind, identity string, away map[string]bool, members pcluster.Members) *actor.PID {
	if members == nil {
		members = g.cluster.MemberList.Members().Members()
	}
	others := make(pcluster.Members, 0, len(members))
	for _, m := range members {
		if !away[m.Address()] {
			others = append(others, m)
		}
	}
	rdv := pcluster.NewRendezvous()
	rdv.UpdateMembers(others)
	ci := pcluster.NewClusterIdentity(identity, kind)
	owner := rdv.GetByClusterIdentity(ci)
	if owner == "" {
		return nil
	}
	res, err := g.root.RequestFuture(actor.NewPID(owner, activatorName), &pcluster.ActivationRequest{ClusterIdentity: ci}, 5*time.Second).Result()
	if err != nil {
		return nil
	}
	if a, ok := res.(*pcluster.ActivationResponse); ok {
		return a.Pid
	}
	return nil
}

// forget drops the route of kind/identity if it is pid.
func (g *grains) forget(kind, identity string, pid *actor.PID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := kind + "/" + identity
	if r := g.routes[k]; r != nil && r.pid != nil && r.pid.Equal(pid) {
		delete(g.routes, k)
	}
}

// forgetAddress drops the routes to grains on a member that left.
func (g *grains) forgetAddress(address string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k, r := range g.routes {
		if r.pid != nil && r.pid.Address == address {
			delete(g.routes, k)
		}
	}
}

// publish takes an event of the stream for handleEvents.
func (g *grains) publish(ev any) {
	switch e := ev.(type) {
	case *pcluster.ActivationTerminated, *pcluster.ClusterTopology:
	case *actor.DeadLetterEvent:
		if e.Sender != nil || e.PID == nil || !strings.HasPrefix(e.PID.Id, activatorPrefix) {
			return
		}
	default:
		return
	}
	g.evMu.Lock()
	g.events = append(g.events, ev)
	g.evMu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// handleEvents forgets the PIDs of grains that stopped or moved, and
// sends the messages that reached a stopped grain again, by identity.
func (g *grains) handleEvents() {
	for {
		select {
		case <-g.stop:
			return
		case <-g.wake:
		}
		g.evMu.Lock()
		events := g.events
		g.events = nil
		g.evMu.Unlock()
		for _, ev := range events {
			switch e := ev.(type) {
			case *pcluster.ActivationTerminated:
				if id := e.GetClusterIdentity(); id != nil {
					g.forget(id.Kind, id.Identity, e.Pid)
					if id.Kind == UserKind {
						// The grain stopped: its next activation knows
						// the sessions of this node only once told.
						if uid, err := ParseUserIdentity(id.Identity); err == nil {
							g.dir.reattachUser(uid)
						}
					}
				}
			case *pcluster.ClusterTopology:
				g.mu.Lock()
				before := g.placementLocked()
				var lost []asked
				for _, m := range e.Left {
					if !g.away[m.Address()] {
						// It left without handing on what it was asked.
						lost = append(lost, g.asked[m.Address()]...)
					}
					delete(g.asked, m.Address())
				}
				g.members = e.Members
				for _, m := range e.Left {
					if m.Address() != g.self {
						delete(g.away, m.Address()) // gone: the member check covers it
					}
				}
				after := g.placementLocked()
				g.mu.Unlock()
				for _, m := range e.Left {
					g.forgetAddress(m.Address())
				}
				g.dir.reattachMoved(before, after)
				g.tellUsersLeft(e.Left)
				if len(lost) > 0 {
					g.cfg.Log.Warn().Int("requests", len(lost)).
						Msg("directory: requests to grains of a member that left answered lost")
				}
				for _, a := range lost {
					g.lose(a)
				}
			case *actor.DeadLetterEvent:
				g.redeliver(e)
			}
		}
	}
}

// tellUsersLeft tells this node's user grains of the members that left
// but this node: a grain forgets its sessions there at once (and tells
// the friends offline after the delay if none is left) rather than when
// they are not attached again (ReattachForget intervals).
func (g *grains) tellUsersLeft(left []*pcluster.Member) {
	var addrs []string
	for _, m := range left {
		if m.Address() != g.self {
			addrs = append(addrs, m.Address())
		}
	}
	if len(addrs) == 0 {
		return
	}
	g.usersMu.Lock()
	pids := slices.Collect(maps.Values(g.users))
	g.usersMu.Unlock()
	msg := &messages.MembersLeft{Addresses: addrs}
	for _, pid := range pids {
		g.root.Send(pid, msg)
	}
}

// UserGrainStarted records pid as this node's grain of user id, until
// UserStopped.
func (d *Directory) UserGrainStarted(id int64, pid *actor.PID) {
	if g := d.grains; g != nil {
		g.usersMu.Lock()
		g.users[id] = pid
		g.usersMu.Unlock()
	}
}

// redeliver sends a message that reached a stopped grain to the grain's
// identity again.
func (g *grains) redeliver(e *actor.DeadLetterEvent) {
	identity := strings.TrimPrefix(e.PID.Id, activatorPrefix)
	if i := strings.LastIndexByte(identity, '$'); i >= 0 {
		identity = identity[:i]
	}
	kind := UserKind
	if _, err := ParseUserIdentity(identity); err != nil {
		kind = RoomKind
		if _, err := ParseGuildIdentity(identity); err == nil {
			kind = GuildKind
		}
	}
	switch e.Message.(type) {
	case *messages.ChatWrite, *messages.Typing, *messages.FriendshipChanged, *messages.GuildOp, *messages.ChannelMembership,
		*messages.Deliver, *messages.SessionAttached, *messages.SessionDetached,
		*messages.Logout, *messages.FriendOp, *messages.SetProfile, *messages.OfflinePending:
	default:
		return // protoactor's own, or a grain's message to itself
	}
	g.forget(kind, identity, e.PID)
	g.cfg.Log.Debug().Str("kind", kind).Str("identity", identity).Str("message", fmt.Sprintf("%T", e.Message)).
		Msg("directory: message to a stopped grain sent again")
	g.send(kind, identity, e.Message)
}

// The clustered versions of Directory's methods.

func (d *Directory) attachClustered(userID int64, since time.Time, session *actor.PID, friends []int64) AttachResult {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.forgetLogouts(now)
	if at, ok := d.loggedOut[userID]; (ok && !at.Before(since)) || now.Sub(since) >= LogoutMemory {
		return LoggedOut
	}
	u := d.local[userID]
	if u == nil {
		u = &localUser{sessions: map[string]localSession{}}
		d.local[userID] = u
	}
	if _, ok := u.sessions[session.Id]; ok {
		return Attached
	}
	if d.cfg.MaxSessions > 0 && len(u.sessions) >= d.cfg.MaxSessions {
		if len(u.sessions) == 0 {
			delete(d.local, userID)
		}
		return TooManySessions
	}
	s := localSession{pid: session, since: since.UnixNano()}
	u.sessions[session.Id] = s
	d.grains.send(UserKind, UserIdentity(userID), &messages.SessionAttached{Session: session, SinceUnixNano: s.since, Friends: friends})
	return Attached
}

func (d *Directory) detachClustered(userID int64, session *actor.PID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	u := d.local[userID]
	if u == nil {
		return
	}
	if _, ok := u.sessions[session.Id]; !ok {
		return
	}
	delete(u.sessions, session.Id)
	if len(u.sessions) == 0 {
		delete(d.local, userID)
		now := time.Now()
		d.forgetGone(now)
		d.gone[userID] = now
		d.goneList = append(d.goneList, logout{userID, now})
	}
	d.grains.send(UserKind, UserIdentity(userID), &messages.SessionDetached{Session: session})
}

func (d *Directory) logoutClustered(userID int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.forgetLogouts(now)
	d.loggedOut[userID] = now
	d.logouts = append(d.logouts, logout{userID, now})
	// The grain closes the user's sessions on every node, and refuses
	// those whose token check began before now.
	d.grains.send(UserKind, UserIdentity(userID), &messages.Logout{AtUnixNano: now.UnixNano()})
}

// AskedMemory is how long the directory keeps a request it sent to a
// grain on another member, to answer it lost if that member dies: a
// session's default RequestTimeout, past which it answered 5001 itself.
const AskedMemory = 30 * time.Second

// asked is a request sent to a grain: the session waiting for its answer
// and the request's seq; for a Deliver, the echo its room sent after the
// commit, which is the answer.
type asked struct {
	session *actor.PID
	seq     uint64
	echo    *messages.Reply
	at      time.Time
}

// request is the asked of msg, if it is a request a session waits for.
func request(msg any) (asked, bool) {
	switch m := msg.(type) {
	case *messages.ChatWrite:
		return asked{session: m.Session, seq: m.Seq}, m.Session != nil
	case *messages.Typing:
		return asked{session: m.Session, seq: m.Seq}, m.Session != nil
	case *messages.FriendOp:
		return asked{session: m.Session, seq: m.Seq}, m.Session != nil
	case *messages.SetProfile:
		return asked{session: m.Session, seq: m.Seq}, m.Session != nil
	case *messages.Deliver:
		return asked{session: m.Except, echo: m.Echo}, m.Echo != nil && m.Except != nil
	}
	return asked{}, false
}

// trackLocked keeps msg, sent to a grain at address, if it is a request
// and address is another member's; it forgets those older than
// AskedMemory. Lock must be held.
func (g *grains) trackLocked(address string, msg any) {
	if address == g.self {
		return // this node's grains die only with its sessions
	}
	a, ok := request(msg)
	if !ok {
		return
	}
	a.at = time.Now()
	l := g.asked[address]
	i := 0
	for i < len(l) && a.at.Sub(l[i].at) > AskedMemory {
		i++
	}
	clear(l[:i])
	g.asked[address] = append(l[i:], a)
}

// lose answers a request whose grain is lost: a Deliver's echo (its write
// committed) goes to its session; any other request is answered lost
// (RequestLost: 5001, outcome unknown). A session that was answered
// already ignores it.
func (g *grains) lose(a asked) {
	if a.echo != nil {
		g.root.Send(a.session, a.echo)
		return
	}
	g.root.Send(a.session, &messages.RequestLost{Seq: a.seq})
}

// placement is where lookups place identities: over the members but
// those away.
type placement struct {
	rdv *pcluster.Rendezvous
}

// owner is the member address a user identity is placed on ("" when none).
func (p placement) owner(identity string) string {
	if p.rdv == nil {
		return ""
	}
	return p.rdv.GetByClusterIdentity(&pcluster.ClusterIdentity{Identity: identity, Kind: UserKind})
}

// placementLocked is the current placement; its zero value before the
// first topology. Lock must be held.
func (g *grains) placementLocked() placement {
	if g.members == nil {
		return placement{}
	}
	others := make(pcluster.Members, 0, len(g.members))
	for _, m := range g.members {
		if !g.away[m.Address()] {
			others = append(others, m)
		}
	}
	rdv := pcluster.NewRendezvous()
	rdv.UpdateMembers(others)
	return placement{rdv: rdv}
}

// reattachMoved re-attaches this node's sessions of every user whose
// identity before placed on another member than after does: its grain
// moves, and its next activation knows no session. Nothing before the
// first topology (this node has no session yet then).
func (d *Directory) reattachMoved(before, after placement) {
	if before.rdv == nil || after.rdv == nil {
		return
	}
	g := d.grains
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for id, u := range d.local {
		identity := UserIdentity(id)
		if before.owner(identity) == after.owner(identity) {
			continue
		}
		n++
		for _, s := range u.sessions {
			g.send(UserKind, identity, &messages.SessionAttached{Session: s.pid, SinceUnixNano: s.since, Reattach: true})
		}
	}
	if n > 0 {
		g.cfg.Log.Debug().Int("users", n).Msg("directory: sessions re-attached to moved user grains")
	}
}

// reattachUser re-attaches this node's sessions of userID.
func (d *Directory) reattachUser(userID int64) {
	g := d.grains
	d.mu.Lock()
	defer d.mu.Unlock()
	if u := d.local[userID]; u != nil {
		identity := UserIdentity(userID)
		for _, s := range u.sessions {
			g.send(UserKind, identity, &messages.SessionAttached{Session: s.pid, SinceUnixNano: s.since, Reattach: true})
		}
	}
}

// reattach tells the user grains of this node's sessions every Reattach:
// the safety net (DefaultReattach).
func (d *Directory) reattach() {
	g := d.grains
	t := time.NewTicker(g.cfg.Reattach)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		d.mu.Lock()
		for id, u := range d.local {
			identity := UserIdentity(id)
			for _, s := range u.sessions {
				g.send(UserKind, identity, &messages.SessionAttached{Session: s.pid, SinceUnixNano: s.since, Reattach: true})
			}
		}
		d.mu.Unlock()
	}
}

func (d *Directory) onlineClustered() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.local)
}

func (d *Directory) roomsClustered() int {
	g := d.grains
	select {
	case <-g.ready:
	default:
		return 0
	}
	if k := g.cluster.GetClusterKind(RoomKind); k != nil {
		return int(k.Count())
	}
	return 0
}

// GrainMailbox is the mailbox of the grain kinds: a grain's mailbox that
// outlives its actor sends what it still held to the grain's identity
// again. protoactor drops the messages left in a stopped actor's mailbox
// without a dead letter; a grain that stops while messages to it are on
// their way (an idle room retiring as a send arrives) would lose them.
func (d *Directory) GrainMailbox() actor.MailboxProducer {
	return func() actor.Mailbox { return actor.Unbounded(&tomb{g: d.grains})() }
}

// TagGrain tells the grain's mailbox (GrainMailbox) its kind and
// identity; a grain calls it on cluster.ClusterInit.
func TagGrain(ctx actor.Context, kind, identity string) {
	ctx.Send(ctx.Self(), &grainTag{kind: kind, identity: identity})
}

type grainTag struct{ kind, identity string }

// tomb is a grain mailbox's middleware. Its methods run on the mailbox's
// goroutine, one at a time, after the actor handled each message: once it
// handled Stop (a grain has no children, so it has stopped), every later
// message was dropped, and goes to the identity again.
type tomb struct {
	g              *grains
	kind, identity string
	dead           bool
}

func (t *tomb) MailboxStarted()   {}
func (t *tomb) MessagePosted(any) {}
func (t *tomb) MailboxEmpty()     {}
func (t *tomb) MessageReceived(msg any) {
	switch m := msg.(type) {
	case *grainTag:
		t.kind, t.identity = m.kind, m.identity
		return
	case *actor.Stop:
		t.dead = true
		return
	}
	if !t.dead || t.g == nil || t.identity == "" {
		return
	}
	_, m, sender := actor.UnwrapEnvelope(msg)
	if sender != nil {
		return
	}
	switch m.(type) {
	case *messages.ChatWrite, *messages.Typing, *messages.FriendshipChanged, *messages.GuildOp, *messages.ChannelMembership,
		*messages.Deliver, *messages.SessionAttached, *messages.SessionDetached,
		*messages.Logout, *messages.FriendOp, *messages.SetProfile, *messages.OfflinePending:
		t.g.send(t.kind, t.identity, m)
	}
}
