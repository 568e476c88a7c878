// Package directory is the one way code finds user and room actors. It
// spawns them on demand and retires them, under one lock, so that a message
// is never sent to an actor that has already been retired: every send to a
// user or room actor goes through here.
//
// Two backends, chosen at construction: New keeps the actors in this
// process (a node alone); NewClustered makes them cluster grains (kinds
// UserKind and RoomKind, cluster.go), found by identity on whichever node
// hosts them. Callers do not change.
package directory

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rewind-chat/rewind/messages"
)

// Config tells the directory how to make actors. A zero MaxSessions or
// OfflineDelay takes its default (package setting has the convention).
type Config struct {
	// User makes the actor of one online user.
	User func(userID int64) actor.Producer
	// Room makes the actor of one DM room or guild channel
	// (messages.ChannelKey).
	Room func(key messages.RoomKey) actor.Producer
	// Guild makes the actor of one guild (actors/guild).
	Guild func(guildID int64) actor.Producer
	// Writers are the persistence writer shards; a room always uses the
	// same one, so its writes commit in the order it made them.
	Writers []*actor.PID
	// MaxSessions caps the sessions of one user (protocol.md §2.7,
	// REWIND_WS_MAX_SESSIONS); default DefaultMaxSessions (64);
	// setting.Off: no cap.
	MaxSessions int
	// OfflineDelay is how long a user counts as online after its last
	// session ended (protocol.md §4.4: a quick reconnect shows nothing):
	// OnlineAmong answers by it, and user actors announce offline after
	// it (user.Deps.OfflineDelay defaults to DefaultOfflineDelay too).
	// Default DefaultOfflineDelay (5s).
	OfflineDelay time.Duration
}

// DefaultMaxSessions is the default of Config.MaxSessions.
const DefaultMaxSessions = 64

// DefaultOfflineDelay is the default of Config.OfflineDelay and of
// user.Deps.OfflineDelay.
const DefaultOfflineDelay = 5 * time.Second

// StatusTimeout bounds OnlineAmong's wait for the other nodes' answers; a
// node that does not answer in time counts its users offline.
const StatusTimeout = time.Second

// LogoutMemory is how long the directory remembers a user's logout: an
// auth whose token check started longer ago than this cannot attach and
// checks its token again.
const LogoutMemory = time.Minute

// AttachResult is what Attach did.
type AttachResult uint8

const (
	// Attached: the session is one of its user's sessions now.
	Attached AttachResult = iota
	// TooManySessions: the user has MaxSessions sessions already.
	TooManySessions
	// LoggedOut: the user logged out since the session's token was found
	// valid (or that was longer ago than LogoutMemory): the token may be
	// revoked, so the session must check it again.
	LoggedOut
)

// Directory maps user ids and room keys to their live actors.
type Directory struct {
	root *actor.RootContext
	cfg  Config
	seed maphash.Seed

	mu    sync.Mutex
	users map[int64]*userEntry
	rooms map[messages.RoomKey]*actor.PID
	// guilds are the live guild actors.
	guilds map[int64]*actor.PID
	// loggedOut holds when each user last logged out, for LogoutMemory;
	// logouts lists them in that order, to forget them.
	loggedOut map[int64]time.Time
	logouts   []logout

	// grains is the cluster backend, nil for a node alone; local then
	// holds this node's sessions of each user (users is not used), and
	// gone when the last of them ended, for the offline delay (goneList
	// in that order, to forget them).
	grains   *grains
	local    map[int64]*localUser
	gone     map[int64]time.Time
	goneList []logout

	// working counts what this node's actors have started and not
	// answered yet (Working), which a graceful leave waits for.
	working atomic.Int64
}

type logout struct {
	user int64
	at   time.Time
}

// userEntry is an online user: its sessions, and its actor, nil after that
// actor failed until the next message for the user starts a fresh one. An
// entry without sessions is a user whose actor waits out the offline
// delay; it stays until that actor retires (RetireUser).
type userEntry struct {
	pid      *actor.PID
	sessions map[string]*actor.PID // by PID id
}

// stopOnFailure is the supervision of user and room actors: one that fails
// stops, rather than restarting with its state blank, and the directory
// forgets it (UserStopped, RoomStopped), so that the next message starts a
// fresh actor that loads its state again. One value, so that protoactor
// makes one guardian for all of them.
var stopOnFailure = actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })

// New returns an empty directory spawning through root.
func New(root *actor.RootContext, cfg Config) *Directory {
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.OfflineDelay <= 0 {
		cfg.OfflineDelay = DefaultOfflineDelay
	}
	return &Directory{
		root: root, cfg: cfg, seed: maphash.MakeSeed(),
		users: map[int64]*userEntry{}, rooms: map[messages.RoomKey]*actor.PID{}, guilds: map[int64]*actor.PID{},
		loggedOut: map[int64]time.Time{},
	}
}

func (d *Directory) spawn(p actor.Producer) *actor.PID {
	return d.root.Spawn(actor.PropsFromProducer(p, actor.WithGuardian(stopOnFailure)))
}

// userActor returns e's actor, starting a fresh one that is told every
// session of the user when the last one failed: told again (Reattach), as
// the user was online already, unless first is not nil: the attach of
// the user's first session (Attach). Lock must be held.
func (d *Directory) userActor(userID int64, e *userEntry, first *messages.SessionAttached) *actor.PID {
	if e.pid == nil {
		e.pid = d.spawn(d.cfg.User(userID))
		if first != nil {
			d.root.Send(e.pid, first)
			return e.pid
		}
		for _, s := range e.sessions {
			d.root.Send(e.pid, &messages.SessionAttached{Session: s, Reattach: true})
		}
	}
	return e.pid
}

// Attach counts session in as one of userID's sessions, starting the
// user's actor if it is the first, and tells the actor; friends are the
// user's friends as the session's auth read them, whom the actor tells
// the user is online if this is its first session. since is when the
// session began the check that found its token valid: if the user logged
// out since then, the session is not attached (LoggedOut), because the
// check may have read the token generation before the logout bumped it.
// A logout after the attach reaches the session through the user's actor,
// so either way no session outlives a logout
// (TestAuthDuringLogoutDoesNotSurvive in server).
func (d *Directory) Attach(userID int64, since time.Time, session *actor.PID, friends []int64) AttachResult {
	if d.grains != nil {
		return d.attachClustered(userID, since, session, friends)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.forgetLogouts(now)
	if at, ok := d.loggedOut[userID]; (ok && !at.Before(since)) || now.Sub(since) >= LogoutMemory {
		return LoggedOut
	}
	e := d.users[userID]
	fresh := e == nil
	if fresh {
		e = &userEntry{sessions: map[string]*actor.PID{}}
		d.users[userID] = e
	}
	if _, ok := e.sessions[session.Id]; ok {
		return Attached
	}
	if d.cfg.MaxSessions > 0 && len(e.sessions) >= d.cfg.MaxSessions {
		return TooManySessions
	}
	e.sessions[session.Id] = session
	m := &messages.SessionAttached{Session: session, Friends: friends}
	if e.pid == nil {
		if !fresh {
			m = nil // its actor failed: a fresh one hears of every session again
		}
		d.userActor(userID, e, m)
		return Attached
	}
	d.root.Send(e.pid, m)
	return Attached
}

// Logout closes every session of userID (their tokens were revoked just
// before) and keeps sessions whose token check began before now from
// attaching, for LogoutMemory.
func (d *Directory) Logout(userID int64) {
	if d.grains != nil {
		d.logoutClustered(userID)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.forgetLogouts(now)
	d.loggedOut[userID] = now
	d.logouts = append(d.logouts, logout{userID, now})
	if e := d.users[userID]; e != nil {
		d.root.Send(d.userActor(userID, e, nil), &messages.Logout{})
	}
}

// forgetLogouts drops the logouts older than LogoutMemory. Lock must be held.
func (d *Directory) forgetLogouts(now time.Time) {
	n := 0
	for _, l := range d.logouts {
		if now.Sub(l.at) < LogoutMemory {
			break
		}
		if d.loggedOut[l.user].Equal(l.at) {
			delete(d.loggedOut, l.user)
		}
		n++
	}
	if n > 0 {
		clear(d.logouts[:n])
		d.logouts = d.logouts[n:]
		if len(d.logouts) == 0 {
			d.logouts = nil
		}
	}
}

// Detach takes session out. The user's actor is told; after the last one
// it waits out the offline delay, announces its user offline and retires
// (RetireUser), unless a session came meanwhile.
func (d *Directory) Detach(userID int64, session *actor.PID) {
	if d.grains != nil {
		d.detachClustered(userID, session)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.users[userID]
	if e == nil {
		return
	}
	if _, ok := e.sessions[session.Id]; !ok {
		return
	}
	delete(e.sessions, session.Id)
	switch {
	case e.pid != nil:
		d.root.Send(e.pid, &messages.SessionDetached{Session: session})
	case len(e.sessions) == 0:
		// The user's actor failed and none replaced it yet: a fresh one
		// tells the friends offline after the delay, then retires.
		d.root.Send(d.userActor(userID, e, nil), &messages.OfflinePending{})
	}
}

// RetireUser is how a user actor with no session stops, once it has
// announced its user offline: if pid is still the user's actor and no
// session attached meanwhile, the user is forgotten and pid is sent
// last, after which no message reaches it through the directory; the
// next session starts a new actor. It reports whether pid was retired;
// false means a session is attaching, which the actor will hear of.
// Clustered, a user grain stops by itself (user.Deps.Idle): false.
func (d *Directory) RetireUser(userID int64, pid *actor.PID, last any) bool {
	if d.grains != nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.users[userID]
	if e == nil || e.pid == nil || !e.pid.Equal(pid) || len(e.sessions) > 0 {
		return false
	}
	delete(d.users, userID)
	d.root.Send(pid, last)
	return true
}

// UserStopped is called by a user actor as it stops: if it stopped on a
// failure while its user is still online, the next message for the user
// starts a fresh actor.
func (d *Directory) UserStopped(userID int64, pid *actor.PID) {
	if g := d.grains; g != nil {
		g.forget(UserKind, UserIdentity(userID), pid)
		g.usersMu.Lock()
		if p := g.users[userID]; p != nil && p.Equal(pid) {
			delete(g.users, userID)
		}
		g.usersMu.Unlock()
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.users[userID]; e != nil && e.pid != nil && e.pid.Equal(pid) {
		e.pid = nil
		if len(e.sessions) == 0 {
			delete(d.users, userID)
		}
	}
}

// SendToUser sends msg to userID's actor when the user is online and
// reports whether it was. Clustered, it cannot know without asking: it
// sends to the user's grain and reports true.
func (d *Directory) SendToUser(userID int64, msg any) bool {
	if d.grains != nil {
		d.grains.send(UserKind, UserIdentity(userID), msg)
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.users[userID]
	if e != nil {
		d.root.Send(d.userActor(userID, e, nil), msg)
	}
	return e != nil
}

// PushToUsers sends frame, an event of kind, to every session of the
// users of ids who are online, without starting an actor for those who
// are not: a user's presence goes to its friends this way. A node alone
// hands the event to each online user's actor (one Deliver, shared);
// clustered, every node's directory pushes it to its own sessions of
// those users (PushToUsers, one message per node), so that the grains of
// friends who are offline are not activated.
func (d *Directory) PushToUsers(ids []int64, frame []byte, kind messages.EventKind) {
	if len(ids) == 0 {
		return
	}
	if d.grains != nil {
		d.pushToUsersClustered(ids, frame, kind)
		return
	}
	deliver := &messages.Deliver{Frame: frame, Kind: kind}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		if e := d.users[id]; e != nil {
			d.root.Send(d.userActor(id, e, nil), deliver)
		}
	}
}

// OnlineAmong returns which users of ids are online (protocol.md §4.4):
// with a session, or whose last session ended within the offline delay
// (their actor has not announced them offline yet). It activates no
// actor. Clustered, it asks every other node's directory and waits up to
// StatusTimeout: the users of a node that does not answer in time count
// as offline. It blocks: call it off any actor.
func (d *Directory) OnlineAmong(ids []int64) map[int64]bool {
	online := map[int64]bool{}
	if len(ids) == 0 {
		return online
	}
	if d.grains != nil {
		return d.onlineAmongClustered(ids)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		if d.users[id] != nil {
			online[id] = true
		}
	}
	return online
}

// SendToRoom sends msg to the room's actor, starting it if needed.
func (d *Directory) SendToRoom(key messages.RoomKey, msg any) {
	if d.grains != nil {
		d.grains.send(RoomKind, RoomIdentity(key), msg)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	pid := d.rooms[key]
	if pid == nil {
		pid = d.spawn(d.cfg.Room(key))
		d.rooms[key] = pid
	}
	d.root.Send(pid, msg)
}

// NotifyRoom sends msg to the room's actor only if it is running.
// Clustered, it cannot know whether the room's grain runs on some node,
// so it sends to it (activating it: friendship changes are rare).
func (d *Directory) NotifyRoom(key messages.RoomKey, msg any) {
	if d.grains != nil {
		d.grains.send(RoomKind, RoomIdentity(key), msg)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if pid := d.rooms[key]; pid != nil {
		d.root.Send(pid, msg)
	}
}

// ChangeFriendship tells the room of key that its members' friendship
// changed and waits, within timeout, for the room to take the change in
// (FriendshipChanged.ack): a write the room gets after that is checked
// against the store again, whichever node it comes from. It blocks: call
// it off any actor. A node alone tells only a running room (one that is
// not running loads its state afresh anyway); a cluster tells the room's
// grain, activating it. It reports whether the room answered in time (or
// no room was running).
func (d *Directory) ChangeFriendship(key messages.RoomKey, timeout time.Duration) bool {
	f := actor.NewFuture(d.root.ActorSystem(), timeout)
	msg := &messages.FriendshipChanged{Ack: f.PID()}
	if d.grains != nil {
		d.grains.send(RoomKind, RoomIdentity(key), msg)
	} else {
		d.mu.Lock()
		pid := d.rooms[key]
		if pid != nil {
			d.root.Send(pid, msg)
		}
		d.mu.Unlock()
		if pid == nil {
			return true
		}
	}
	_, err := f.Result()
	return err == nil
}

// TellRoom sends msg, which carries ack (a FriendshipChanged or a
// ChannelMembership), to the room of key and waits, within timeout, for
// the room to answer ack: it has taken msg in. As ChangeFriendship (a
// node alone tells only a running room; a cluster activates its grain),
// and it blocks too: call it off any actor.
func (d *Directory) TellRoom(key messages.RoomKey, timeout time.Duration, msg func(ack *actor.PID) any) bool {
	f := actor.NewFuture(d.root.ActorSystem(), timeout)
	m := msg(f.PID())
	if d.grains != nil {
		d.grains.send(RoomKind, RoomIdentity(key), m)
	} else {
		d.mu.Lock()
		pid := d.rooms[key]
		if pid != nil {
			d.root.Send(pid, m)
		}
		d.mu.Unlock()
		if pid == nil {
			return true
		}
	}
	_, err := f.Result()
	return err == nil
}

// SendToGuild sends msg to the guild's actor, starting it if needed.
func (d *Directory) SendToGuild(guildID int64, msg any) {
	if d.grains != nil {
		d.grains.send(GuildKind, GuildIdentity(guildID), msg)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	pid := d.guilds[guildID]
	if pid == nil {
		pid = d.spawn(d.cfg.Guild(guildID))
		d.guilds[guildID] = pid
	}
	d.root.Send(pid, msg)
}

// RetireGuild is how an idle guild actor stops, as RetireRoom.
func (d *Directory) RetireGuild(guildID int64, pid *actor.PID, last any) bool {
	if d.grains != nil {
		d.grains.forget(GuildKind, GuildIdentity(guildID), pid)
		d.root.Send(pid, last)
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur := d.guilds[guildID]; cur == nil || !cur.Equal(pid) {
		return false
	}
	delete(d.guilds, guildID)
	d.root.Send(pid, last)
	return true
}

// GuildStopped is called by a guild actor as it stops, as RoomStopped.
func (d *Directory) GuildStopped(guildID int64, pid *actor.PID) {
	if d.grains != nil {
		d.grains.forget(GuildKind, GuildIdentity(guildID), pid)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur := d.guilds[guildID]; cur != nil && cur.Equal(pid) {
		delete(d.guilds, guildID)
	}
}

// Guilds counts the live guild actors of a node alone (0 clustered).
func (d *Directory) Guilds() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.guilds)
}

// RetireRoom is how an idle room stops: if pid is still the room's actor
// it is forgotten and sent last, after which no message reaches it through
// the directory; the next send starts a new actor. It reports whether pid
// was retired.
//
// Clustered, a room grain is its identity's only activation as far as
// this node knows: last is sent to it, and a message that reaches it
// after it stopped is sent again by identity (grains).
func (d *Directory) RetireRoom(key messages.RoomKey, pid *actor.PID, last any) bool {
	if d.grains != nil {
		d.grains.forget(RoomKind, RoomIdentity(key), pid)
		d.root.Send(pid, last)
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur := d.rooms[key]; cur == nil || !cur.Equal(pid) {
		return false
	}
	delete(d.rooms, key)
	d.root.Send(pid, last)
	return true
}

// RoomStopped is called by a room actor as it stops: one that stopped on
// a failure, not retired, is forgotten, so that the next send starts a
// fresh one.
func (d *Directory) RoomStopped(key messages.RoomKey, pid *actor.PID) {
	if d.grains != nil {
		d.grains.forget(RoomKind, RoomIdentity(key), pid)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur := d.rooms[key]; cur != nil && cur.Equal(pid) {
		delete(d.rooms, key)
	}
}

// Writer is the writer shard of a room.
func (d *Directory) Writer(key messages.RoomKey) *actor.PID {
	var h maphash.Hash
	h.SetSeed(d.seed)
	var b [16]byte
	for i := range 8 {
		b[i] = byte(key.Low >> (8 * i))
		b[8+i] = byte(key.High >> (8 * i))
	}
	h.Write(b[:])
	return d.cfg.Writers[h.Sum64()%uint64(len(d.cfg.Writers))]
}

// Online counts the users with a session; clustered, the users with a
// session on this node.
func (d *Directory) Online() int {
	if d.grains != nil {
		return d.onlineClustered()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, e := range d.users {
		if len(e.sessions) > 0 {
			n++
		}
	}
	return n
}

// Rooms counts the live room actors; clustered, the room grains this
// node hosts.
func (d *Directory) Rooms() int {
	if d.grains != nil {
		return d.roomsClustered()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.rooms)
}
