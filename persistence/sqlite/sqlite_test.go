package sqlite

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/storetest"
	"github.com/stretchr/testify/require"
)

func open(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) persistence.Store {
		s := open(t, filepath.Join(t.TempDir(), "rewind.db"))
		require.NoError(t, s.Migrate(t.Context()))
		return s
	})
}

func BenchmarkWriteMessages(b *testing.B) {
	for _, batch := range []int{10, 100} {
		b.Run(fmt.Sprint("ops=", batch), func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), "rewind.db"))
			require.NoError(b, s.Migrate(b.Context()))
			storetest.BenchWriteMessages(b, s, batch)
		})
	}
}

func BenchmarkOpenDMs(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprint("dms=", n), func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), "rewind.db"))
			require.NoError(b, s.Migrate(b.Context()))
			storetest.BenchOpenDMs(b, s, n)
		})
	}
}

// TestHistoryPlan guards that History reads one range of
// messages_room_created_idx in order, without sorting: a page costs its
// size, not the room's.
func TestHistoryPlan(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "rewind.db"))
	require.NoError(t, s.Migrate(t.Context()))
	rows, err := s.read.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+historyQuery, 1, 2, 3, 4)
	require.NoError(t, err)
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
		plan = append(plan, detail)
	}
	require.NoError(t, rows.Err())
	require.Len(t, plan, 1, plan)
	require.Contains(t, plan[0], "SEARCH messages USING INDEX messages_room_created_idx (room_id=? AND created_at<?)")
}

// TestPragmas guards the durability and concurrency settings that the DSN
// gives every connection of both pools.
func TestPragmas(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "rewind.db"))
	tests := []struct {
		pragma string
		write  string
		read   string
	}{
		{"journal_mode", "wal", "wal"},
		{"synchronous", "2", "2"}, // FULL
		{"foreign_keys", "1", "1"},
		{"busy_timeout", "5000", "5000"},
		{"query_only", "0", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.pragma, func(t *testing.T) {
			var got string
			require.NoError(t, s.write.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got))
			require.Equal(t, tt.write, got, "writer")
			require.NoError(t, s.read.QueryRowContext(t.Context(), "PRAGMA "+tt.pragma).Scan(&got))
			require.Equal(t, tt.read, got, "reader")
		})
	}
}

// TestConcurrentMigrate opens the file twice, as two processes would, and
// migrates both at once: BEGIN IMMEDIATE and busy_timeout serialize them.
func TestConcurrentMigrate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rewind.db")
	stores := []*Store{open(t, path), open(t, path), open(t, path)}
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.Migrate(t.Context()) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	var n int
	require.NoError(t, stores[0].read.QueryRowContext(t.Context(), "SELECT count(*) FROM schema_migrations").Scan(&n))
	ms, err := persistence.ReadMigrations(migrations, "migrations")
	require.NoError(t, err)
	require.Equal(t, len(ms), n, "each migration applied once")
}

// TestUniqueViolation checks the translation of the unique indexes that
// catch a race past the check in taken.
func TestUniqueViolation(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "rewind.db"))
	require.NoError(t, s.Migrate(t.Context()))
	insert := func(id int64, name, email string) error {
		_, err := s.write.ExecContext(t.Context(), `INSERT INTO users
			(id, name, name_folded, email, email_folded, password_hash, created_at) VALUES (?, ?, ?, ?, ?, '', 0)`,
			id, name, name, email, email)
		return translate(err)
	}
	require.NoError(t, insert(1, "alice", "alice@example.com"))
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"name", insert(2, "alice", "other@example.com"), persistence.ErrNameTaken},
		{"email", insert(2, "other", "alice@example.com"), persistence.ErrEmailTaken},
		{"id", insert(1, "other", "other@example.com"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Error(t, tt.err)
			if tt.want == nil {
				require.False(t, errors.Is(tt.err, persistence.ErrNameTaken) || errors.Is(tt.err, persistence.ErrEmailTaken), tt.err)
				return
			}
			require.ErrorIs(t, tt.err, tt.want)
		})
	}
}

// TestMigrationNumbers migrates messages that version 4 wrote, without
// numbers, to the numbering of migration 5 (storetest.RequireSeqMigrated
// says what must hold).
func TestMigrationNumbers(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "rewind.db"))
	require.NoError(t, s.migrate(ctx, 4))
	storetest.SeqMigrationSetup(t, s)
	for _, m := range storetest.SeqMigrationMessages {
		_, err := s.write.ExecContext(ctx, `INSERT INTO messages (id, room_id, author_id, content, created_at, edited_at, deleted_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, m.ID, m.Room, m.Author, m.Content, micros(m.CreatedAt()), nullMicros(m.EditedAt()),
			nullMicros(m.DeletedAt()))
		require.NoError(t, err)
	}
	require.NoError(t, s.Migrate(ctx))
	storetest.RequireSeqMigrated(t, s)
}

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return micros(*t)
}

// TestMigrationNumbersMany numbers 50,000 messages of version 4 in 99
// rooms, whose times are out of id order and often shared, a seventh of
// them edited and a thirteenth deleted.
func TestMigrationNumbersMany(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "rewind.db"))
	require.NoError(t, s.migrate(ctx, 4))
	_, err := s.write.ExecContext(ctx, `
		WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 100)
		INSERT INTO users (id, name, name_folded, email, email_folded, password_hash, created_at)
			SELECT x, 'u' || x, 'u' || x, x || '@example.com', x || '@example.com', '', 0 FROM g;
		WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 99)
		INSERT INTO rooms (id, kind, member_low, member_high, created_at) SELECT 1000 + x, 1, x, x + 1, 0 FROM g;
		WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 50000)
		INSERT INTO messages (id, room_id, author_id, content, created_at, edited_at, deleted_at)
			SELECT x, 1001 + x % 99, 1 + x % 99, CASE WHEN x % 13 = 0 THEN '' ELSE 'm' END, (x * 7919) % 20000 * 1000000,
				CASE WHEN x % 7 = 0 OR x % 13 = 0 THEN ((x * 7919) % 20000 + x % 50) * 1000000 END,
				CASE WHEN x % 13 = 0 THEN ((x * 7919) % 20000 + x % 50) * 1000000 END
			FROM g`)
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, s.Migrate(ctx))
	t.Logf("migration 5 of 50,000 messages: %v", time.Since(start))
	var violations int
	require.NoError(t, s.read.QueryRowContext(ctx, storetest.SeqViolations).Scan(&violations))
	require.Zero(t, violations)
	// The check sees a counter out of step, and two sends out of order.
	_, err = s.write.ExecContext(ctx, `UPDATE rooms SET seq = seq + 1 WHERE id = 1001`)
	require.NoError(t, err)
	require.NoError(t, s.read.QueryRowContext(ctx, storetest.SeqViolations).Scan(&violations))
	require.Equal(t, 1, violations)
	_, err = s.write.ExecContext(ctx, `UPDATE rooms SET seq = seq - 1 WHERE id = 1001;
		UPDATE messages SET seq = -seq WHERE room_id = 1001 AND seq IN (1, 2);
		UPDATE messages SET seq = 3 + seq WHERE room_id = 1001 AND seq IN (-1, -2)`)
	require.NoError(t, err)
	require.NoError(t, s.read.QueryRowContext(ctx, storetest.SeqViolations).Scan(&violations))
	require.Equal(t, 1, violations)
	var rooms int
	require.NoError(t, s.read.QueryRowContext(ctx, `SELECT count(*) FROM rooms WHERE seq > 500`).Scan(&rooms))
	require.Equal(t, 99, rooms)
}

// TestGuildMigration migrates DMs of version 5 through migration 6, which
// rebuilds rooms with foreign keys off: every row of rooms, messages and
// read_states stays (none cascades), the indexes are there, foreign keys
// hold and are on again, and the new CHECK refuses rooms that are neither
// a DM nor a channel (storetest.RequireGuildMigrated checks the rest).
func TestGuildMigration(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "rewind.db"))
	require.NoError(t, s.migrate(ctx, 5))
	storetest.GuildMigrationSetup(t, s)
	_, err := s.write.ExecContext(ctx, storetest.GuildMigrationReadStates)
	require.NoError(t, err)
	dump := func(query string) []string {
		rows, err := s.read.QueryContext(ctx, query)
		require.NoError(t, err)
		defer rows.Close()
		var out []string
		for rows.Next() {
			var line string
			require.NoError(t, rows.Scan(&line))
			out = append(out, line)
		}
		require.NoError(t, rows.Err())
		return out
	}
	const (
		roomRows    = `SELECT concat_ws(',', id, kind, member_low, member_high, created_at, seq, activity_at) FROM rooms ORDER BY id`
		messageRows = `SELECT concat_ws(',', id, room_id, author_id, content, nonce, created_at, edited_at, deleted_at, seq, edit_seq) FROM messages ORDER BY id`
		readRows    = `SELECT concat_ws(',', user_id, room_id, read_seq) FROM read_states ORDER BY user_id, room_id`
	)
	rooms, messages, reads := dump(roomRows), dump(messageRows), dump(readRows)
	require.Len(t, rooms, 4)
	require.Len(t, reads, 3)

	require.NoError(t, s.Migrate(ctx))
	require.Equal(t, rooms, dump(roomRows))
	require.Equal(t, messages, dump(messageRows))
	require.Equal(t, reads, dump(readRows), "no read state cascaded")
	require.Empty(t, dump(`SELECT "table" FROM pragma_foreign_key_check`))
	require.Equal(t, []string{"ok"}, dump(`PRAGMA integrity_check`))
	require.Equal(t, []string{
		"rooms_channel_activity_idx", "rooms_guild_idx", "rooms_high_activity_idx", "rooms_low_activity_idx", "sqlite_autoindex_rooms_1",
	}, dump(`SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'rooms' ORDER BY name`))
	require.Equal(t, []string{"rooms"}, dump(`SELECT name FROM sqlite_schema WHERE name LIKE 'rooms%' AND type = 'table'`))
	var fk int
	require.NoError(t, s.write.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk))
	require.Equal(t, 1, fk, "foreign keys on again on the writer")

	refused := []struct{ name, row string }{
		{"a DM out of order", `(901, 1, 3, 2, NULL, NULL, 0)`},
		{"a DM with one member", `(902, 1, 3, NULL, NULL, NULL, 0)`},
		{"a DM in a guild", `(903, 1, 1, 4, 1, NULL, 0)`},
		{"a DM of a user that does not exist", `(904, 1, 1, 99, NULL, NULL, 0)`},
		{"a channel with members", `(905, 2, 1, 2, 1, 'c', 0)`},
		{"a channel without a guild", `(906, 2, NULL, NULL, NULL, 'c', 0)`},
		{"a channel of a guild that does not exist", `(907, 2, NULL, NULL, 99, 'c', 0)`},
		{"a DM again", `(908, 1, 1, 2, NULL, NULL, 0)`},
		{"another kind", `(909, 3, NULL, NULL, NULL, NULL, 0)`},
	}
	_, err = s.write.ExecContext(ctx, `INSERT INTO guilds (id, name, owner_id, member_count, created_at) VALUES (1, 'g', 1, 1, 0)`)
	require.NoError(t, err)
	for _, r := range refused {
		_, err := s.write.ExecContext(ctx, `INSERT INTO rooms (id, kind, member_low, member_high, guild_id, name, created_at) VALUES `+r.row)
		require.Error(t, err, r.name)
	}
	_, err = s.write.ExecContext(ctx, `DELETE FROM rooms WHERE id = 100`)
	require.Error(t, err, "messages still refer to rooms")
	_, err = s.write.ExecContext(ctx, `DELETE FROM guilds WHERE id = 1`)
	require.NoError(t, err)
	storetest.RequireGuildMigrated(t, s)
}
