package postgres

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres/pgtest"
	"github.com/rewind-chat/rewind/persistence/storetest"
	"github.com/stretchr/testify/require"
)

func open(t testing.TB, url string) *Store {
	t.Helper()
	s, err := Open(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

// TestPostgresAvailable reports on one line whether this run used
// PostgreSQL; the Makefile shows it.
func TestPostgresAvailable(t *testing.T) {
	url, err := pgtest.Available()
	switch {
	case err == nil:
		fmt.Println("PostgreSQL: ran the tests against " + url)
	case pgtest.Required():
		fmt.Printf("PostgreSQL: REQUIRED (REWIND_REQUIRE_POSTGRES=1) but %s is unreachable: %v\n", url, err)
		t.FailNow()
	default:
		fmt.Printf("PostgreSQL: SKIPPED (%s unreachable: %v)\n", url, err)
	}
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) persistence.Store {
		s := open(t, pgtest.NewSchemaURL(t))
		require.NoError(t, s.Migrate(t.Context()))
		return s
	})
}

// The benchmarks skip when PostgreSQL is unreachable.
func BenchmarkWriteMessages(b *testing.B) {
	for _, batch := range []int{10, 100} {
		b.Run(fmt.Sprint("ops=", batch), func(b *testing.B) {
			s := open(b, pgtest.NewSchemaURL(b))
			require.NoError(b, s.Migrate(b.Context()))
			storetest.BenchWriteMessages(b, s, batch)
		})
	}
}

func BenchmarkOpenDMs(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprint("dms=", n), func(b *testing.B) {
			s := open(b, pgtest.NewSchemaURL(b))
			require.NoError(b, s.Migrate(b.Context()))
			storetest.BenchOpenDMs(b, s, n)
		})
	}
}

// TestHistoryPlan guards that History scans messages_room_created_idx from
// the cursor on, without sorting: a page costs its size, not the room's.
// The other plans are disabled, since any plan is cheap on an empty table.
func TestHistoryPlan(t *testing.T) {
	s := open(t, pgtest.NewSchemaURL(t))
	require.NoError(t, s.Migrate(t.Context()))
	tx, err := s.pool.Begin(t.Context())
	require.NoError(t, err)
	defer tx.Rollback(t.Context())
	_, err = tx.Exec(t.Context(), "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
	require.NoError(t, err)
	rows, err := tx.Query(t.Context(), "EXPLAIN "+historyQuery, 1, time.Now(), 2, 50)
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	plan := strings.Join(lines, "\n")
	require.Contains(t, plan, "Index Scan using messages_room_created_idx on messages")
	require.Regexp(t, `Index Cond: .*ROW\(created_at, id\) < ROW\(`, plan)
	require.NotContains(t, plan, "Sort")
}

// TestOpenDMsPlan guards that OpenDMs reads users, friendships and rooms
// through their keys, whether PostgreSQL plans the statement for the values
// at hand or, as for a prepared statement after a few runs, generically: an
// activation costs its pairs, not the tables. The tables are filled and
// analyzed so that a scan would be the planner's choice if it were cheaper.
func TestOpenDMsPlan(t *testing.T) {
	s := open(t, pgtest.NewSchemaURL(t))
	require.NoError(t, s.Migrate(t.Context()))
	_, err := s.pool.Exec(t.Context(), `
		INSERT INTO users (id, name, name_folded, email, email_folded, password_hash, created_at)
			SELECT g, 'u' || g, 'u' || g, g || '@example.com', g || '@example.com', '', now() FROM generate_series(1, 20000) g;
		INSERT INTO friendships (user_id, friend_id, created_at)
			SELECT g, g + 1, now() FROM generate_series(1, 19999) g
			UNION ALL SELECT g + 1, g, now() FROM generate_series(1, 19999) g;
		INSERT INTO rooms (id, kind, member_low, member_high, created_at)
			SELECT 100000 + g, 1, g, g + 1, now() FROM generate_series(1, 19999, 2) g;
		ANALYZE users, friendships, rooms`)
	require.NoError(t, err)
	lows, highs, newIDs := make([]int64, 100), make([]int64, 100), make([]int64, 100)
	for i := range lows {
		lows[i], highs[i], newIDs[i] = int64(100*i+1), int64(100*i+2), int64(200000+i)
	}
	// explain plans the prepared statement in both modes (EXPLAIN with
	// parameters would plan it for these values either way).
	for mode, plan := range explain(t, s, openDMs, lows, highs, newIDs, kindDM, time.Now()) {
		t.Run(mode, func(t *testing.T) {
			require.NotContains(t, plan, "Seq Scan", plan)
			for _, index := range []string{"users_pkey on users", "friendships_pkey on friendships", "rooms_kind_member_low_member_high_key on rooms"} {
				require.Regexp(t, `Index (Only )?Scan using `+index+`.*\n\s*Index Cond: .*i\.low`, plan, "a lookup per pair")
			}
		})
	}
}

// TestConcurrentMigrate migrates one schema from several pools at once, as
// several processes starting together would: the advisory lock serializes
// them.
func TestConcurrentMigrate(t *testing.T) {
	url := pgtest.NewSchemaURL(t)
	stores := []*Store{open(t, url), open(t, url), open(t, url)}
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.Migrate(t.Context()) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
}

// TestUniqueViolation checks the translation of the unique indexes that
// catch a race past the check in taken.
func TestUniqueViolation(t *testing.T) {
	s := open(t, pgtest.NewSchemaURL(t))
	require.NoError(t, s.Migrate(t.Context()))
	insert := func(id int64, name, email string) error {
		_, err := s.pool.Exec(t.Context(), `INSERT INTO users
			(id, name, name_folded, email, email_folded, password_hash, created_at) VALUES ($1, $2, $2, $3, $3, '', now())`,
			id, name, email)
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

// TestNonceHeldConcurrently sends a nonce that a concurrent transaction
// inserted and commits while the send waits for it. A writer that numbers
// the room holds its row lock, so the batch waits at lockRooms and then
// sees the row. A writer that does not (raw SQL here) leaves the row
// invisible to the duplicate check: the insert waits at the nonce index and
// then fails, and WriteMessages runs the batch again the slow way, which
// sees the row. Either way the duplicate is answered with the row, and no
// number is lost.
func TestNonceHeldConcurrently(t *testing.T) {
	tests := []struct {
		name        string
		locks       bool  // the concurrent writer numbers the room
		holderSeq   int64 // the number of its row
		wantSeq     int64 // the number of the batch's other send
		wantCounter int64 // the room's counter after
	}{
		{"writer numbering the room", true, 1, 2, 2},
		{"writer without the room lock", false, 1000, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, pgtest.NewSchemaURL(t))
			require.NoError(t, s.Migrate(t.Context()))
			ctx := t.Context()
			for _, id := range []int64{1, 2} {
				require.NoError(t, s.CreateUser(ctx, persistence.User{ID: id, Name: fmt.Sprint("user", id), Email: fmt.Sprint("user", id, "@example.com")}))
			}
			room, err := s.EnsureDMRoom(ctx, 1, 2, 100)
			require.NoError(t, err)
			at := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

			tx, err := s.pool.Begin(ctx)
			require.NoError(t, err)
			defer tx.Rollback(ctx)
			if tt.locks {
				_, err = tx.Exec(ctx, `UPDATE rooms SET seq = $2, activity_at = $3 WHERE id = $1`, room, tt.holderSeq, at)
				require.NoError(t, err)
			}
			_, err = tx.Exec(ctx, `INSERT INTO messages (id, room_id, author_id, content, nonce, created_at, seq)
				VALUES (10, $1, 1, 'first', 'n', $2, $3)`, room, at, tt.holderSeq)
			require.NoError(t, err)
			var holder uint32
			require.NoError(t, tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&holder))

			var results []persistence.MessageResult
			done := make(chan error)
			go func() {
				var err error
				results, err = s.WriteMessages(ctx, []persistence.MessageOp{
					{Kind: persistence.OpSend, Message: persistence.Message{ID: 11, RoomID: room, AuthorID: 2, Content: "before", CreatedAt: at}},
					{Kind: persistence.OpSend, Message: persistence.Message{ID: 12, RoomID: room, AuthorID: 1, Content: "retry", Nonce: "n", CreatedAt: at}},
				})
				done <- err
			}()
			// Commit once the send waits for the transaction.
			require.Eventually(t, func() bool {
				var waiting bool
				require.NoError(t, s.pool.QueryRow(ctx,
					`SELECT EXISTS (SELECT FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid)))`, holder).Scan(&waiting))
				return waiting
			}, 10*time.Second, time.Millisecond)
			require.NoError(t, tx.Commit(ctx))
			require.NoError(t, <-done)

			first := persistence.Message{ID: 10, RoomID: room, AuthorID: 1, Content: "first", Nonce: "n", CreatedAt: at, Seq: tt.holderSeq}
			require.Equal(t, []persistence.MessageResult{
				{Message: persistence.Message{ID: 11, RoomID: room, AuthorID: 2, Content: "before", CreatedAt: at, Seq: tt.wantSeq}},
				{Message: first, Duplicate: true},
			}, results)
			_, err = s.MessageByID(ctx, room, 11)
			require.NoError(t, err, "the batch applied once")
			_, err = s.MessageByID(ctx, room, 12)
			require.ErrorIs(t, err, persistence.ErrNotFound)
			var counter int64
			require.NoError(t, s.pool.QueryRow(ctx, `SELECT seq FROM rooms WHERE id = $1`, room).Scan(&counter))
			require.Equal(t, tt.wantCounter, counter)
		})
	}
}

// TestMigrationNumbers migrates messages that version 4 wrote, without
// numbers, to the numbering of migration 5 (storetest.RequireSeqMigrated
// says what must hold).
func TestMigrationNumbers(t *testing.T) {
	ctx := t.Context()
	s := open(t, pgtest.NewSchemaURL(t))
	require.NoError(t, s.migrate(ctx, 4))
	storetest.SeqMigrationSetup(t, s)
	for _, m := range storetest.SeqMigrationMessages {
		_, err := s.pool.Exec(ctx, `INSERT INTO messages (id, room_id, author_id, content, created_at, edited_at, deleted_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, m.ID, m.Room, m.Author, m.Content, m.CreatedAt(), m.EditedAt(), m.DeletedAt())
		require.NoError(t, err)
	}
	require.NoError(t, s.Migrate(ctx))
	storetest.RequireSeqMigrated(t, s)
}

// TestMigrationNumbersMany numbers 50,000 messages of version 4 in 99
// rooms, whose times are out of id order and often shared, a seventh of
// them edited and a thirteenth deleted.
func TestMigrationNumbersMany(t *testing.T) {
	ctx := t.Context()
	s := open(t, pgtest.NewSchemaURL(t))
	require.NoError(t, s.migrate(ctx, 4))
	_, err := s.pool.Exec(ctx, `
		INSERT INTO users (id, name, name_folded, email, email_folded, password_hash, created_at)
			SELECT x, 'u' || x, 'u' || x, x || '@example.com', x || '@example.com', '', now() FROM generate_series(1, 100) x;
		INSERT INTO rooms (id, kind, member_low, member_high, created_at)
			SELECT 1000 + x, 1, x, x + 1, now() FROM generate_series(1, 99) x;
		INSERT INTO messages (id, room_id, author_id, content, created_at, edited_at, deleted_at)
			SELECT x, 1001 + x % 99, 1 + x % 99, CASE WHEN x % 13 = 0 THEN '' ELSE 'm' END,
				'2030-01-01'::timestamptz + (x * 7919 % 20000) * interval '1 second',
				CASE WHEN x % 7 = 0 OR x % 13 = 0 THEN '2030-01-01'::timestamptz + (x * 7919 % 20000 + x % 50) * interval '1 second' END,
				CASE WHEN x % 13 = 0 THEN '2030-01-01'::timestamptz + (x * 7919 % 20000 + x % 50) * interval '1 second' END
			FROM generate_series(1, 50000) x`)
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, s.Migrate(ctx))
	t.Logf("migration 5 of 50,000 messages: %v", time.Since(start))
	var violations int
	require.NoError(t, s.pool.QueryRow(ctx, storetest.SeqViolations).Scan(&violations))
	require.Zero(t, violations)
	// The check sees a counter out of step, and two sends out of order.
	_, err = s.pool.Exec(ctx, `UPDATE rooms SET seq = seq + 1 WHERE id = 1001`)
	require.NoError(t, err)
	require.NoError(t, s.pool.QueryRow(ctx, storetest.SeqViolations).Scan(&violations))
	require.Equal(t, 1, violations)
	_, err = s.pool.Exec(ctx, `UPDATE rooms SET seq = seq - 1 WHERE id = 1001;
		UPDATE messages SET seq = -seq WHERE room_id = 1001 AND seq IN (1, 2);
		UPDATE messages SET seq = 3 + seq WHERE room_id = 1001 AND seq IN (-1, -2)`)
	require.NoError(t, err)
	require.NoError(t, s.pool.QueryRow(ctx, storetest.SeqViolations).Scan(&violations))
	require.Equal(t, 1, violations)
	var rooms int
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT count(*) FROM rooms WHERE seq > 500`).Scan(&rooms))
	require.Equal(t, 99, rooms)
}

// TestGuildMigration migrates DMs of version 5 through migration 6: every
// row of rooms, messages and read_states stays, and the new CHECK refuses
// rooms that are neither a DM nor a channel (storetest.RequireGuildMigrated
// checks the rest).
func TestGuildMigration(t *testing.T) {
	ctx := t.Context()
	s := open(t, pgtest.NewSchemaURL(t))
	require.NoError(t, s.migrate(ctx, 5))
	storetest.GuildMigrationSetup(t, s)
	_, err := s.pool.Exec(ctx, storetest.GuildMigrationReadStates)
	require.NoError(t, err)
	dump := func(query string) []string {
		rows, err := s.pool.Query(ctx, query)
		require.NoError(t, err)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return lines
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
	require.Equal(t, reads, dump(readRows))
	require.Equal(t, []string{
		"rooms_channel_activity_idx", "rooms_guild_idx", "rooms_high_activity_idx", "rooms_kind_member_low_member_high_key",
		"rooms_low_activity_idx", "rooms_pkey",
	}, dump(`SELECT indexname::text FROM pg_indexes WHERE tablename = 'rooms' AND schemaname = current_schema() ORDER BY 1`))

	_, err = s.pool.Exec(ctx, `INSERT INTO guilds (id, name, owner_id, member_count, created_at) VALUES (1, 'g', 1, 1, now())`)
	require.NoError(t, err)
	refused := []struct{ name, row string }{
		{"a DM out of order", `(901, 1, 3, 2, NULL, NULL, now())`},
		{"a DM with one member", `(902, 1, 3, NULL, NULL, NULL, now())`},
		{"a DM in a guild", `(903, 1, 1, 4, 1, NULL, now())`},
		{"a DM of a user that does not exist", `(904, 1, 1, 99, NULL, NULL, now())`},
		{"a channel with members", `(905, 2, 1, 2, 1, 'c', now())`},
		{"a channel without a guild", `(906, 2, NULL, NULL, NULL, 'c', now())`},
		{"a channel of a guild that does not exist", `(907, 2, NULL, NULL, 99, 'c', now())`},
		{"a DM again", `(908, 1, 1, 2, NULL, NULL, now())`},
		{"another kind", `(909, 3, NULL, NULL, NULL, NULL, now())`},
	}
	for _, r := range refused {
		_, err := s.pool.Exec(ctx, `INSERT INTO rooms (id, kind, member_low, member_high, guild_id, name, created_at) VALUES `+r.row)
		require.Error(t, err, r.name)
	}
	_, err = s.pool.Exec(ctx, `DELETE FROM guilds WHERE id = 1`)
	require.NoError(t, err)
	storetest.RequireGuildMigrated(t, s)
}
