package storeurl_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres/pgtest"
	"github.com/rewind-chat/rewind/persistence/storeurl"
)

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		url, err string
	}{
		{"postgres://u@localhost/rewind", ""},
		{"postgresql://u@localhost/rewind?pool_max_conns=4", ""},
		{"sqlite:rewind.db", ""},
		{"sqlite:/var/lib/rewind/rewind.db", ""},
		{"sqlite:", `database URL "sqlite:" names no file: use sqlite:<path>`},
		{"mysql://localhost/rewind", `database URL "mysql://localhost/rewind": unknown scheme, use postgres://… or sqlite:<path>`},
		{"rewind.db", `database URL "rewind.db": unknown scheme, use postgres://… or sqlite:<path>`},
		{"", `database URL "": unknown scheme, use postgres://… or sqlite:<path>`},
	} {
		t.Run(tt.url, func(t *testing.T) {
			err := storeurl.Check(tt.url)
			if tt.err == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tt.err)
		})
	}
}

// requireMigrated fails unless s has its tables.
func requireMigrated(t *testing.T, s persistence.Store) {
	t.Helper()
	_, err := s.UserByID(t.Context(), 1)
	require.ErrorIs(t, err, persistence.ErrNotFound)
}

func TestOpenSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rewind.db")
	s, err := storeurl.Open(t.Context(), "sqlite:"+path)
	require.NoError(t, err)
	requireMigrated(t, s)
	require.NoError(t, s.Close())
	_, err = os.Stat(path)
	require.NoError(t, err, "sqlite:<path> opens the file at path")
}

func TestOpenPostgres(t *testing.T) {
	s, err := storeurl.Open(t.Context(), pgtest.NewSchemaURL(t))
	require.NoError(t, err)
	requireMigrated(t, s)
	require.NoError(t, s.Close())
}

func TestOpenErrors(t *testing.T) {
	ctx := t.Context()
	_, err := storeurl.Open(ctx, "mysql://localhost/rewind")
	require.EqualError(t, err, storeurl.Check("mysql://localhost/rewind").Error())

	// A directory that does not exist: the driver's error, named by kind.
	_, err = storeurl.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "missing", "rewind.db"))
	require.ErrorContains(t, err, "open sqlite store: sqlite: open ")

	_, err = storeurl.Open(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	require.ErrorContains(t, err, "open postgres store: postgres: open: ")
}
