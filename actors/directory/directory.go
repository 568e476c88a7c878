// Package directory is the one way code finds user and room actors. It
// spawns them on demand and retires them, under one lock, so that a message
// is never sent to an actor that has already been retired: every send to a
// user or room actor goes through here. In a cluster these lookups become
// grain lookups; callers do not change.
package directory

import (
	"hash/maphash"
	"sync"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/rewind-chat/rewind/messages"
)

// Config tells the directory how to make actors.
type Config struct {
	// User makes the actor of one online user.
	User func(userID int64) actor.Producer
	// Room makes the actor of one DM room.
	Room func(key messages.RoomKey) actor.Producer
	// Writers are the persistence writer shards; a room always uses the
	// same one, so its writes commit in the order it made them.
	Writers []*actor.PID
}

// Directory maps user ids and room keys to their live actors.
type Directory struct {
	root *actor.RootContext
	cfg  Config
	seed maphash.Seed

	mu    sync.Mutex
	users map[int64]*userEntry
	rooms map[messages.RoomKey]*actor.PID
}

type userEntry struct {
	pid      *actor.PID
	sessions int
}

// New returns an empty directory spawning through root.
func New(root *actor.RootContext, cfg Config) *Directory {
	return &Directory{
		root: root, cfg: cfg, seed: maphash.MakeSeed(),
		users: map[int64]*userEntry{}, rooms: map[messages.RoomKey]*actor.PID{},
	}
}

// Attach counts session in as one of userID's sessions, starting the
// user's actor if it is the first, and tells the actor.
func (d *Directory) Attach(userID int64, session *actor.PID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.users[userID]
	if e == nil {
		e = &userEntry{pid: d.root.Spawn(actor.PropsFromProducer(d.cfg.User(userID)))}
		d.users[userID] = e
	}
	e.sessions++
	d.root.Send(e.pid, &messages.SessionAttached{Session: session})
}

// Detach takes session out; the last one out retires the user's actor,
// which handles what it was sent before and then stops.
func (d *Directory) Detach(userID int64, session *actor.PID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.users[userID]
	if e == nil {
		return
	}
	d.root.Send(e.pid, &messages.SessionDetached{Session: session})
	if e.sessions--; e.sessions == 0 {
		delete(d.users, userID)
		d.root.Poison(e.pid)
	}
}

// SendToUser sends msg to userID's actor when the user is online and
// reports whether it was.
func (d *Directory) SendToUser(userID int64, msg any) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.users[userID]
	if e != nil {
		d.root.Send(e.pid, msg)
	}
	return e != nil
}

// SendToRoom sends msg to the room's actor, starting it if needed.
func (d *Directory) SendToRoom(key messages.RoomKey, msg any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pid := d.rooms[key]
	if pid == nil {
		pid = d.root.Spawn(actor.PropsFromProducer(d.cfg.Room(key)))
		d.rooms[key] = pid
	}
	d.root.Send(pid, msg)
}

// NotifyRoom sends msg to the room's actor only if it is running.
func (d *Directory) NotifyRoom(key messages.RoomKey, msg any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if pid := d.rooms[key]; pid != nil {
		d.root.Send(pid, msg)
	}
}

// RetireRoom is how an idle room stops: if pid is still the room's actor
// it is forgotten and sent last, after which no message reaches it through
// the directory; the next send starts a new actor. It reports whether pid
// was retired.
func (d *Directory) RetireRoom(key messages.RoomKey, pid *actor.PID, last any) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur := d.rooms[key]; cur == nil || !cur.Equal(pid) {
		return false
	}
	delete(d.rooms, key)
	d.root.Send(pid, last)
	return true
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

// Online counts the users with an actor.
func (d *Directory) Online() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.users)
}
