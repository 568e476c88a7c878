package storetest

import (
	"testing"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/stretchr/testify/require"
)

// GuildMigrationReadStates are the read positions that GuildMigrationSetup
// asks its caller to store, as version 5's schema has them (MarkRead
// needs version 6): (user_id, room_id, read_seq).
const GuildMigrationReadStates = `INSERT INTO read_states (user_id, room_id, read_seq) VALUES (1, 100, 2), (2, 100, 1), (3, 300, 1)`

// GuildMigrationSetup writes, in a store at version 5, the DMs of users
// 1–4 that RequireGuildMigrated checks after migration 6 (which rebuilds
// rooms in SQLite): room 100 (1–2) with sends, an edit and a delete, room
// 200 (1–3), room 300 (2–3), room 400 (1–4) without a change. The caller
// then stores GuildMigrationReadStates.
func GuildMigrationSetup(t *testing.T, s persistence.Store) {
	t.Helper()
	createUsers(t, s, 1, 2, 3, 4)
	for i, pair := range [][2]int64{{1, 2}, {1, 3}, {2, 3}, {1, 4}} {
		ensureDMRoom(t, s, pair[0], pair[1], int64(100*(i+1)))
	}
	write(t, s, send(100, 1, 1, "one", "n1", at(1)), send(100, 2, 2, "two", "", at(2)), send(100, 2, 3, "three", "", at(3)),
		edit(100, 2, "two edited", at(4)), edit(100, 3, "", at(5)))
	write(t, s, send(200, 3, 10, "ten", "", at(6)))
	write(t, s, send(300, 2, 20, "twenty", "", at(7)), send(300, 3, 21, "twenty-one", "", at(8)))
}

// RequireGuildMigrated checks a store that GuildMigrationSetup wrote and
// that migrated to the end: every DM, message, number and read position is
// as it was and works as before (the DM key finds the rooms, numbering
// goes on), and guilds work beside them.
func RequireGuildMigrated(t *testing.T, s persistence.Store) {
	t.Helper()
	ctx := t.Context()
	message := func(room, id int64) *persistence.Message {
		m, err := s.MessageByID(ctx, room, id)
		require.NoError(t, err)
		return &m
	}
	require.Equal(t, persistence.Message{ID: 2, RoomID: 100, AuthorID: 2, Content: "two edited", CreatedAt: at(2),
		EditedAt: ptr(at(4)), Seq: 2, EditSeq: 4}, *message(100, 2))
	dm := func(room, low, high, seq, read int64, unread int, last int64, k int) persistence.ChatSummary {
		return persistence.ChatSummary{RoomID: room, Kind: persistence.KindDM, Low: low, High: high, Seq: seq, ReadSeq: read,
			Unread: unread, LastMessage: message(room, last), Activity: at(k)}
	}
	require.Equal(t, []persistence.ChatSummary{dm(200, 1, 3, 1, 0, 1, 10, 6), dm(100, 1, 2, 5, 2, 0, 2, 5)}, chats(t, s, 1, 0, 10))
	require.Equal(t, []persistence.ChatSummary{dm(300, 2, 3, 2, 0, 1, 21, 8), dm(100, 1, 2, 5, 1, 0, 2, 5)}, chats(t, s, 2, 0, 10))
	require.Equal(t, []persistence.ChatSummary{dm(300, 2, 3, 2, 1, 0, 21, 8), dm(200, 1, 3, 1, 0, 0, 10, 6)}, chats(t, s, 3, 0, 10))
	require.Equal(t, int64(2), markRead(t, s, 1, 100, 1, false), "read positions kept")
	hist, err := s.History(ctx, 100, persistence.Cursor{Time: at(100)}, 10)
	require.NoError(t, err)
	require.Equal(t, []persistence.Message{*message(100, 2), *message(100, 1)}, hist)
	ms, cur, err := s.Changes(ctx, 100, 3, 10)
	require.NoError(t, err)
	require.EqualValues(t, 5, cur)
	require.Equal(t, []persistence.Message{*message(100, 2), *message(100, 3)}, ms)

	// The DM key still makes one room per pair.
	for i, pair := range [][2]int64{{1, 2}, {1, 3}, {2, 3}, {1, 4}} {
		require.Equal(t, int64(100*(i+1)), ensureDMRoom(t, s, pair[1], pair[0], 999), "room of %v", pair)
	}
	require.EqualValues(t, 500, ensureDMRoom(t, s, 2, 4, 500))
	st := openDMs(t, s, persistence.DMOpen{Low: 1, High: 2, NewID: 998})
	require.Equal(t, persistence.DMState{Members: true, RoomID: 100, Seq: 5}, st[0])
	// Numbering goes on.
	results := write(t, s, send(100, 1, 4, "four", "", at(9)), send(100, 1, 5, "dup", "n1", at(9)))
	require.EqualValues(t, 6, results[0].Message.Seq)
	require.True(t, results[1].Duplicate, "nonces kept")

	// Guilds beside the DMs.
	createGuild(t, s, 1000, 1, 1001, 10)
	write(t, s, send(1001, 1, 30, "in a channel", "", at(10)))
	c := chats(t, s, 1, 0, 10)
	require.Len(t, c, 3)
	require.Equal(t, persistence.ChatSummary{RoomID: 1001, Kind: persistence.KindChannel, GuildID: 1000, Seq: 1,
		LastMessage: message(1001, 30), Activity: at(10)}, c[0])
	require.EqualValues(t, 100, c[1].RoomID)
}

func ptr[T any](v T) *T { return &v }
