package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/stretchr/testify/require"
)

// The tests of persistence.GuildStore and of chat in channels, added to
// Run's list.
var guildTests = []struct {
	name string
	test func(t *testing.T, open func(t *testing.T) persistence.Store)
}{
	{"CreateGuild", testCreateGuild},
	{"CreateGuildLimit", testCreateGuildLimit},
	{"GuildsOf", testGuildsOf},
	{"Members", testMembers},
	{"Invites", testInvites},
	{"JoinGuild", testJoinGuild},
	{"JoinGuildLimits", testJoinGuildLimits},
	{"JoinGuildConcurrentMaxUses", testJoinGuildConcurrentMaxUses},
	{"JoinGuildConcurrentFull", testJoinGuildConcurrentFull},
	{"JoinGuildConcurrentTooManyGuilds", testJoinGuildConcurrentTooManyGuilds},
	{"JoinGuildConcurrentSameUser", testJoinGuildConcurrentSameUser},
	{"LeaveAndKick", testLeaveAndKick},
	{"RenameGuild", testRenameGuild},
	{"DeleteGuild", testDeleteGuild},
	{"DeleteGuildWhileWriting", testDeleteGuildWhileWriting},
	{"Channels", testChannels},
	{"DeleteChannel", testDeleteChannel},
	{"DeleteChannelConcurrent", testDeleteChannelConcurrent},
	{"CreateChannelConcurrent", testCreateChannelConcurrent},
	{"ChannelChat", testChannelChat},
	{"ChannelSeqConcurrent", testChannelSeqConcurrent},
	{"ChannelMarkRead", testChannelMarkRead},
	{"ChatsWithChannels", testChatsWithChannels},
}

// at is the k-th second after now, as stores give it back.
func at(k int) time.Time { return stored(now.Add(time.Duration(k) * time.Second)) }

// createGuild creates guild id owned by owner, its channel "general" id
// channel, at time k, without a guild limit.
func createGuild(t *testing.T, s persistence.Store, id, owner, channel int64, k int) persistence.Guild {
	t.Helper()
	g, err := s.CreateGuild(t.Context(), persistence.Guild{ID: id, Name: fmt.Sprint("guild", id), OwnerID: owner, CreatedAt: at(k)}, channel, 0)
	require.NoError(t, err)
	return g
}

// invite creates an invite of guild by its owner with maxUses, valid for
// an hour after now.
func invite(t *testing.T, s persistence.Store, code string, guild, by int64, maxUses int) persistence.Invite {
	t.Helper()
	inv := persistence.Invite{Code: code, GuildID: guild, CreatedBy: by, MaxUses: maxUses, ExpiresAt: at(3600), CreatedAt: at(0)}
	require.NoError(t, s.CreateInvite(t.Context(), inv))
	return inv
}

// join joins user with code at time k, without limits, and checks joined.
func join(t *testing.T, s persistence.Store, code string, user int64, k int, wantJoined bool) persistence.Guild {
	t.Helper()
	g, joined, err := s.JoinGuild(t.Context(), code, user, at(k), 0, 0)
	require.NoError(t, err)
	require.Equal(t, wantJoined, joined, "user %d joined with %s", user, code)
	return g
}

func guild(t *testing.T, s persistence.Store, id int64) persistence.Guild {
	t.Helper()
	g, err := s.Guild(t.Context(), id)
	require.NoError(t, err)
	return g
}

func memberIDs(t *testing.T, s persistence.Store, guild int64) []int64 {
	t.Helper()
	ids, err := s.GuildMemberIDs(t.Context(), guild)
	require.NoError(t, err)
	return ids
}

func requireMember(t *testing.T, s persistence.Store, guild, user int64, want bool) {
	t.Helper()
	ok, err := s.IsMember(t.Context(), guild, user)
	require.NoError(t, err)
	require.Equal(t, want, ok, "user %d in guild %d", user, guild)
}

func testCreateGuild(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2)
	g, err := s.CreateGuild(t.Context(), persistence.Guild{ID: 10, Name: "Rewinders", OwnerID: 1, CreatedAt: now}, 11, 100)
	require.NoError(t, err)
	general := persistence.Channel{ID: 11, GuildID: 10, Name: persistence.GeneralChannel, CreatedAt: stored(now)}
	want := persistence.Guild{ID: 10, Name: "Rewinders", OwnerID: 1, CreatedAt: stored(now),
		Channels: []persistence.Channel{general}, MemberCount: 1}
	require.Equal(t, want, g)
	require.Equal(t, want, guild(t, s, 10))
	c, err := s.ChannelByID(t.Context(), 11)
	require.NoError(t, err)
	require.Equal(t, general, c)
	requireMember(t, s, 10, 1, true)
	requireMember(t, s, 10, 2, false)
	requireMember(t, s, 99, 1, false)
	require.Equal(t, []int64{1}, memberIDs(t, s, 10))
	gs, err := s.GuildsOf(t.Context(), 1)
	require.NoError(t, err)
	require.Equal(t, []persistence.Guild{want}, gs)

	t.Run("errors", func(t *testing.T) {
		_, err := s.Guild(t.Context(), 99)
		require.ErrorIs(t, err, persistence.ErrNotFound)
		_, err = s.ChannelByID(t.Context(), 99)
		require.ErrorIs(t, err, persistence.ErrNotFound)
		_, err = s.CreateGuild(t.Context(), persistence.Guild{ID: 20, Name: "x", OwnerID: 9, CreatedAt: now}, 21, 0)
		require.ErrorIs(t, err, persistence.ErrNotFound, "an owner who is not a user")
		_, err = s.Guild(t.Context(), 20)
		require.ErrorIs(t, err, persistence.ErrNotFound, "nothing stored")
		_, err = s.CreateGuild(t.Context(), persistence.Guild{ID: 10, Name: "x", OwnerID: 2, CreatedAt: now}, 21, 0)
		require.Error(t, err, "a guild id taken")
		_, err = s.CreateGuild(t.Context(), persistence.Guild{ID: 20, Name: "x", OwnerID: 2, CreatedAt: now}, 11, 0)
		require.Error(t, err, "a room id taken")
		_, err = s.Guild(t.Context(), 20)
		require.ErrorIs(t, err, persistence.ErrNotFound, "one transaction: no guild without its channel")
		requireMember(t, s, 20, 2, false)
	})
	t.Run("a DM room is no channel", func(t *testing.T) {
		room := ensureDMRoom(t, s, 1, 2, 500)
		_, err := s.ChannelByID(t.Context(), room)
		require.ErrorIs(t, err, persistence.ErrNotFound)
	})
}

func testCreateGuildLimit(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2)
	for i := range int64(3) {
		_, err := s.CreateGuild(t.Context(), persistence.Guild{ID: 10 + i, Name: "g", OwnerID: 1, CreatedAt: now}, 100+i, 3)
		require.NoError(t, err)
	}
	_, err := s.CreateGuild(t.Context(), persistence.Guild{ID: 20, Name: "g", OwnerID: 1, CreatedAt: now}, 200, 3)
	require.ErrorIs(t, err, persistence.ErrTooManyGuilds)
	_, err = s.Guild(t.Context(), 20)
	require.ErrorIs(t, err, persistence.ErrNotFound)
	// Joining counts as much as owning.
	invite(t, s, "i", 10, 1, 0)
	createGuild(t, s, 30, 2, 300, 0)
	createGuild(t, s, 31, 2, 301, 0)
	join(t, s, "i", 2, 1, true)
	_, err = s.CreateGuild(t.Context(), persistence.Guild{ID: 32, Name: "g", OwnerID: 2, CreatedAt: now}, 302, 3)
	require.ErrorIs(t, err, persistence.ErrTooManyGuilds)
	_, err = s.CreateGuild(t.Context(), persistence.Guild{ID: 32, Name: "g", OwnerID: 2, CreatedAt: now}, 302, 0)
	require.NoError(t, err, "0: no bound")
	// Leaving frees a place.
	require.NoError(t, s.LeaveGuild(t.Context(), 10, 2))
	_, err = s.CreateGuild(t.Context(), persistence.Guild{ID: 33, Name: "g", OwnerID: 2, CreatedAt: now}, 303, 4)
	require.NoError(t, err)
}

// testGuildsOf: oldest membership first, ties by guild id, each guild
// with its channels (oldest first) and member count.
func testGuildsOf(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3)
	createGuild(t, s, 30, 1, 300, 0)
	createGuild(t, s, 20, 1, 200, 0)
	createGuild(t, s, 10, 1, 100, 0)
	createGuild(t, s, 40, 2, 400, 5) // user 2's own, before joining the others
	for _, g := range []int64{10, 20, 30} {
		invite(t, s, fmt.Sprint("i", g), g, 1, 0)
	}
	join(t, s, "i20", 2, 10, true)
	join(t, s, "i30", 2, 10, true) // a tie with 20: by guild id
	join(t, s, "i10", 2, 11, true)
	join(t, s, "i10", 3, 12, true)
	_, err := s.CreateChannel(t.Context(), 10, 102, "b", at(20), 0)
	require.NoError(t, err)
	_, err = s.CreateChannel(t.Context(), 10, 101, "a", at(20), 0) // a tie with 102: by id
	require.NoError(t, err)
	_, err = s.CreateChannel(t.Context(), 10, 103, "c", at(19), 0)
	require.NoError(t, err)

	ids := func(user int64) []int64 {
		gs, err := s.GuildsOf(t.Context(), user)
		require.NoError(t, err)
		var ids []int64
		for _, g := range gs {
			require.Equal(t, guild(t, s, g.ID), g, "as Guild gives it")
			ids = append(ids, g.ID)
		}
		return ids
	}
	require.Equal(t, []int64{10, 20, 30}, ids(1), "created (and so joined) at the same time: by guild id")
	require.Equal(t, []int64{40, 20, 30, 10}, ids(2))
	require.Equal(t, []int64{10}, ids(3))
	require.Empty(t, ids(9))
	g := guild(t, s, 10)
	require.Equal(t, 3, g.MemberCount)
	var channels []int64
	for _, c := range g.Channels {
		channels = append(channels, c.ID)
	}
	require.Equal(t, []int64{100, 103, 101, 102}, channels, "oldest first, ties by id")
}

func testMembers(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 5, 1, 7, 3, 9, 2, 8)
	createGuild(t, s, 10, 5, 100, 0)
	invite(t, s, "i", 10, 5, 0)
	for k, u := range []int64{9, 1, 7, 3, 2} {
		join(t, s, "i", u, k, true)
	}
	require.Equal(t, []int64{1, 2, 3, 5, 7, 9}, memberIDs(t, s, 10))
	page := func(after int64, limit int) []int64 {
		us, err := s.Members(t.Context(), 10, after, limit)
		require.NoError(t, err)
		var ids []int64
		for _, u := range us {
			want, err := s.UserByID(t.Context(), u.ID)
			require.NoError(t, err)
			require.Equal(t, want, u)
			ids = append(ids, u.ID)
		}
		return ids
	}
	require.Equal(t, []int64{1, 2, 3}, page(0, 3))
	require.Equal(t, []int64{5, 7, 9}, page(3, 3))
	require.Equal(t, []int64{5, 7}, page(4, 2))
	require.Empty(t, page(9, 3))
	require.Equal(t, []int64{1, 2, 3, 5, 7, 9}, page(0, 100))
	var all []int64
	for after := int64(0); ; {
		p := page(after, 4)
		all = append(all, p...)
		if len(p) < 4 {
			break
		}
		after = p[len(p)-1]
	}
	require.Equal(t, []int64{1, 2, 3, 5, 7, 9}, all, "paging")

	_, err := s.Members(t.Context(), 99, 0, 10)
	require.ErrorIs(t, err, persistence.ErrNotFound)
	_, err = s.GuildMemberIDs(t.Context(), 99)
	require.ErrorIs(t, err, persistence.ErrNotFound)
	_, err = s.Members(t.Context(), 10, 0, 0)
	require.Error(t, err, "limit not positive")
}

func testInvites(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1)
	createGuild(t, s, 10, 1, 100, 0)
	inv := persistence.Invite{Code: "abc_DEF-123", GuildID: 10, CreatedBy: 1, MaxUses: 5, Uses: 3, ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	require.NoError(t, s.CreateInvite(t.Context(), inv))
	got, err := s.InviteByCode(t.Context(), "abc_DEF-123")
	require.NoError(t, err)
	inv.Uses, inv.ExpiresAt, inv.CreatedAt = 0, stored(inv.ExpiresAt), stored(inv.CreatedAt)
	require.Equal(t, inv, got, "stored with no use")
	_, err = s.InviteByCode(t.Context(), "abc_def-123")
	require.ErrorIs(t, err, persistence.ErrNotFound, "codes are case-sensitive")
	require.Error(t, s.CreateInvite(t.Context(), inv), "a code taken")
	inv.Code = "other"
	inv.GuildID = 99
	require.ErrorIs(t, s.CreateInvite(t.Context(), inv), persistence.ErrNotFound, "no such guild")
	inv.GuildID, inv.CreatedBy = 10, 9
	require.ErrorIs(t, s.CreateInvite(t.Context(), inv), persistence.ErrNotFound, "no such user")
}

func testJoinGuild(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3, 4, 5)
	createGuild(t, s, 10, 1, 100, 0)
	invite(t, s, "once", 10, 1, 1)
	invite(t, s, "twice", 10, 1, 2)
	uses := func(code string) int {
		inv, err := s.InviteByCode(t.Context(), code)
		require.NoError(t, err)
		return inv.Uses
	}

	g := join(t, s, "once", 2, 1, true)
	require.Equal(t, 2, g.MemberCount)
	require.Equal(t, guild(t, s, 10), g)
	require.Equal(t, 1, uses("once"))
	g = join(t, s, "once", 2, 2, false)
	require.Equal(t, guild(t, s, 10), g, "already a member: the guild, even with the invite used up")
	require.Equal(t, 1, uses("once"))
	_, _, err := s.JoinGuild(t.Context(), "once", 3, at(2), 0, 0)
	require.ErrorIs(t, err, persistence.ErrInviteNotFound, "used up")

	join(t, s, "twice", 3, 3, true)
	join(t, s, "twice", 3, 4, false)
	join(t, s, "twice", 1, 4, false) // the owner
	require.Equal(t, 1, uses("twice"), "an idempotent join consumes no use")
	join(t, s, "twice", 4, 5, true)
	require.Equal(t, 2, uses("twice"))
	_, _, err = s.JoinGuild(t.Context(), "twice", 5, at(6), 0, 0)
	require.ErrorIs(t, err, persistence.ErrInviteNotFound, "used up")
	require.Equal(t, []int64{1, 2, 3, 4}, memberIDs(t, s, 10))
	require.Equal(t, 4, guild(t, s, 10).MemberCount)

	_, _, err = s.JoinGuild(t.Context(), "nope", 5, at(6), 0, 0)
	require.ErrorIs(t, err, persistence.ErrInviteNotFound, "no such code")

	t.Run("expired", func(t *testing.T) {
		require.NoError(t, s.CreateInvite(t.Context(), persistence.Invite{Code: "exp", GuildID: 10, CreatedBy: 1,
			ExpiresAt: at(100), CreatedAt: at(0)}))
		_, _, err := s.JoinGuild(t.Context(), "exp", 5, at(100), 0, 0)
		require.ErrorIs(t, err, persistence.ErrInviteNotFound, "expired at now")
		_, _, err = s.JoinGuild(t.Context(), "exp", 5, at(101), 0, 0)
		require.ErrorIs(t, err, persistence.ErrInviteNotFound, "expired before now")
		g, joined, err := s.JoinGuild(t.Context(), "exp", 2, at(200), 0, 0)
		require.NoError(t, err, "a member: the guild")
		require.False(t, joined)
		require.EqualValues(t, 10, g.ID)
		g = join(t, s, "exp", 5, 99, true) // before expiry
		require.Equal(t, 5, g.MemberCount)
		require.Equal(t, 1, uses("exp"))
		requireMember(t, s, 10, 5, true)
	})
	t.Run("not a user", func(t *testing.T) {
		invite(t, s, "any", 10, 1, 0)
		_, _, err := s.JoinGuild(t.Context(), "any", 99, at(1), 0, 0)
		require.ErrorIs(t, err, persistence.ErrNotFound)
		require.Zero(t, uses("any"))
		require.Equal(t, 5, guild(t, s, 10).MemberCount)
	})
}

func testJoinGuildLimits(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3, 4)
	createGuild(t, s, 10, 1, 100, 0)
	invite(t, s, "i", 10, 1, 0)
	_, _, err := s.JoinGuild(t.Context(), "i", 2, at(1), 2, 0)
	require.NoError(t, err)
	_, _, err = s.JoinGuild(t.Context(), "i", 3, at(1), 2, 0)
	require.ErrorIs(t, err, persistence.ErrGuildFull)
	g, joined, err := s.JoinGuild(t.Context(), "i", 2, at(1), 2, 0)
	require.NoError(t, err, "a member of a full guild: the guild")
	require.False(t, joined)
	require.Equal(t, 2, g.MemberCount)
	inv, err := s.InviteByCode(t.Context(), "i")
	require.NoError(t, err)
	require.Equal(t, 1, inv.Uses, "a refused join consumes no use")

	// User 3 is in 2 guilds of its own.
	createGuild(t, s, 20, 3, 200, 0)
	createGuild(t, s, 30, 3, 300, 0)
	_, _, err = s.JoinGuild(t.Context(), "i", 3, at(1), 0, 2)
	require.ErrorIs(t, err, persistence.ErrTooManyGuilds)
	_, _, err = s.JoinGuild(t.Context(), "i", 3, at(1), 0, 3)
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 3}, memberIDs(t, s, 10))
}

// raceJoins has users join with code at once and returns how many joined
// and the errors of the others.
func raceJoins(t *testing.T, s persistence.Store, code string, users []int64, maxMembers, maxGuilds int) (joined int, errs []error) {
	t.Helper()
	results := make([]error, len(users))
	did := make([]bool, len(users))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Go(func() {
			<-start
			_, did[i], results[i] = s.JoinGuild(t.Context(), code, u, at(1), maxMembers, maxGuilds)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range results {
		switch {
		case err != nil:
			errs = append(errs, err)
		case did[i]:
			joined++
		default:
			t.Fatalf("user %d: not joined, without an error", users[i])
		}
	}
	return joined, errs
}

func userRange(from, n int64) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = from + int64(i)
	}
	return ids
}

// testJoinGuildConcurrentMaxUses: 50 joins race on an invite of 10 uses.
func testJoinGuildConcurrentMaxUses(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	users := userRange(100, 50)
	createUsers(t, s, 1)
	createUsers(t, s, users...)
	createGuild(t, s, 10, 1, 100_000, 0)
	invite(t, s, "ten", 10, 1, 10)
	joined, errs := raceJoins(t, s, "ten", users, 0, 0)
	require.Equal(t, 10, joined)
	for _, err := range errs {
		require.ErrorIs(t, err, persistence.ErrInviteNotFound)
	}
	inv, err := s.InviteByCode(t.Context(), "ten")
	require.NoError(t, err)
	require.Equal(t, 10, inv.Uses)
	require.Equal(t, 11, guild(t, s, 10).MemberCount)
	require.Len(t, memberIDs(t, s, 10), 11)
}

// testJoinGuildConcurrentFull: 20 joins race into a guild of at most 5
// members by an unlimited invite: 4 join besides the owner.
func testJoinGuildConcurrentFull(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	users := userRange(100, 20)
	createUsers(t, s, 1)
	createUsers(t, s, users...)
	createGuild(t, s, 10, 1, 100_000, 0)
	invite(t, s, "open", 10, 1, 0)
	joined, errs := raceJoins(t, s, "open", users, 5, 0)
	require.Equal(t, 4, joined)
	for _, err := range errs {
		require.ErrorIs(t, err, persistence.ErrGuildFull)
	}
	require.Equal(t, 5, guild(t, s, 10).MemberCount)
	require.Len(t, memberIDs(t, s, 10), 5)
	inv, err := s.InviteByCode(t.Context(), "open")
	require.NoError(t, err)
	require.Equal(t, 4, inv.Uses)
}

// testJoinGuildConcurrentTooManyGuilds: one user joins 10 guilds at once
// with a limit of 3 guilds, one of which it is in already.
func testJoinGuildConcurrentTooManyGuilds(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2)
	createGuild(t, s, 5, 2, 50, 0)
	errs := make([]error, 10)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range int64(10) {
		createGuild(t, s, 10+i, 1, 100+i, 0)
		invite(t, s, fmt.Sprint("i", i), 10+i, 1, 0)
		wg.Go(func() {
			<-start
			_, _, errs[i] = s.JoinGuild(t.Context(), fmt.Sprint("i", i), 2, at(1), 0, 3)
		})
	}
	close(start)
	wg.Wait()
	var joined int
	for _, err := range errs {
		if err == nil {
			joined++
			continue
		}
		require.ErrorIs(t, err, persistence.ErrTooManyGuilds)
	}
	require.Equal(t, 2, joined)
	gs, err := s.GuildsOf(t.Context(), 2)
	require.NoError(t, err)
	require.Len(t, gs, 3)
}

// testJoinGuildConcurrentSameUser: one user joins one guild by several
// invites at once: it joins once, and one use is consumed in all.
func testJoinGuildConcurrentSameUser(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2)
	createGuild(t, s, 10, 1, 100, 0)
	var codes []string
	for i := range 8 {
		codes = append(codes, fmt.Sprint("i", i))
		invite(t, s, codes[i], 10, 1, 0)
	}
	joined := make([]bool, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i, code := range codes {
		wg.Go(func() { _, joined[i], errs[i] = s.JoinGuild(t.Context(), code, 2, at(1), 0, 0) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	var n, uses int
	for i, code := range codes {
		if joined[i] {
			n++
		}
		inv, err := s.InviteByCode(t.Context(), code)
		require.NoError(t, err)
		uses += inv.Uses
	}
	require.Equal(t, 1, n)
	require.Equal(t, 1, uses)
	require.Equal(t, 2, guild(t, s, 10).MemberCount)
}

func testLeaveAndKick(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3, 4)
	createGuild(t, s, 10, 1, 100, 0)
	invite(t, s, "i", 10, 1, 0)
	for _, u := range []int64{2, 3} {
		join(t, s, "i", u, 1, true)
	}
	write(t, s, send(100, 1, 1000, "hello", "", at(2)))
	markRead(t, s, 2, 100, 1, true)

	require.ErrorIs(t, s.LeaveGuild(t.Context(), 10, 1), persistence.ErrOwner)
	require.ErrorIs(t, s.KickMember(t.Context(), 10, 1), persistence.ErrOwner)
	require.ErrorIs(t, s.LeaveGuild(t.Context(), 10, 4), persistence.ErrNotFound, "not a member")
	require.ErrorIs(t, s.KickMember(t.Context(), 10, 4), persistence.ErrNotFound, "not a member")
	require.ErrorIs(t, s.LeaveGuild(t.Context(), 99, 2), persistence.ErrNotFound, "no such guild")
	require.ErrorIs(t, s.KickMember(t.Context(), 99, 2), persistence.ErrNotFound, "no such guild")
	require.Equal(t, 3, guild(t, s, 10).MemberCount)

	require.NoError(t, s.LeaveGuild(t.Context(), 10, 2))
	requireMember(t, s, 10, 2, false)
	require.ErrorIs(t, s.LeaveGuild(t.Context(), 10, 2), persistence.ErrNotFound, "left already")
	require.NoError(t, s.KickMember(t.Context(), 10, 3))
	requireMember(t, s, 10, 3, false)
	require.ErrorIs(t, s.KickMember(t.Context(), 10, 3), persistence.ErrNotFound, "kicked already")
	require.Equal(t, 1, guild(t, s, 10).MemberCount)
	require.Equal(t, []int64{1}, memberIDs(t, s, 10))
	gs, err := s.GuildsOf(t.Context(), 2)
	require.NoError(t, err)
	require.Empty(t, gs)

	_, _, err = s.MarkRead(t.Context(), 2, 100, 1)
	require.ErrorIs(t, err, persistence.ErrNotFound, "a channel of a guild left")
	require.Empty(t, chats(t, s, 2, 0, 10))
	_, err = s.Chats(t.Context(), 2, 100, 10)
	require.ErrorIs(t, err, persistence.ErrNotFound, "before: a channel of a guild left")

	// Back in: the read position went with the membership.
	join(t, s, "i", 2, 3, true)
	c := chats(t, s, 2, 0, 10)
	require.Len(t, c, 1)
	require.Zero(t, c[0].ReadSeq)
	require.Equal(t, 1, c[0].Unread)
	require.Equal(t, 2, guild(t, s, 10).MemberCount)
}

func testRenameGuild(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1)
	g := createGuild(t, s, 10, 1, 100, 0)
	got, err := s.RenameGuild(t.Context(), 10, "Renamed ✓")
	require.NoError(t, err)
	g.Name = "Renamed ✓"
	require.Equal(t, g, got)
	require.Equal(t, g, guild(t, s, 10))
	_, err = s.RenameGuild(t.Context(), 99, "x")
	require.ErrorIs(t, err, persistence.ErrNotFound)
}

// testDeleteGuild deletes a guild with two channels that have messages
// and read states, members and invites. Its channel rooms do not exist
// afterwards: History gives nothing, Changes nothing and current 0,
// MessageByID and MarkRead ErrNotFound, and a send is refused. Another
// guild and a DM keep everything.
func testDeleteGuild(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3)
	createGuild(t, s, 10, 1, 100, 0)
	_, err := s.CreateChannel(t.Context(), 10, 101, "second", at(1), 0)
	require.NoError(t, err)
	createGuild(t, s, 20, 2, 200, 0)
	dm := ensureDMRoom(t, s, 1, 2, 300)
	invite(t, s, "i10", 10, 1, 0)
	invite(t, s, "i20", 20, 2, 0)
	join(t, s, "i10", 3, 1, true)
	join(t, s, "i10", 2, 2, true)
	join(t, s, "i20", 1, 2, true)
	write(t, s, send(100, 1, 1000, "a", "n", at(3)), send(101, 3, 1001, "b", "", at(3)), edit(100, 1000, "a2", at(4)),
		send(200, 2, 2000, "c", "", at(3)), send(dm, 1, 3000, "d", "", at(3)))
	markRead(t, s, 3, 100, 1, true)
	markRead(t, s, 1, 200, 1, true)

	ids, err := s.DeleteGuild(t.Context(), 10)
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 3}, ids, "the former members")

	_, err = s.Guild(t.Context(), 10)
	require.ErrorIs(t, err, persistence.ErrNotFound)
	for _, u := range ids {
		requireMember(t, s, 10, u, false)
	}
	_, err = s.GuildMemberIDs(t.Context(), 10)
	require.ErrorIs(t, err, persistence.ErrNotFound)
	_, err = s.InviteByCode(t.Context(), "i10")
	require.ErrorIs(t, err, persistence.ErrNotFound, "its invites")
	_, _, err = s.JoinGuild(t.Context(), "i10", 3, at(5), 0, 0)
	require.ErrorIs(t, err, persistence.ErrInviteNotFound)
	for _, room := range []int64{100, 101} {
		_, err = s.ChannelByID(t.Context(), room)
		require.ErrorIs(t, err, persistence.ErrNotFound, "channel %d", room)
		ms, err := s.History(t.Context(), room, persistence.Cursor{Time: at(100)}, 10)
		require.NoError(t, err)
		require.Empty(t, ms, "history of channel %d", room)
		ms, cur, err := s.Changes(t.Context(), room, 0, 10)
		require.NoError(t, err)
		require.Empty(t, ms, "changes of channel %d", room)
		require.Zero(t, cur)
		_, _, err = s.MarkRead(t.Context(), 3, room, 0)
		require.ErrorIs(t, err, persistence.ErrNotFound)
	}
	requireNoMessage(t, s, 100, 1000)
	requireNoMessage(t, s, 101, 1001)
	results := write(t, s, send(100, 1, 1002, "after", "", at(6)))
	require.ErrorIs(t, results[0].Err, persistence.ErrRefused, "a send to a deleted channel")

	gs, err := s.GuildsOf(t.Context(), 3)
	require.NoError(t, err)
	require.Empty(t, gs)
	require.Empty(t, chats(t, s, 3, 0, 10))
	// The rest stands.
	g := guild(t, s, 20)
	require.Equal(t, 2, g.MemberCount)
	c := chats(t, s, 1, 0, 10)
	require.Len(t, c, 2)
	require.ElementsMatch(t, []int64{200, dm}, []int64{c[0].RoomID, c[1].RoomID})
	for _, x := range c {
		if x.RoomID == 200 {
			require.EqualValues(t, 1, x.ReadSeq, "read states of other rooms stay")
		}
	}
	ms, err := s.History(t.Context(), dm, persistence.Cursor{Time: at(100)}, 10)
	require.NoError(t, err)
	require.Len(t, ms, 1)

	_, err = s.DeleteGuild(t.Context(), 10)
	require.ErrorIs(t, err, persistence.ErrNotFound, "deleted already")
	// Its ids are free again.
	createGuild(t, s, 10, 3, 100, 9)
	ms, cur, err := s.Changes(t.Context(), 100, 0, 10)
	require.NoError(t, err)
	require.Empty(t, ms)
	require.Zero(t, cur, "a room made anew starts at 0")
}

func testChannels(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1)
	createGuild(t, s, 10, 1, 100, 0)
	c, err := s.CreateChannel(t.Context(), 10, 101, "random", now, 3)
	require.NoError(t, err)
	require.Equal(t, persistence.Channel{ID: 101, GuildID: 10, Name: "random", CreatedAt: stored(now)}, c)
	got, err := s.ChannelByID(t.Context(), 101)
	require.NoError(t, err)
	require.Equal(t, c, got)
	_, err = s.CreateChannel(t.Context(), 10, 102, "third", at(1), 3)
	require.NoError(t, err)
	_, err = s.CreateChannel(t.Context(), 10, 103, "fourth", at(2), 3)
	require.ErrorIs(t, err, persistence.ErrTooManyChannels)
	_, err = s.ChannelByID(t.Context(), 103)
	require.ErrorIs(t, err, persistence.ErrNotFound)
	_, err = s.CreateChannel(t.Context(), 10, 103, "fourth", at(2), 0)
	require.NoError(t, err, "0: no bound")
	_, err = s.CreateChannel(t.Context(), 99, 104, "x", at(2), 0)
	require.ErrorIs(t, err, persistence.ErrNotFound)
	_, err = s.CreateChannel(t.Context(), 10, 101, "x", at(2), 0)
	require.Error(t, err, "a room id taken")
	g := guild(t, s, 10)
	require.Len(t, g.Channels, 4)
	require.Equal(t, c, g.Channels[1])

	// Seq follows the room's changes.
	write(t, s, send(101, 1, 1, "a", "", at(3)), send(101, 1, 2, "b", "", at(3)), edit(101, 1, "", at(4)))
	got, err = s.ChannelByID(t.Context(), 101)
	require.NoError(t, err)
	require.EqualValues(t, 3, got.Seq)
	require.EqualValues(t, 3, guild(t, s, 10).Channels[1].Seq)
}

func testDeleteChannel(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2)
	createGuild(t, s, 10, 1, 100, 0)
	createGuild(t, s, 20, 1, 200, 0)
	invite(t, s, "i", 10, 1, 0)
	join(t, s, "i", 2, 1, true)
	_, err := s.CreateChannel(t.Context(), 10, 101, "second", at(1), 0)
	require.NoError(t, err)
	write(t, s, send(101, 2, 1, "a", "", at(2)), send(100, 2, 2, "b", "", at(2)))
	markRead(t, s, 2, 101, 1, true)

	c, err := s.DeleteChannel(t.Context(), 101)
	require.NoError(t, err)
	require.Equal(t, persistence.Channel{ID: 101, GuildID: 10, Name: "second", Seq: 1, CreatedAt: at(1)}, c, "as it was")
	_, err = s.ChannelByID(t.Context(), 101)
	require.ErrorIs(t, err, persistence.ErrNotFound)
	requireNoMessage(t, s, 101, 1)
	ms, err := s.History(t.Context(), 101, persistence.Cursor{Time: at(100)}, 10)
	require.NoError(t, err)
	require.Empty(t, ms)
	_, _, err = s.MarkRead(t.Context(), 2, 101, 0)
	require.ErrorIs(t, err, persistence.ErrNotFound)
	requireMessage(t, s, sent(send(100, 2, 2, "b", "", at(2)), 1))
	require.Len(t, guild(t, s, 10).Channels, 1)
	cs := chats(t, s, 2, 0, 10)
	require.Len(t, cs, 1)
	require.EqualValues(t, 100, cs[0].RoomID)

	_, err = s.DeleteChannel(t.Context(), 100)
	require.ErrorIs(t, err, persistence.ErrLastChannel)
	_, err = s.ChannelByID(t.Context(), 100)
	require.NoError(t, err, "the last channel stays")
	_, err = s.DeleteChannel(t.Context(), 101)
	require.ErrorIs(t, err, persistence.ErrNotFound, "deleted already")
	_, err = s.DeleteChannel(t.Context(), 999)
	require.ErrorIs(t, err, persistence.ErrNotFound)
	dm := ensureDMRoom(t, s, 1, 2, 300)
	_, err = s.DeleteChannel(t.Context(), dm)
	require.ErrorIs(t, err, persistence.ErrNotFound, "a DM room is no channel")
}

// testDeleteChannelConcurrent deletes both channels of a guild at once,
// several times over: one goes, the other is the last.
func testDeleteChannelConcurrent(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1)
	for i := range int64(5) {
		g := 10 + i
		createGuild(t, s, g, 1, 100*g, 0)
		_, err := s.CreateChannel(t.Context(), g, 100*g+1, "second", at(1), 0)
		require.NoError(t, err)
		write(t, s, send(100*g, 1, 100*g+50, "a", "", at(2)), send(100*g+1, 1, 100*g+51, "b", "", at(2)))
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for j := range int64(2) {
			wg.Go(func() { _, errs[j] = s.DeleteChannel(t.Context(), 100*g+j) })
		}
		wg.Wait()
		require.Equal(t, 1, btoi(errs[0] == nil)+btoi(errs[1] == nil), "one deleted: %v", errs)
		require.True(t, errors.Is(errs[0], persistence.ErrLastChannel) || errors.Is(errs[1], persistence.ErrLastChannel), "%v", errs)
		require.Len(t, guild(t, s, g).Channels, 1)
	}
}

// testCreateChannelConcurrent creates 10 channels at once in a guild
// allowed 5 (it has 1).
func testCreateChannelConcurrent(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1)
	createGuild(t, s, 10, 1, 100, 0)
	errs := make([]error, 10)
	var wg sync.WaitGroup
	for i := range int64(10) {
		wg.Go(func() { _, errs[i] = s.CreateChannel(t.Context(), 10, 200+i, "c", at(1), 5) })
	}
	wg.Wait()
	var created int
	for _, err := range errs {
		if err == nil {
			created++
			continue
		}
		require.ErrorIs(t, err, persistence.ErrTooManyChannels)
	}
	require.Equal(t, 4, created)
	require.Len(t, guild(t, s, 10).Channels, 5)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// testChannelChat: sends, nonce duplicates, edits, deletes, history,
// changes and numbers work on a channel room as on a DM, by room id.
func testChannelChat(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3)
	createGuild(t, s, 10, 1, 100, 0)
	invite(t, s, "i", 10, 1, 0)
	join(t, s, "i", 2, 1, true)
	join(t, s, "i", 3, 1, true)
	const ch = 100
	a := send(ch, 1, 1, "one", "n1", at(1))
	b := send(ch, 2, 2, "two", "", at(2))
	c := send(ch, 3, 3, "three", "", at(3))
	results := write(t, s, a, b, c, send(ch, 1, 4, "dup", "n1", at(4)))
	require.Equal(t, []persistence.MessageResult{{Message: sent(a, 1)}, {Message: sent(b, 2)}, {Message: sent(c, 3)},
		{Message: sent(a, 1), Duplicate: true}}, results)
	ea := editBy(ch, 1, 1, "one edited", at(5))
	db := edit(ch, 2, "", at(6))
	results = write(t, s, ea, db, editBy(ch, 2, 3, "not mine", at(7)), edit(ch, 2, "gone", at(7)))
	wantA, wantB := edited(sent(a, 1), ea, 4), edited(sent(b, 2), db, 5)
	require.Equal(t, []persistence.MessageResult{{Message: wantA}, {Message: wantB}, {Err: persistence.ErrNotAuthor},
		{Err: persistence.ErrNotFound}}, results)
	requireMessage(t, s, wantA)
	requireMessage(t, s, wantB)
	requireNumbers(t, s, ch, []int64{1, 2, 3}, true)

	hist, err := s.History(t.Context(), ch, persistence.Cursor{Time: at(100)}, 10)
	require.NoError(t, err)
	require.Equal(t, []persistence.Message{sent(c, 3), wantA}, hist, "newest first, without the deleted")
	hist, err = s.History(t.Context(), ch, persistence.Cursor{Time: at(3), ID: 3}, 10)
	require.NoError(t, err)
	require.Equal(t, []persistence.Message{wantA}, hist)

	ms, cur, err := s.Changes(t.Context(), ch, 0, 10)
	require.NoError(t, err)
	require.EqualValues(t, 5, cur)
	require.Equal(t, []persistence.Message{sent(c, 3), wantA}, ms, "sends, the deleted left out")
	ms, _, err = s.Changes(t.Context(), ch, 3, 10)
	require.NoError(t, err)
	require.Equal(t, []persistence.Message{wantA, wantB}, ms, "edits after 3, the delete included")
	ms, _, err = s.Changes(t.Context(), ch, 3, 1)
	require.NoError(t, err)
	require.Equal(t, []persistence.Message{wantA}, ms)
	got, err := s.ChannelByID(t.Context(), ch)
	require.NoError(t, err)
	require.EqualValues(t, 5, got.Seq)
}

// testChannelSeqConcurrent: 6 goroutines write a channel and a DM at once:
// each room's numbers are exactly 1..N.
func testChannelSeqConcurrent(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2)
	createGuild(t, s, 10, 1, 100, 0)
	invite(t, s, "i", 10, 1, 0)
	join(t, s, "i", 2, 1, true)
	dm := ensureDMRoom(t, s, 1, 2, 200)
	ops, results := writers(t, s, 10, func(g, b int) []persistence.MessageOp {
		id := int64(10_000 + 100*g + 10*b)
		author := int64(1 + g%2)
		ops := []persistence.MessageOp{
			send(100, author, id, "c", fmt.Sprint("n", b%3), at(b)),
			send(dm, author, id+1, "d", "", at(b)),
			send(100, author, id+2, "c", "", at(b)),
		}
		if b > 0 {
			ops = append(ops, editBy(100, author, id-10+2, "edited", at(b)))
		}
		return ops
	})
	requireTaken(t, s, 100, ops, results)
	requireTaken(t, s, dm, ops, results)
	var ids []int64
	for i, r := range results {
		if ops[i].Message.RoomID == 100 && ops[i].Kind == persistence.OpSend && !r.Duplicate && r.Err == nil {
			ids = append(ids, r.Message.ID)
		}
	}
	requireNumbers(t, s, 100, ids, true)
}

func testChannelMarkRead(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3)
	createGuild(t, s, 10, 1, 100, 0)
	invite(t, s, "i", 10, 1, 0)
	join(t, s, "i", 2, 1, true)
	write(t, s, send(100, 1, 1, "a", "", at(1)), send(100, 1, 2, "b", "", at(2)))
	require.EqualValues(t, 1, markRead(t, s, 2, 100, 1, true))
	require.EqualValues(t, 1, markRead(t, s, 2, 100, 1, false))
	require.EqualValues(t, 2, markRead(t, s, 1, 100, 2, true), "the owner")
	_, _, err := s.MarkRead(t.Context(), 2, 100, 3)
	require.ErrorIs(t, err, persistence.ErrSeqAhead)
	_, _, err = s.MarkRead(t.Context(), 3, 100, 1)
	require.ErrorIs(t, err, persistence.ErrNotFound, "not a member of the guild")
	_, _, err = s.MarkRead(t.Context(), 3, 100, 0)
	require.ErrorIs(t, err, persistence.ErrNotFound, "not a member of the guild")
	c := chats(t, s, 2, 0, 10)
	require.Len(t, c, 1)
	require.EqualValues(t, 1, c[0].ReadSeq)
	require.Equal(t, 1, c[0].Unread)
}

// testChatsWithChannels mixes user 1's DMs and the channels of its guilds
// by activity:
//
//	at 1: DM 300 (1–2)       at 2: channel 101 (guild 10)
//	at 3: channel 201 (guild 20, which 1 joined)
//	at 4: DM 400 (1–3)       at 5: channel 100 (guild 10), tie with 202
//	at 5: channel 202 (guild 20)
//	channel 102 (guild 10) has no change; guild 30 (1 not in it) has 301.
func testChatsWithChannels(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3)
	createGuild(t, s, 10, 1, 100, 0)
	createGuild(t, s, 20, 2, 200, 0)
	createGuild(t, s, 30, 3, 301, 0)
	for _, c := range []struct{ guild, id int64 }{{10, 101}, {10, 102}, {20, 201}, {20, 202}} {
		_, err := s.CreateChannel(t.Context(), c.guild, c.id, "c", at(0), 0)
		require.NoError(t, err)
	}
	invite(t, s, "i20", 20, 2, 0)
	join(t, s, "i20", 1, 0, true)
	invite(t, s, "i10", 10, 1, 0)
	join(t, s, "i10", 3, 0, true)
	ensureDMRoom(t, s, 1, 2, 300)
	ensureDMRoom(t, s, 1, 3, 400)
	write(t, s, send(300, 2, 1, "dm", "", at(1)), send(101, 3, 2, "c101", "", at(2)), send(201, 2, 3, "c201", "", at(3)),
		send(400, 1, 4, "dm", "", at(4)), send(100, 1, 5, "c100", "", at(5)), send(202, 2, 6, "c202", "", at(5)),
		send(301, 3, 7, "c301", "", at(6)), send(201, 1, 8, "mine", "", at(3)))
	message := func(room, id int64) *persistence.Message {
		m, err := s.MessageByID(t.Context(), room, id)
		require.NoError(t, err)
		return &m
	}
	channel := func(room, guild, seq int64, unread int, last int64, k int) persistence.ChatSummary {
		return persistence.ChatSummary{RoomID: room, Kind: persistence.KindChannel, GuildID: guild, Seq: seq, Unread: unread,
			LastMessage: message(room, last), Activity: at(k)}
	}
	c202 := channel(202, 20, 1, 1, 6, 5)
	c100 := channel(100, 10, 1, 0, 5, 5)
	d400 := persistence.ChatSummary{RoomID: 400, Kind: persistence.KindDM, Low: 1, High: 3, Seq: 1, LastMessage: message(400, 4), Activity: at(4)}
	c201 := channel(201, 20, 2, 1, 8, 3)
	c101 := channel(101, 10, 1, 1, 2, 2)
	d300 := persistence.ChatSummary{RoomID: 300, Kind: persistence.KindDM, Low: 1, High: 2, Seq: 1, Unread: 1, LastMessage: message(300, 1), Activity: at(1)}
	all := []persistence.ChatSummary{c202, c100, d400, c201, c101, d300}
	require.Equal(t, all, chats(t, s, 1, 0, 10), "by activity, ties by room id descending; no channel without a change; none of a guild not joined")
	require.Equal(t, all[:3], chats(t, s, 1, 0, 3), "limit")
	require.Equal(t, all[2:], chats(t, s, 1, 100, 10), "after a channel")
	require.Equal(t, all[3:5], chats(t, s, 1, 400, 2), "after a DM")
	require.Equal(t, all[1:], chats(t, s, 1, 202, 10), "after a tie")
	require.Empty(t, chats(t, s, 1, 102, 10), "after a channel without a change")
	for _, before := range []int64{301, 999} {
		_, err := s.Chats(t.Context(), 1, before, 10)
		require.ErrorIs(t, err, persistence.ErrNotFound, "before %d: not the user's", before)
	}
	for limit := 1; limit <= 4; limit++ {
		var got []persistence.ChatSummary
		var before int64
		for range 10 {
			page := chats(t, s, 1, before, limit)
			got = append(got, page...)
			if len(page) < limit {
				break
			}
			before = page[len(page)-1].RoomID
		}
		require.Equal(t, all, got, "paging by %d", limit)
	}
	// User 3: DM 400, guild 10's channels and guild 30's.
	got := chats(t, s, 3, 0, 10)
	var rooms []int64
	for _, c := range got {
		rooms = append(rooms, c.RoomID)
	}
	require.Equal(t, []int64{301, 100, 400, 101}, rooms)

	// Reading a channel and a new change in another.
	markRead(t, s, 1, 202, 1, true)
	results := write(t, s, send(101, 3, 9, "new", "", at(7)))
	c101.Seq, c101.Unread, c101.LastMessage, c101.Activity = 2, 2, &results[0].Message, at(7)
	c202.ReadSeq, c202.Unread = 1, 0
	require.Equal(t, []persistence.ChatSummary{c101, c202, c100, d400, c201, d300}, chats(t, s, 1, 0, 10))
	require.True(t, slices.IsSortedFunc(chats(t, s, 2, 0, 10), func(a, b persistence.ChatSummary) int {
		return b.Activity.Compare(a.Activity)
	}))
}

// testDeleteGuildWhileWriting deletes guilds and channels while writers
// send into and edit their channels and mark them read: every delete
// succeeds, each write either applies before it (and goes with the room)
// or is refused after it, and no message or read state of a deleted room
// is left.
func testDeleteGuildWhileWriting(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2)
	for round := range int64(4) {
		g := 10 + round
		createGuild(t, s, g, 1, 1000*g, 0)
		_, err := s.CreateChannel(t.Context(), g, 1000*g+1, "second", at(1), 0)
		require.NoError(t, err)
		invite(t, s, fmt.Sprint("i", g), g, 1, 0)
		join(t, s, fmt.Sprint("i", g), 2, 1, true)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for w := range int64(4) {
			wg.Go(func() {
				room := 1000*g + w%2
				for i := int64(0); ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := 1_000_000*g + 10_000*w + i
					ops := []persistence.MessageOp{send(room, 1+w%2, id, "m", fmt.Sprint("n", i), at(2)), edit(room, id, "e", at(3))}
					if _, err := s.WriteMessages(t.Context(), ops); err != nil {
						errs[w] = err
						return
					}
					if _, _, err := s.MarkRead(t.Context(), 1+w%2, room, 1); err != nil &&
						!errors.Is(err, persistence.ErrNotFound) && !errors.Is(err, persistence.ErrSeqAhead) {
						errs[w] = err
						return
					}
				}
			})
		}
		time.Sleep(20 * time.Millisecond)
		var derr error
		if round%2 == 0 {
			_, derr = s.DeleteGuild(t.Context(), g)
		} else {
			_, derr = s.DeleteChannel(t.Context(), 1000*g+1)
		}
		time.Sleep(20 * time.Millisecond)
		close(stop)
		wg.Wait()
		require.NoError(t, derr, "round %d", round)
		for _, err := range errs {
			require.NoError(t, err, "round %d", round)
		}
		deleted := []int64{1000*g + 1}
		if round%2 == 0 {
			deleted = append(deleted, 1000*g)
		}
		for _, room := range deleted {
			ms, cur, err := s.Changes(t.Context(), room, 0, 10)
			require.NoError(t, err)
			require.Empty(t, ms, "round %d: messages of room %d", round, room)
			require.Zero(t, cur)
			for _, u := range []int64{1, 2} {
				for _, c := range chats(t, s, u, 0, 100) {
					require.NotEqual(t, room, c.RoomID)
				}
			}
		}
		if round%2 == 1 {
			requireNumbers(t, s, 1000*g, func() []int64 {
				ms, _, err := s.Changes(t.Context(), 1000*g, 0, 100_000)
				require.NoError(t, err)
				var ids []int64
				for _, m := range ms {
					ids = append(ids, m.ID)
				}
				return ids
			}(), true)
		}
	}
}
