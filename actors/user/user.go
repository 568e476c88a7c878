// Package user is the actor of one online user: the set of that user's
// sessions, the fan-out of events to all of them, the user's friend and
// profile operations, serialized, and the user's presence (protocol.md
// §4.4).
//
// Made with New it is a local actor, which the directory starts with its
// user's first session; after the last it waits out the offline delay,
// announces its user offline and retires (directory.RetireUser). Made
// with NewGrain it is a cluster grain (kind directory.UserKind) whose
// identity is its user's id: its set of sessions is soft state, attached
// again by each node when the grain may have moved or restarted and every
// Deps.Reattach (the safety net), and forgotten ReattachForget intervals
// after the last attach, or at once when their node leaves the cluster
// (messages.MembersLeft, for a node that died); it stops itself once it
// has had no session and nothing to do for Deps.Idle.
//
// # Presence
//
// The user actor counts its user's sessions, on every node: when the
// first starts it tells the user's friends "online"; when the last ends
// it waits Deps.OfflineDelay, and tells them "offline" only if no session
// came meanwhile, so a quick reconnect shows nothing. The friends it
// tells are those the first session's auth read (they come with its
// attach), or, for the offline, those it reads from the store at that
// moment (off the actor; one announcement at a time, in order, and only
// the latest status if it changed while the list loaded): it keeps no
// friends list. It sends the event through directory.PushToUsers, which
// reaches only friends who are online and activates no grain.
//
// A grain's state is soft, so a blank activation must not take the
// sessions it learns by re-attach for new ones: it tells friends online
// only for a session attached for the first time
// (messages.SessionAttached.reattach unset); a re-attached session that
// it did not know only teaches it that its user is online, which the
// previous activation told (or, if that one had told offline, it tells
// online again). A re-attach of a known session changes nothing. So a
// grain that moves or restarts tells friends nothing; a new session that
// reaches a blank grain before the other nodes' re-attaches makes one
// extra online event, at worst. A grain that stops while its node leaves
// the cluster with an offline announcement pending hands it to its next
// activation (messages.OfflinePending).
package user

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/rs/zerolog"

	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/protocol"
)

// Deps are what a user actor needs; shared by all of them. Make them with
// NewDeps, which resolves the zero values (package setting has the
// convention).
type Deps struct {
	Store     persistence.Store
	Directory *directory.Directory
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Timeout bounds one operation's store calls; default DefaultTimeout
	// (10s).
	Timeout time.Duration
	// Reattach is the re-attach interval of a grain's sessions
	// (directory.ClusterConfig.Reattach); default
	// directory.DefaultReattach. Only grains use it.
	Reattach time.Duration
	// Idle is how long a grain with no session waits before it stops;
	// default DefaultIdle (30s). Only grains use it.
	Idle time.Duration
	// OfflineDelay is how long after its user's last session ends the
	// actor waits before it tells the friends offline (protocol.md §4.4);
	// default directory.DefaultOfflineDelay (5s), which the directory's
	// OnlineAmong counts by too.
	OfflineDelay time.Duration
	Log          zerolog.Logger
}

// DefaultIdle is the default of Deps.Idle.
const DefaultIdle = 30 * time.Second

// DefaultTimeout is the default of Deps.Timeout.
const DefaultTimeout = 10 * time.Second

// NewDeps returns d with its zero values resolved.
func NewDeps(d Deps) *Deps {
	if d.Timeout <= 0 {
		d.Timeout = DefaultTimeout
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Reattach <= 0 {
		d.Reattach = directory.DefaultReattach
	}
	if d.Idle <= 0 {
		d.Idle = DefaultIdle
	}
	if d.OfflineDelay <= 0 {
		d.OfflineDelay = directory.DefaultOfflineDelay
	}
	return &d
}

// closeLoggedOut closes every session of a user that logged out.
var closeLoggedOut = &messages.CloseSession{Code: protocol.CloseLoggedOut, Reason: protocol.ReasonLoggedOut}

// Actor is one online user. Its fields are its own: only Receive touches them.
type Actor struct {
	id       int64
	deps     *Deps
	sessions map[sessionKey]session
	// jobs are the user's friend and profile operations, run one at a time
	// in a goroutine so that deliveries go on while one waits on the store;
	// jobs[0] is running.
	jobs []job

	// A grain's own: when the user last logged out (Unix nanoseconds),
	// when the last message other than sweep came, and the timer that
	// sends sweep.
	grain       bool
	loggedOutAt int64
	active      time.Time
	sweeper     *time.Timer

	// Presence (the package's doc): the status friends were last told
	// ("" for none yet: a blank actor), the one to tell them, whether a
	// load of the friends to tell is out, and the offline delay's timer
	// (nil when none runs) with its generation.
	told, want string
	telling    bool
	offline    *time.Timer
	offlineGen uint64
	// retired: a local actor the directory forgot (RetireUser); it stops
	// once its jobs are done.
	retired bool
}

// sweep makes a grain forget the sessions not attached again and stop
// when it has been idle.
type sweep struct{}

// offlineCheck ends the offline delay of generation gen.
type offlineCheck struct{ gen uint64 }

// friendsLoaded carries the friends to tell of the user's status.
type friendsLoaded struct {
	ids []int64
	err error
}

// retire is a local actor's last message from the directory.
type retire struct{}

// sessionKey names a session by its PID's address and id: ids alone are
// unique only within a node, and in a cluster a user's sessions are on
// several.
type sessionKey struct{ address, id string }

func keyOf(pid *actor.PID) sessionKey { return sessionKey{pid.Address, pid.Id} }

// session is one of the user's sessions: its PID, and when it was last
// attached (Unix nanoseconds; a grain forgets one not attached again
// within directory.ReattachForget re-attach intervals). One map of
// these, not one per field: a grain per user on every node, and a map's
// buckets are most of a small grain's memory (docs/benchmarks.md §8).
type session struct {
	pid  *actor.PID
	seen int64
}

// job is one friend or profile operation of a session's request: run does
// its store work off the actor and returns what to do inside Receive then.
type job struct {
	msg     any // the FriendOp or SetProfile
	run     func(ctx context.Context) func(actor.Context)
	session *actor.PID
	seq     uint64
	nonce   string
}

// jobDone carries a finished job's outcome back into Receive.
type jobDone struct{ apply func(actor.Context) }

// New returns the actor of user id.
func New(id int64, deps *Deps) *Actor {
	return &Actor{id: id, deps: deps, sessions: map[sessionKey]session{}}
}

// NewGrain returns the grain of a user, which learns its user's id from
// its cluster identity (directory.UserIdentity).
func NewGrain(deps *Deps) *Actor {
	return &Actor{deps: deps, sessions: map[sessionKey]session{}, grain: true}
}

// Receive implements actor.Actor.
func (a *Actor) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*sweep); !ok && a.grain {
		a.active = time.Now()
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if a.grain {
			self, root := ctx.Self(), ctx.ActorSystem().Root
			a.sweeper = time.AfterFunc(a.deps.Reattach, func() { root.Send(self, &sweep{}) })
		}
	case *pcluster.ClusterInit:
		directory.TagGrain(ctx, directory.UserKind, m.Identity.GetIdentity())
		if id, err := directory.ParseUserIdentity(m.Identity.GetIdentity()); err == nil {
			a.id = id
			a.deps.Directory.UserGrainStarted(id, ctx.Self())
		}
	case *actor.Stopping:
		a.handOnOffline()
		a.abandon(ctx)
	case *actor.Restarting: // a grain that failed: its parent restarts it blank
		a.abandon(ctx)
		a.stopSweeper()
		a.stopOffline()
		if a.grain {
			// Blank, it would know neither its sessions nor its user (no
			// second ClusterInit): it stops once restarted, which ends
			// its activation. The nodes re-attach on the
			// ActivationTerminated (directory), and the next message
			// activates it afresh; its mailbox sends what it still held
			// there (directory.GrainMailbox).
			ctx.Stop(ctx.Self())
		}
	case *actor.Stopped:
		a.stopSweeper()
		a.stopOffline()
		a.deps.Directory.UserStopped(a.id, ctx.Self())
	case *sweep:
		a.sweep(ctx)
	case *messages.MembersLeft:
		// Their sessions died with them; no detach will come.
		for k := range a.sessions {
			if slices.Contains(m.Addresses, k.address) {
				a.remove(ctx, k)
			}
		}
	case *messages.SessionAttached:
		k := keyOf(m.Session)
		if a.grain {
			if a.loggedOutAt != 0 && m.SinceUnixNano != 0 && m.SinceUnixNano <= a.loggedOutAt {
				// Its token check began before the logout: the token
				// may be revoked (directory.Attach, on one node).
				a.remove(ctx, k)
				ctx.Send(m.Session, closeLoggedOut)
				return
			}
		}
		a.attach(ctx, k, m)
	case *messages.SessionDetached:
		a.remove(ctx, keyOf(m.Session))
	case *offlineCheck:
		if m.gen == a.offlineGen && a.offline != nil {
			a.offline = nil
			if len(a.sessions) == 0 {
				a.tell(ctx, protocol.StatusOffline)
			}
		}
	case *friendsLoaded:
		a.told = a.announce(m)
		a.telling = false
		a.retireIfOffline(ctx)
	case *messages.OfflinePending:
		// The previous actor told the friends online and was waiting
		// to tell them offline when its node left (a grain), or failed
		// before its user's last session ended (directory.Detach).
		if len(a.sessions) == 0 && a.offline == nil && a.want == "" {
			a.want, a.told = protocol.StatusOnline, protocol.StatusOnline
			a.startOffline(ctx)
		}
	case *retire:
		a.retired = true
		a.stopIfDone(ctx)
	case *messages.Deliver:
		a.deliver(ctx, &messages.Push{Frame: m.Frame, FrameV1: m.FrameV1, Kind: m.Kind}, m.Except)
		if m.Echo != nil {
			ctx.Send(m.Except, m.Echo)
		}
	case *messages.Logout:
		if a.grain {
			a.loggedOutAt = m.AtUnixNano
			if a.loggedOutAt == 0 {
				a.loggedOutAt = time.Now().UnixNano()
			}
		}
		for _, s := range a.sessions {
			ctx.Send(s.pid, closeLoggedOut)
		}
	case *messages.FriendOp:
		if a.forward(m) {
			return
		}
		a.queue(ctx, job{m, func(c context.Context) func(actor.Context) { return a.friendOp(c, m) }, m.Session, m.Seq, m.Nonce})
	case *messages.SetProfile:
		if a.forward(m) {
			return
		}
		a.queue(ctx, job{m, func(c context.Context) func(actor.Context) { return a.setProfile(c, m) }, m.Session, m.Seq, m.Nonce})
	case *jobDone:
		m.apply(ctx)
		a.jobs[0] = job{}
		a.jobs = a.jobs[1:]
		a.deps.Directory.Working(-1)
		a.start(ctx)
		a.stopIfDone(ctx)
	}
}

// attach counts m's session, k, in; the user's first session tells the
// friends online, unless they were told already or it is a session the
// actor learns by re-attach while it knows nothing of its user's
// presence. A first attach carries the friends its auth read.
func (a *Actor) attach(ctx actor.Context, k sessionKey, m *messages.SessionAttached) {
	_, known := a.sessions[k]
	a.sessions[k] = session{pid: m.Session, seen: time.Now().UnixNano()}
	if known || len(a.sessions) > 1 {
		return
	}
	a.stopOffline() // a quick reconnect: nothing to tell
	switch {
	case a.want == protocol.StatusOnline:
	case m.Reattach && a.want == "":
		// A blank actor (a grain moved or restarted): its user was
		// online before, as the previous activation told the friends.
		a.want, a.told = protocol.StatusOnline, protocol.StatusOnline
	case m.Reattach:
		a.tell(ctx, protocol.StatusOnline)
	default:
		a.tellThese(ctx, protocol.StatusOnline, m.Friends)
	}
}

// remove counts session k out; after the last the offline delay starts.
func (a *Actor) remove(ctx actor.Context, k sessionKey) {
	if _, ok := a.sessions[k]; !ok {
		return
	}
	delete(a.sessions, k)
	if len(a.sessions) == 0 {
		a.startOffline(ctx)
	}
}

func (a *Actor) startOffline(ctx actor.Context) {
	a.stopOffline()
	a.offlineGen++
	gen, self, root := a.offlineGen, ctx.Self(), ctx.ActorSystem().Root
	a.offline = time.AfterFunc(a.deps.OfflineDelay, func() { root.Send(self, &offlineCheck{gen: gen}) })
}

func (a *Actor) stopOffline() {
	if a.offline != nil {
		a.offline.Stop()
		a.offline = nil
	}
}

// tell makes status the one to tell the friends, loading them (off the
// actor) unless a load is out, whose end tells the latest status.
func (a *Actor) tell(ctx actor.Context, status string) {
	a.want = status
	if a.telling || a.want == a.told {
		a.retireIfOffline(ctx)
		return
	}
	a.telling = true
	id, store, self, root := a.id, a.deps.Store, ctx.Self(), ctx.ActorSystem().Root
	timeout := a.deps.Timeout
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		friends, err := store.Friends(c, id)
		ids := make([]int64, len(friends))
		for i, f := range friends {
			ids[i] = f.ID
		}
		root.Send(self, &friendsLoaded{ids: ids, err: err})
	}()
}

// tellThese is tell with the friends to tell known: the ones a session's
// auth read just now.
func (a *Actor) tellThese(ctx actor.Context, status string, friends []int64) {
	if a.telling {
		a.want = status // the load out tells it
		return
	}
	a.want = status
	a.told = a.announce(&friendsLoaded{ids: friends})
	a.retireIfOffline(ctx)
}

// announce pushes the status to tell, the latest, to the friends m
// loaded and returns what they were told.
func (a *Actor) announce(m *friendsLoaded) string {
	if a.want == a.told {
		return a.told // it changed back while the list loaded: nothing to tell
	}
	if m.err != nil {
		a.deps.Log.Warn().Err(m.err).Int64("user", a.id).Str("status", a.want).Msg("user: presence not shown to friends")
		return a.want // best effort (protocol.md §2.8): not tried again
	}
	a.deps.Directory.PushToUsers(m.ids, protocol.PresenceFrame(a.id, a.want), messages.EventPresence)
	return a.want
}

// retireIfOffline retires a local actor whose friends were told offline
// and which has no session: if a session attaches meanwhile the directory
// refuses, and the session's attach will tell online again.
func (a *Actor) retireIfOffline(ctx actor.Context) {
	if a.grain || a.retired || a.telling || a.told != protocol.StatusOffline || len(a.sessions) > 0 {
		return
	}
	a.deps.Directory.RetireUser(a.id, ctx.Self(), &retire{})
}

// stopIfDone stops a retired local actor once its jobs are done.
func (a *Actor) stopIfDone(ctx actor.Context) {
	if a.retired && len(a.jobs) == 0 {
		ctx.Stop(ctx.Self())
	}
}

// handOnOffline hands a pending offline announcement to the user's next
// activation when this grain stops because its node leaves the cluster.
func (a *Actor) handOnOffline() {
	if !a.grain || !a.deps.Directory.Leaving() || len(a.sessions) > 0 {
		return
	}
	if a.offline != nil || a.want == protocol.StatusOffline && a.told != protocol.StatusOffline {
		a.deps.Directory.SendToUser(a.id, &messages.OfflinePending{})
	}
}

func (a *Actor) stopSweeper() {
	if a.sweeper != nil {
		a.sweeper.Stop()
	}
}

// sweep forgets the sessions not attached again within ReattachForget
// intervals (their node died, or their detach was lost), and stops the
// grain once it has had no session and no job for Idle. Poison, not Stop:
// what is already in the mailbox is handled first.
func (a *Actor) sweep(ctx actor.Context) {
	forget := time.Now().Add(-directory.ReattachForget * a.deps.Reattach).UnixNano()
	for k, s := range a.sessions {
		if s.seen < forget {
			a.remove(ctx, k)
		}
	}
	if len(a.sessions) == 0 && len(a.jobs) == 0 && a.offline == nil && !a.telling && time.Since(a.active) >= a.deps.Idle {
		ctx.Poison(ctx.Self())
		return
	}
	a.sweeper.Reset(min(a.deps.Reattach, a.deps.Idle))
}

// forward hands an operation to the user's next activation, on another
// node, when this grain's node leaves the cluster (directory.Leave), and
// reports whether it did.
func (a *Actor) forward(m any) bool {
	if !a.grain || !a.deps.Directory.Leaving() {
		return false
	}
	a.deps.Directory.SendToUser(a.id, m)
	return true
}

// queue adds j behind the running job, starting it if none runs.
func (a *Actor) queue(ctx actor.Context, j job) {
	a.jobs = append(a.jobs, j)
	a.deps.Directory.Working(1)
	if len(a.jobs) == 1 {
		a.start(ctx)
	}
}

// abandon answers the jobs still queued when the actor stops, which only a
// failure, or a grain's node leaving the cluster, does while jobs are
// queued (the last session's detach comes after its answers): the running
// one may have been applied; a leaving node hands the others to the
// user's next activation.
func (a *Actor) abandon(ctx actor.Context) {
	for i, j := range a.jobs {
		if i > 0 && a.forward(j.msg) {
			continue
		}
		err := protocol.ErrUnavailable
		if i == 0 {
			err = protocol.ErrUnknownResult
		}
		answer(j.session, j.seq, j.nonce, err)(ctx)
	}
	a.deps.Directory.Working(-len(a.jobs))
	a.jobs = nil
}

// start runs the first queued job in a goroutine.
func (a *Actor) start(ctx actor.Context) {
	if len(a.jobs) == 0 {
		a.jobs = nil
		return
	}
	run, self, root := a.jobs[0].run, ctx.Self(), ctx.ActorSystem().Root
	go func() {
		c, cancel := context.WithTimeout(context.Background(), a.deps.Timeout)
		defer cancel()
		root.Send(self, &jobDone{apply: run(c)})
	}()
}

// deliver sends push, the same one, to every session but except (nil:
// to every one).
func (a *Actor) deliver(ctx actor.Context, push *messages.Push, except *actor.PID) {
	for _, s := range a.sessions {
		if !s.pid.Equal(except) {
			ctx.Send(s.pid, push)
		}
	}
}

// answer returns the outcome that replies ok, or err, to the session.
func answer(session *actor.PID, seq uint64, nonce string, err *protocol.Error) func(actor.Context) {
	frame := protocol.OKFrame(nonce)
	if err != nil {
		frame = protocol.ErrorFrame(err, nonce)
	}
	return func(ctx actor.Context) {
		ctx.Send(session, &messages.Reply{Seq: seq, Frames: [][]byte{frame}})
	}
}

func (a *Actor) unavailable(err error) *protocol.Error {
	a.deps.Log.Warn().Err(err).Int64("user", a.id).Msg("user: store failed")
	return protocol.ErrUnavailable
}

// friendOp applies one mutual_users request in the store (off the actor)
// and returns what to do then: tell the room, the other user's sessions
// and this user's other sessions what changed, and answer.
func (a *Actor) friendOp(c context.Context, op *messages.FriendOp) func(actor.Context) {
	fail := func(err *protocol.Error) func(actor.Context) { return answer(op.Session, op.Seq, op.Nonce, err) }
	store := a.deps.Store
	target, err := store.UserByName(c, op.TargetName)
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		return fail(protocol.ErrNamedUserNotExist)
	case err != nil:
		return fail(a.unavailable(err))
	case target.ID == a.id:
		return fail(protocol.ErrTargetSelf)
	}
	me, err := store.UserByID(c, a.id)
	if err != nil {
		return fail(a.unavailable(err))
	}
	event, changed := op.Kind, false
	switch op.Kind {
	case "request":
		var res persistence.FriendResult
		res, err = store.RequestFriend(c, a.id, target.ID, a.deps.Now())
		if errors.Is(err, persistence.ErrAlreadyFriends) {
			return fail(protocol.ErrAlreadyFriend)
		}
		if res == persistence.FriendRequestRepeated {
			return fail(nil) // nothing changed: nobody to tell
		}
		if res == persistence.FriendAccepted {
			event, changed = "response", true
		}
	case "response":
		err = store.AcceptFriend(c, a.id, target.ID, a.deps.Now())
		if errors.Is(err, persistence.ErrNotFound) {
			return fail(protocol.ErrNotRequested)
		}
		changed = true
	case "remove":
		err = store.RemoveFriendRequest(c, a.id, target.ID)
		if errors.Is(err, persistence.ErrNotFound) {
			return fail(protocol.ErrNotRequested)
		}
	case "delete":
		err = store.DeleteFriend(c, a.id, target.ID)
		if errors.Is(err, persistence.ErrNotFound) {
			return fail(protocol.ErrNotFriend)
		}
		changed = true
	}
	if err != nil {
		return fail(a.unavailable(err))
	}
	if changed {
		// Before the answer, so that a send made after it, from any
		// node, is checked against the change (protocol.md §2.5: changes
		// are stored before the answer): the room has taken it in.
		wait := a.deps.Timeout
		if d, ok := c.Deadline(); ok {
			wait = max(time.Until(d), time.Millisecond)
		}
		if !a.deps.Directory.ChangeFriendship(messages.DMKey(a.id, target.ID), wait) {
			a.deps.Log.Warn().Int64("user", a.id).Int64("target", target.ID).Msg("user: the room did not answer a friendship change in time")
		}
	}
	toTarget := protocol.Frame("mutual_users", protocol.FriendEvent{Type: event, User: protocol.UserOf(me)}, "")
	toMine := protocol.Frame("mutual_users", protocol.FriendEvent{Type: event, User: protocol.UserOf(target), Origin: "self"}, "")
	ok := fail(nil)
	return func(ctx actor.Context) {
		a.deps.Directory.SendToUser(target.ID, &messages.Deliver{Frame: toTarget, Kind: messages.EventFriend})
		a.deliver(ctx, &messages.Push{Frame: toMine, Kind: messages.EventFriendSelf}, op.Session)
		ok(ctx)
	}
}

// setProfile stores the profile URL (off the actor) and returns what to do
// then: answer the user object and show it to the user's online friends.
func (a *Actor) setProfile(c context.Context, m *messages.SetProfile) func(actor.Context) {
	u, err := a.deps.Store.SetProfile(c, a.id, m.Profile)
	if err != nil {
		return answer(m.Session, m.Seq, m.Nonce, a.unavailable(err))
	}
	// The session encodes the answer: a v1 one shows no profile.
	reply := &messages.Reply{Seq: m.Seq, User: messages.UserOf(u)}
	friends, err := a.deps.Store.Friends(c, a.id)
	if err != nil {
		a.deps.Log.Warn().Err(err).Int64("user", a.id).Msg("user: profile change not shown to friends")
	}
	event := &messages.Deliver{Frame: protocol.Frame("user", protocol.UserOf(u), ""), Kind: messages.EventProfile}
	return func(ctx actor.Context) {
		ctx.Send(m.Session, reply)
		for _, f := range friends {
			a.deps.Directory.SendToUser(f.ID, event)
		}
	}
}
