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
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rewind-chat/rewind/messages"
)

// Config tells the directory how to make actors. A zero MaxSessions takes
// its default (package setting has the convention).
type Config struct {
	// User makes the actor of one online user.
	User func(userID int64) actor.Producer
	// Room makes the actor of one DM room.
	Room func(key messages.RoomKey) actor.Producer
	// Writers are the persistence writer shards; a room always uses the
	// same one, so its writes commit in the order it made them.
	Writers []*actor.PID
	// MaxSessions caps the sessions of one user (protocol.md §2.7,
	// REWIND_WS_MAX_SESSIONS); default DefaultMaxSessions (64);
	// setting.Off: no cap.
	MaxSessions int
}

// DefaultMaxSessions is the default of Config.MaxSessions.
const DefaultMaxSessions = 64

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
	// loggedOut holds when each user last logged out, for LogoutMemory;
	// logouts lists them in that order, to forget them.
	loggedOut map[int64]time.Time
	logouts   []logout

	// grains is the cluster backend, nil for a node alone; local then
	// holds this node's sessions of each user (users is not used).
	grains *grains
	local  map[int64]*localUser
}

type logout struct {
	user int64
	at   time.Time
}

// userEntry is an online user: its sessions, and its actor, nil after that
// actor failed until the next message for the user starts a fresh one.
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
	return &Directory{
		root: root, cfg: cfg, seed: maphash.MakeSeed(),
		users: map[int64]*userEntry{}, rooms: map[messages.RoomKey]*actor.PID{},
		loggedOut: map[int64]time.Time{},
	}
}

func (d *Directory) spawn(p actor.Producer) *actor.PID {
	return d.root.Spawn(actor.PropsFromProducer(p, actor.WithGuardian(stopOnFailure)))
}

// userActor returns e's actor, starting a fresh one that is told every
// session of the user when the last one failed. Lock must be held.
func (d *Directory) userActor(userID int64, e *userEntry) *actor.PID {
	if e.pid == nil {
		e.pid = d.spawn(d.cfg.User(userID))
		for _, s := range e.sessions {
			d.root.Send(e.pid, &messages.SessionAttached{Session: s})
		}
	}
	return e.pid
}

// Attach counts session in as one of userID's sessions, starting the
// user's actor if it is the first, and tells the actor. since is when the
// session began the check that found its token valid: if the user logged
// out since then, the session is not attached (LoggedOut), because the
// check may have read the token generation before the logout bumped it.
// A logout after the attach reaches the session through the user's actor,
// so either way no session outlives a logout
// (TestAuthDuringLogoutDoesNotSurvive in server).
func (d *Directory) Attach(userID int64, since time.Time, session *actor.PID) AttachResult {
	if d.grains != nil {
		return d.attachClustered(userID, since, session)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.forgetLogouts(now)
	if at, ok := d.loggedOut[userID]; (ok && !at.Before(since)) || now.Sub(since) >= LogoutMemory {
		return LoggedOut
	}
	e := d.users[userID]
	if e == nil {
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
	if e.pid == nil {
		d.userActor(userID, e) // tells it every session, this one included
		return Attached
	}
	d.root.Send(e.pid, &messages.SessionAttached{Session: session})
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
		d.root.Send(d.userActor(userID, e), &messages.Logout{})
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

// Detach takes session out; the last one out retires the user's actor,
// which handles what it was sent before and then stops.
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
	if len(e.sessions) > 0 {
		if e.pid != nil {
			d.root.Send(e.pid, &messages.SessionDetached{Session: session})
		}
		return
	}
	delete(d.users, userID)
	if e.pid != nil {
		d.root.Poison(e.pid)
	}
}

// UserStopped is called by a user actor as it stops: if it stopped on a
// failure while its user is still online, the next message for the user
// starts a fresh actor.
func (d *Directory) UserStopped(userID int64, pid *actor.PID) {
	if d.grains != nil {
		d.grains.forget(UserKind, UserIdentity(userID), pid)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.users[userID]; e != nil && e.pid != nil && e.pid.Equal(pid) {
		e.pid = nil
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
		d.root.Send(d.userActor(userID, e), msg)
	}
	return e != nil
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

// Online counts the users with an actor; clustered, the users with a
// session on this node.
func (d *Directory) Online() int {
	if d.grains != nil {
		return d.onlineClustered()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.users)
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
