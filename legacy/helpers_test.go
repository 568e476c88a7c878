package legacy_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/legacy"
	"github.com/rewind-chat/rewind/legacy/legacytest"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres/pgtest"
	"github.com/rewind-chat/rewind/persistence/storeurl"
)

// stores runs f once on a fresh SQLite database and once on a fresh
// PostgreSQL schema (skipped when PostgreSQL is unreachable, failed when it
// is required).
func stores(t *testing.T, f func(t *testing.T, databaseURL string)) {
	t.Run("sqlite", func(t *testing.T) {
		f(t, "sqlite:"+filepath.Join(t.TempDir(), "rewind.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		f(t, pgtest.NewSchemaURL(t))
	})
}

// openStore opens and migrates the store at url, closed when t ends.
func openStore(t *testing.T, url string) persistence.Store {
	t.Helper()
	s, err := storeurl.Open(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// source writes the fixture into a directory of t and opens it.
func source(t *testing.T, f *legacytest.Fixture) (src *legacy.Source, mainPath, chatPath string) {
	t.Helper()
	mainPath, chatPath, err := f.Write(t.TempDir())
	require.NoError(t, err)
	src, err = legacy.Open(context.Background(), mainPath, chatPath)
	require.NoError(t, err)
	t.Cleanup(func() { src.Close() })
	return src, mainPath, chatPath
}

var roomIDs atomic.Int64

// options are the tests' options: small batches, so that the large DM
// takes several, and a cheap hash for the password no one knows.
func options() legacy.Options {
	return legacy.Options{
		NewID:     func() int64 { return 1<<40 + roomIDs.Add(1) },
		BatchSize: 100,
		Password:  auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1},
	}
}

func importInto(t *testing.T, src *legacy.Source, store persistence.Store) *legacy.Result {
	t.Helper()
	res, err := src.Import(context.Background(), store, options())
	require.NoError(t, err)
	requireBalanced(t, res)
	return res
}

// requireBalanced checks that every row read of every table is counted
// once: imported, present, not imported or checked.
func requireBalanced(t *testing.T, res *legacy.Result) {
	t.Helper()
	for _, tb := range res.Tables {
		require.Equal(t, tb.Read, tb.Imported+tb.Present+tb.Skipped+tb.Checked, "table %s", tb.Name)
	}
}

// items returns the report's items about table with key, in order.
func items(res *legacy.Result, table, key string) []legacy.Item {
	var out []legacy.Item
	for _, it := range res.Items {
		if it.Table == table && it.Key == key {
			out = append(out, it)
		}
	}
	return out
}

// kinds returns the kinds of the items about table with key.
func kinds(res *legacy.Result, table, key string) []legacy.Kind {
	var out []legacy.Kind
	for _, it := range items(res, table, key) {
		out = append(out, it.Kind)
	}
	return out
}

// userID is the fixture user's id; it fails t when the id does not parse.
func userID(t *testing.T, u legacytest.User) int64 {
	t.Helper()
	id, err := strconv.ParseInt(u.ID, 10, 64)
	require.NoError(t, err, u.Label)
	return id
}

var seoul = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Seoul")
	if err != nil {
		panic(err)
	}
	return loc
}()

// snapshot describes what the store holds for the fixture's users (and
// extra ids): users, friend lists and the history of every DM between
// them. It leaves out what differs between two equal imports: room ids
// (new snowflakes), and the salt of a password no one knows.
func snapshot(t *testing.T, store persistence.Store, f *legacytest.Fixture, extra ...int64) string {
	t.Helper()
	ctx := context.Background()
	var ids []int64
	for _, u := range f.Users {
		if id, err := strconv.ParseInt(u.ID, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	ids = append(ids, extra...)
	slices.Sort(ids)
	var b strings.Builder
	listIDs := func(us []persistence.User) []int64 {
		out := []int64{}
		for _, u := range us {
			out = append(out, u.ID)
		}
		return out
	}
	for _, id := range ids {
		u, err := store.UserByID(ctx, id)
		if err != nil {
			require.ErrorIs(t, err, persistence.ErrNotFound)
			fmt.Fprintf(&b, "user %d absent\n", id)
			continue
		}
		hash := u.PasswordHash
		if strings.HasPrefix(hash, "$argon2id$") {
			hash = "argon2id"
		}
		profile := "nil"
		if u.Profile != nil {
			profile = *u.Profile
		}
		fmt.Fprintf(&b, "user %d %q %q %s %s gen=%d profile=%s\n", u.ID, u.Name, u.Email, hash,
			u.CreatedAt.UTC().Format(time.RFC3339Nano), u.TokenGeneration, profile)
		in, out, friends, err := store.FriendLists(ctx, id)
		require.NoError(t, err)
		fmt.Fprintf(&b, "  incoming %v outgoing %v friends %v\n", listIDs(in), listIDs(out), listIDs(friends))
	}
	for i, a := range ids {
		for _, c := range ids[i+1:] {
			room, err := store.FindDMRoom(ctx, a, c)
			if err != nil {
				require.ErrorIs(t, err, persistence.ErrNotFound)
				continue
			}
			fmt.Fprintf(&b, "dm %d %d\n", a, c)
			for _, m := range allHistory(t, store, room) {
				fmt.Fprintf(&b, "  %d by %d at %s: %q edited=%v deleted=%v\n", m.ID, m.AuthorID,
					m.CreatedAt.UTC().Format(time.RFC3339Nano), m.Content, m.EditedAt != nil, m.DeletedAt != nil)
			}
		}
	}
	return b.String()
}

// allHistory returns every live message of room, oldest first.
func allHistory(t *testing.T, store persistence.Store, room int64) []persistence.Message {
	t.Helper()
	var all []persistence.Message
	cur := persistence.Cursor{Time: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}
	for {
		ms, err := store.History(context.Background(), room, cur, 100)
		require.NoError(t, err)
		all = append(all, ms...)
		if len(ms) < 100 {
			break
		}
		cur = persistence.Cursor{Time: ms[len(ms)-1].CreatedAt, ID: ms[len(ms)-1].ID}
	}
	slices.Reverse(all)
	return all
}

// room returns the id of the DM room of a and b; it fails t when there is none.
func room(t *testing.T, store persistence.Store, a, b legacytest.User) int64 {
	t.Helper()
	id, err := store.FindDMRoom(context.Background(), userID(t, a), userID(t, b))
	require.NoError(t, err, "DM of %s and %s", a.Label, b.Label)
	return id
}
