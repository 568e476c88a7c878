package postgres

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres/pgtest"
	"github.com/rewind-chat/rewind/persistence/storetest"
	"github.com/stretchr/testify/require"
)

func open(t *testing.T, url string) *Store {
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
