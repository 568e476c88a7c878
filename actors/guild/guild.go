// Package guild is the actor of one guild (protocol.md §3): it applies
// the guild's changes one at a time (join, leave, kick, rename, delete,
// channel create and delete: messages.GuildOp), each one's store calls
// off the actor, as a job whose outcome comes back as a message, and then
// tells the guild's channel rooms what changed in its members
// (messages.ChannelMembership, answered before the request is: a send
// after a kick is refused), pushes the event to the members' sessions
// (messages.EventGuild, which only v2 sessions receive) and answers the
// session. It keeps no copy of the guild: each job reads what it needs,
// so an actor that fails or retires loses nothing.
//
// Made with New it is a local actor, which the directory starts on the
// guild's first request and which retires (directory.RetireGuild) once
// it has had nothing to do for Deps.Idle; made with NewGrain it is a
// cluster grain (kind directory.GuildKind, identity
// directory.GuildIdentity) that does the same.
//
// A guild's create needs no actor (the guild is new: nothing can race
// it), and neither do the reads (members, invite): the session makes
// them.
package guild

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/rs/zerolog"

	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/messages"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/protocol"
)

// Limits of protocol.md §3 that are no setting.
const (
	// MaxGuilds is the most guilds a user is in.
	MaxGuilds = 100
	// MaxChannels is the most channels a guild has.
	MaxChannels = 50
)

// DefaultMaxMembers is the default of Deps.MaxMembers
// (REWIND_GUILD_MAX_MEMBERS).
const DefaultMaxMembers = 1000

// DefaultIdle is the default of Deps.Idle.
const DefaultIdle = 2 * time.Minute

// DefaultTimeout is the default of Deps.Timeout.
const DefaultTimeout = 10 * time.Second

// Deps are what guild actors need; shared by all of them. Make them with
// NewDeps, which resolves the zero values (package setting has the
// convention).
type Deps struct {
	Store     persistence.Store
	Directory *directory.Directory
	// NewID makes a channel's id.
	NewID func() int64
	// Location is the zone of wire times; default time.UTC.
	Location *time.Location
	// Now is the clock; default time.Now.
	Now func() time.Time
	// MaxMembers is the most members a guild has (REWIND_GUILD_MAX_MEMBERS);
	// default DefaultMaxMembers.
	MaxMembers int
	// Idle is how long an actor with nothing to do lives; default
	// DefaultIdle; setting.Off (negative): until the node stops.
	Idle time.Duration
	// Timeout bounds one operation's store calls and its rooms' answers;
	// default DefaultTimeout.
	Timeout time.Duration
	Log     zerolog.Logger
}

// NewDeps returns d with its zero values resolved.
func NewDeps(d Deps) *Deps {
	if d.Location == nil {
		d.Location = time.UTC
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.MaxMembers <= 0 {
		d.MaxMembers = DefaultMaxMembers
	}
	if d.Idle == 0 {
		d.Idle = DefaultIdle
	}
	if d.Timeout <= 0 {
		d.Timeout = DefaultTimeout
	}
	return &d
}

// Actor is one guild. Its fields are its own: only Receive touches them.
type Actor struct {
	id   int64
	deps *Deps
	// jobs are the guild's operations, run one at a time; jobs[0] runs.
	jobs    []*messages.GuildOp
	grain   bool
	active  time.Time
	idle    *time.Timer
	retired bool
}

type (
	jobDone   struct{ apply func(actor.Context) }
	idleCheck struct{}
	retire    struct{}
)

// New returns the actor of guild id.
func New(id int64, deps *Deps) *Actor { return &Actor{id: id, deps: deps} }

// NewGrain returns a guild grain, which learns its guild from its
// cluster identity.
func NewGrain(deps *Deps) *Actor { return &Actor{deps: deps, grain: true} }

// Receive implements actor.Actor.
func (a *Actor) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*idleCheck); !ok {
		a.active = time.Now()
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if a.deps.Idle > 0 {
			self, root := ctx.Self(), ctx.ActorSystem().Root
			a.idle = time.AfterFunc(a.deps.Idle, func() { root.Send(self, &idleCheck{}) })
		}
	case *pcluster.ClusterInit:
		directory.TagGrain(ctx, directory.GuildKind, m.Identity.GetIdentity())
		if id, err := directory.ParseGuildIdentity(m.Identity.GetIdentity()); err == nil {
			a.id = id
		}
	case *actor.Stopping, *actor.Restarting:
		a.abandon(ctx)
	case *actor.Stopped:
		if a.idle != nil {
			a.idle.Stop()
		}
		a.deps.Directory.GuildStopped(a.id, ctx.Self())
	case *idleCheck:
		switch left := a.deps.Idle - time.Since(a.active); {
		case left > 0:
			a.idle.Reset(left)
		case len(a.jobs) > 0:
			a.idle.Reset(a.deps.Idle)
		default:
			a.deps.Directory.RetireGuild(a.id, ctx.Self(), &retire{})
		}
	case *retire:
		a.retired = true
		a.stopIfDone(ctx)
	case *messages.GuildOp:
		if a.deps.Directory.Leaving() {
			a.deps.Directory.SendToGuild(a.id, m) // the next activation takes it
			return
		}
		a.jobs = append(a.jobs, m)
		a.deps.Directory.Working(1)
		if len(a.jobs) == 1 {
			a.start(ctx)
		}
	case *jobDone:
		m.apply(ctx)
		a.jobs[0] = nil
		a.jobs = a.jobs[1:]
		a.deps.Directory.Working(-1)
		a.start(ctx)
		a.stopIfDone(ctx)
	}
}

func (a *Actor) stopIfDone(ctx actor.Context) {
	if a.retired && len(a.jobs) == 0 {
		ctx.Stop(ctx.Self())
	}
}

// abandon answers the operations still queued when the actor stops
// before it is done (a failure, or a grain's node leaving): the running
// one may have been applied (5001); the others were not (5000), and a
// leaving node hands them to the guild's next activation.
func (a *Actor) abandon(ctx actor.Context) {
	for i, op := range a.jobs {
		if i > 0 && a.deps.Directory.Leaving() {
			a.deps.Directory.SendToGuild(a.id, op)
			continue
		}
		err := protocol.ErrUnavailable
		if i == 0 {
			err = protocol.ErrUnknownResult
		}
		reply(op, protocol.ErrorFrame(err, op.Nonce))(ctx)
	}
	a.deps.Directory.Working(-len(a.jobs))
	a.jobs = nil
}

// start runs the first queued operation in a goroutine.
func (a *Actor) start(ctx actor.Context) {
	if len(a.jobs) == 0 {
		a.jobs = nil
		return
	}
	op, self, root := a.jobs[0], ctx.Self(), ctx.ActorSystem().Root
	go func() {
		c, cancel := context.WithTimeout(context.Background(), a.deps.Timeout)
		defer cancel()
		root.Send(self, &jobDone{apply: a.run(c, op)})
	}()
}

func reply(op *messages.GuildOp, frame []byte) func(actor.Context) {
	return func(ctx actor.Context) {
		ctx.Send(op.Session, &messages.Reply{Seq: op.Seq, Frames: [][]byte{frame}})
	}
}

// run applies op in the store (off the actor) and returns what to do
// then, inside Receive: answer the session. The rooms were told and the
// events pushed already, from the job's goroutine, before the answer.
func (a *Actor) run(c context.Context, op *messages.GuildOp) func(actor.Context) {
	frame, err := a.apply(c, op)
	if err != nil {
		var pe *protocol.Error
		if !errors.As(err, &pe) {
			a.deps.Log.Warn().Err(err).Int64("guild", a.id).Str("op", op.Kind).Msg("guild: store failed")
			pe = protocol.ErrUnavailable
		}
		frame = protocol.ErrorFrame(pe, op.Nonce)
	}
	return reply(op, frame)
}

// member reads the guild and checks that user is in it: ErrGuildNotExist
// otherwise, as for a guild that does not exist.
func (a *Actor) member(c context.Context, user int64) (persistence.Guild, error) {
	g, err := a.deps.Store.Guild(c, a.id)
	if errors.Is(err, persistence.ErrNotFound) {
		return g, protocol.ErrGuildNotExist
	} else if err != nil {
		return g, err
	}
	ok, err := a.deps.Store.IsMember(c, a.id, user)
	switch {
	case err != nil:
		return g, err
	case !ok:
		return g, protocol.ErrGuildNotExist
	}
	return g, nil
}

// owner is member, and then ErrNotOwner unless user owns the guild.
func (a *Actor) owner(c context.Context, user int64) (persistence.Guild, error) {
	g, err := a.member(c, user)
	if err == nil && g.OwnerID != user {
		err = protocol.ErrNotOwner
	}
	return g, err
}

// apply is run's store work: the answer's frame, or the error to answer.
func (a *Actor) apply(c context.Context, op *messages.GuildOp) ([]byte, error) {
	store, loc, me := a.deps.Store, a.deps.Location, op.UserId
	switch op.Kind {
	case "join":
		g, joined, err := store.JoinGuild(c, op.Name, me, a.deps.Now(), a.deps.MaxMembers, MaxGuilds)
		switch {
		case errors.Is(err, persistence.ErrInviteNotFound), errors.Is(err, persistence.ErrNotFound):
			return nil, protocol.ErrInviteNotExist
		case errors.Is(err, persistence.ErrGuildFull):
			return nil, protocol.ErrGuildFull
		case errors.Is(err, persistence.ErrTooManyGuilds):
			return nil, protocol.ErrTooManyGuilds
		case err != nil:
			return nil, err
		}
		if joined {
			a.tellChannels(g.Channels, &messages.ChannelMembership{UserId: me, Joined: true})
			a.pushMember(c, protocol.GuildMemberJoin, me, nil)
		}
		return protocol.GuildFrame(g, loc, op.Nonce), nil
	case "leave":
		g, err := a.member(c, me)
		if err != nil {
			return nil, err
		}
		if g.OwnerID == me {
			return nil, protocol.ErrOwnerCannotLeave
		}
		switch err := store.LeaveGuild(c, a.id, me); {
		case errors.Is(err, persistence.ErrOwner):
			return nil, protocol.ErrOwnerCannotLeave
		case errors.Is(err, persistence.ErrNotFound):
			return nil, protocol.ErrGuildNotExist
		case err != nil:
			return nil, err
		}
		a.tellChannels(g.Channels, &messages.ChannelMembership{UserId: me})
		// The leaver's own sessions hear it too: its other devices drop
		// the guild.
		a.pushMember(c, protocol.GuildMemberLeave, me, []int64{me})
		return protocol.OKFrame(op.Nonce), nil
	case "kick":
		g, err := a.owner(c, me)
		if err != nil {
			return nil, err
		}
		if op.Target == g.OwnerID {
			return nil, protocol.ErrOwnerCannotLeave
		}
		switch err := store.KickMember(c, a.id, op.Target); {
		case errors.Is(err, persistence.ErrOwner):
			return nil, protocol.ErrOwnerCannotLeave
		case errors.Is(err, persistence.ErrNotFound):
			return nil, protocol.ErrUserNotExist
		case err != nil:
			return nil, err
		}
		a.tellChannels(g.Channels, &messages.ChannelMembership{UserId: op.Target})
		a.deps.Directory.PushToUsers([]int64{op.Target},
			protocol.GuildEventFrame(protocol.GuildEvent{Type: protocol.GuildRemoved, GuildID: idString(a.id)}), messages.EventGuild)
		a.pushMember(c, protocol.GuildMemberLeave, op.Target, nil)
		return protocol.OKFrame(op.Nonce), nil
	case "rename":
		if _, err := a.owner(c, me); err != nil {
			return nil, err
		}
		g, err := store.RenameGuild(c, a.id, op.Name)
		if errors.Is(err, persistence.ErrNotFound) {
			return nil, protocol.ErrGuildNotExist
		} else if err != nil {
			return nil, err
		}
		wire := protocol.GuildOf(g, loc)
		a.push(c, protocol.GuildEvent{Type: protocol.GuildUpdate, Guild: &wire}, nil)
		return protocol.GuildFrame(g, loc, op.Nonce), nil
	case "delete":
		g, err := a.owner(c, me)
		if err != nil {
			return nil, err
		}
		former, err := store.DeleteGuild(c, a.id)
		if errors.Is(err, persistence.ErrNotFound) {
			return nil, protocol.ErrGuildNotExist
		} else if err != nil {
			return nil, err
		}
		a.tellChannels(g.Channels, &messages.ChannelMembership{Deleted: true})
		a.deps.Directory.PushToUsers(former,
			protocol.GuildEventFrame(protocol.GuildEvent{Type: protocol.GuildDelete, GuildID: idString(a.id)}), messages.EventGuild)
		return protocol.OKFrame(op.Nonce), nil
	case "channel_create":
		if _, err := a.owner(c, me); err != nil {
			return nil, err
		}
		ch, err := store.CreateChannel(c, a.id, a.deps.NewID(), op.Name, a.deps.Now(), MaxChannels)
		switch {
		case errors.Is(err, persistence.ErrTooManyChannels):
			return nil, protocol.ErrTooManyChannels
		case errors.Is(err, persistence.ErrNotFound):
			return nil, protocol.ErrGuildNotExist
		case err != nil:
			return nil, err
		}
		wire := protocol.ChannelOf(ch)
		a.push(c, protocol.GuildEvent{Type: protocol.GuildChannelCreate, Channel: &wire}, nil)
		return protocol.ChannelFrame(ch, op.Nonce), nil
	case "channel_delete":
		ch, err := store.ChannelByID(c, op.Target)
		switch {
		case errors.Is(err, persistence.ErrNotFound) || err == nil && ch.GuildID != a.id:
			return nil, protocol.ErrChannelNotExist
		case err != nil:
			return nil, err
		}
		if _, err := a.owner(c, me); errors.Is(err, protocol.ErrGuildNotExist) {
			return nil, protocol.ErrChannelNotExist // not a member: nothing to learn
		} else if err != nil {
			return nil, err
		}
		ch, err = store.DeleteChannel(c, op.Target)
		switch {
		case errors.Is(err, persistence.ErrLastChannel):
			return nil, protocol.ErrLastChannel
		case errors.Is(err, persistence.ErrNotFound):
			return nil, protocol.ErrChannelNotExist
		case err != nil:
			return nil, err
		}
		a.tellChannels([]persistence.Channel{ch}, &messages.ChannelMembership{Deleted: true})
		wire := protocol.ChannelOf(ch)
		a.push(c, protocol.GuildEvent{Type: protocol.GuildChannelDelete, Channel: &wire}, nil)
		return protocol.OKFrame(op.Nonce), nil
	}
	return nil, protocol.ErrGuildType
}

// tellChannels hands m to each channel's room and waits for each to take
// it in (directory.TellRoom), so that the request's answer comes after:
// a kicked member's next send is refused. A room that does not answer in
// time is logged; it loads its members afresh when it next activates.
func (a *Actor) tellChannels(channels []persistence.Channel, m *messages.ChannelMembership) {
	for _, ch := range channels {
		ok := a.deps.Directory.TellRoom(messages.ChannelKey(ch.ID), a.deps.Timeout, func(ack *actor.PID) any {
			return &messages.ChannelMembership{UserId: m.UserId, Joined: m.Joined, Deleted: m.Deleted, Ack: ack}
		})
		if !ok {
			a.deps.Log.Warn().Int64("guild", a.id).Int64("channel", ch.ID).Msg("guild: a channel's room did not take a change in time")
		}
	}
}

// pushMember pushes a member event (member_join, member_leave) of user to
// the members, and to also.
func (a *Actor) pushMember(c context.Context, typ string, user int64, also []int64) {
	u, err := a.deps.Store.UserByID(c, user)
	if err != nil {
		a.deps.Log.Warn().Err(err).Int64("guild", a.id).Msg("guild: event not sent")
		return
	}
	wire := protocol.UserOf(u)
	a.push(c, protocol.GuildEvent{Type: typ, User: &wire}, also)
}

// push sends event e to the members' sessions, and to also's: best effort
// (protocol.md §2.8), one frame for all, reaching only those online.
func (a *Actor) push(c context.Context, e protocol.GuildEvent, also []int64) {
	ids, err := a.deps.Store.GuildMemberIDs(c, a.id)
	if err != nil {
		a.deps.Log.Warn().Err(err).Int64("guild", a.id).Msg("guild: event not sent")
		return
	}
	e.GuildID = idString(a.id)
	a.deps.Directory.PushToUsers(append(ids, also...), protocol.GuildEventFrame(e), messages.EventGuild)
}

func idString(id int64) string { return strconv.FormatInt(id, 10) }
