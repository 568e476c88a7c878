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

// BenchmarkWriteMessages skips when PostgreSQL is unreachable.
func BenchmarkWriteMessages(b *testing.B) {
	s := open(b, pgtest.NewSchemaURL(b))
	require.NoError(b, s.Migrate(b.Context()))
	storetest.BenchWriteMessages(b, s)
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
