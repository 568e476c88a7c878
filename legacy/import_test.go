package legacy_test

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/legacy"
	"github.com/rewind-chat/rewind/legacy/legacytest"
	"github.com/rewind-chat/rewind/persistence"
)

// notImported reports whether the report says that the row of table with
// key was not imported.
func notImported(res *legacy.Result, table, key string) bool {
	return slices.ContainsFunc(items(res, table, key), func(it legacy.Item) bool { return it.Done == "not imported" })
}

func TestImportAccountsForEveryRow(t *testing.T) {
	stores(t, func(t *testing.T, url string) {
		ctx := context.Background()
		f := legacytest.Default()
		src, _, _ := source(t, f)
		store := openStore(t, url)
		start := time.Now()
		res := importInto(t, src, store)
		require.False(t, res.DryRun)

		// Users: each one is in the store or reported as not imported.
		ut := res.Table("user")
		require.Equal(t, len(f.Users), ut.Read)
		var stored int
		for _, u := range f.Users {
			skipped := notImported(res, "user", "id="+u.ID)
			id, err := strconv.ParseInt(u.ID, 10, 64)
			if err != nil {
				require.True(t, skipped, u.Label)
				continue
			}
			_, err = store.UserByID(ctx, id)
			if skipped {
				require.ErrorIs(t, err, persistence.ErrNotFound, u.Label)
				continue
			}
			require.NoError(t, err, u.Label)
			stored++
		}
		require.Equal(t, 12, stored)
		require.Equal(t, legacy.Table{Name: "user", Read: 15, Imported: 12, Skipped: 3, Reported: 8}, *ut)

		// DM rows: each one is in its room or reported as not imported.
		users := map[int64]bool{}
		for _, u := range f.Users {
			if id, err := strconv.ParseInt(u.ID, 10, 64); err == nil {
				users[id] = true
			}
		}
		var messages int
		for _, d := range f.DMs {
			tb := res.Table(d.Table)
			require.NotNil(t, tb, d.Table)
			require.Equal(t, len(d.Rows), tb.Read, d.Table)
			var in int
			for _, row := range d.Rows {
				if notImported(res, d.Table, "id="+row.ID) {
					continue
				}
				chat, _ := strconv.ParseInt(strings.TrimPrefix(d.Table, "DM_"), 10, 64)
				id, _ := strconv.ParseInt(row.ID, 10, 64)
				author, _ := strconv.ParseInt(row.Author, 10, 64)
				require.True(t, users[chat^author], "%s row %s", d.Table, row.ID)
				room, err := store.FindDMRoom(ctx, author, chat^author)
				require.NoError(t, err)
				m, err := store.MessageByID(ctx, room, id)
				require.NoError(t, err, "%s row %s", d.Table, row.ID)
				require.Equal(t, author, m.AuthorID)
				created, err := time.ParseInLocation("2006-01-02 15:04:05.999999", row.CreatedAt, seoul)
				require.NoError(t, err)
				require.True(t, created.Equal(m.CreatedAt), "%s row %s: %s", d.Table, row.ID, m.CreatedAt)
				require.Equal(t, strings.ReplaceAll(*row.Content, "\x00", ""), m.Content)
				in++
			}
			require.Equal(t, tb.Imported, in, d.Table)
			require.Equal(t, len(d.Rows), tb.Imported+tb.Skipped, d.Table)
			messages += in
		}
		require.Equal(t, 6+3+1+2+legacytest.BigDM, messages)

		alice, bob, minsu := f.User("alice"), f.User("bob"), f.User("minsu")
		ab := legacytest.Table(alice, bob)
		require.Equal(t, legacy.Table{Name: ab, Read: 11, Imported: 6, Skipped: 5, Reported: 7}, *res.Table(ab))

		// Users keep their ids, spelling (suffixed where taken), emails,
		// profiles, times and digests.
		got, err := store.UserByID(ctx, userID(t, alice))
		require.NoError(t, err)
		require.Equal(t, "Alice", got.Name)
		require.Equal(t, "alice@school.ac.kr", got.Email)
		require.Equal(t, auth.LegacyHash(alice.Password), got.PasswordHash)
		require.Equal(t, time.Date(2021, 3, 2, 0, 0, 0, 0, time.UTC), got.CreatedAt.UTC())
		require.Equal(t, []legacy.Kind{legacy.KindRenamed}, kinds(res, "user", "id="+f.User("alice2").ID))
		for label, name := range map[string]string{"alice2": "alice-2", "alice3": "ＡＬＩＣＥ-3", "minsu": "김민수"} {
			got, err := store.UserByID(ctx, userID(t, f.User(label)))
			require.NoError(t, err)
			require.Equal(t, name, got.Name, label)
		}
		got, err = store.UserByID(ctx, userID(t, minsu))
		require.NoError(t, err)
		require.Equal(t, "https://example.com/minsu.png", *got.Profile)
		require.Equal(t, time.Date(2021, 3, 31, 23, 30, 0, 250000000, time.UTC), got.CreatedAt.UTC())

		heidi := f.User("heidi")
		got, err = store.UserByID(ctx, userID(t, heidi))
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(got.PasswordHash, "$argon2id$"), got.PasswordHash)
		ok, err := auth.CheckPassword(heidi.Password, got.PasswordHash)
		require.NoError(t, err)
		require.False(t, ok)
		require.Equal(t, []legacy.Kind{legacy.KindBadPassword}, kinds(res, "user", "id="+heidi.ID))

		judy := f.User("judy")
		got, err = store.UserByID(ctx, userID(t, judy))
		require.NoError(t, err)
		require.False(t, got.CreatedAt.Before(start.Truncate(time.Microsecond)), "judy's unreadable time becomes the import's")
		require.Equal(t, []legacy.Kind{legacy.KindBadTime}, kinds(res, "user", "id="+judy.ID))

		require.Equal(t, []legacy.Kind{legacy.KindBadID}, kinds(res, "user", "id="+f.User("big").ID))
		require.Equal(t, []legacy.Kind{legacy.KindUnused, legacy.KindBadID}, kinds(res, "user", "id=not-a-number"))
		ivan := items(res, "user", "id="+f.User("ivan").ID)
		require.Len(t, ivan, 1)
		require.Equal(t, legacy.KindConflict, ivan[0].Kind)
		require.Contains(t, ivan[0].Why, bob.ID)

		// Friendships where both list each other; the rest reported.
		pairs := [][2]string{{"alice", "bob"}, {"alice", "minsu"}, {"bob", "minsu"}, {"alice", "grace"}, {"erin", "frank"}}
		for _, p := range pairs {
			friends, err := store.AreFriends(ctx, userID(t, f.User(p[0])), userID(t, f.User(p[1])))
			require.NoError(t, err)
			require.True(t, friends, "%v", p)
		}
		carol := f.User("carol")
		friends, err := store.AreFriends(ctx, userID(t, carol), userID(t, bob))
		require.NoError(t, err)
		require.False(t, friends)
		mu := "user.mutual_users"
		require.Equal(t, []legacy.Kind{legacy.KindOneSided}, kinds(res, mu, "id="+carol.ID+" lists id="+bob.ID))
		require.Equal(t, []legacy.Kind{legacy.KindBadList}, kinds(res, mu, "id="+judy.ID))
		require.Equal(t, []legacy.Kind{legacy.KindUnknownUser}, kinds(res, mu, "id="+minsu.ID+` entry="123456789"`))
		require.Equal(t, legacy.Table{Name: mu, Read: 7, Imported: 4, Skipped: 3, Reported: 3}, *res.Table(mu))

		// Pending requests; one between friends and two crossed, reported.
		in, _, _, err := store.FriendLists(ctx, userID(t, alice))
		require.NoError(t, err)
		require.Equal(t, []int64{userID(t, f.User("dave"))}, ids(in))
		in, _, _, err = store.FriendLists(ctx, userID(t, heidi))
		require.NoError(t, err)
		require.Equal(t, []int64{userID(t, alice)}, ids(in))
		mr := "user.mutual_requests"
		require.Equal(t, []legacy.Kind{legacy.KindFriendRequest}, kinds(res, mr, "id="+alice.ID+" asked by id="+bob.ID))
		erin, frank := f.User("erin"), f.User("frank")
		crossed := items(res, mr, "id="+erin.ID+" asked by id="+frank.ID)
		require.Len(t, crossed, 1)
		require.Equal(t, "imported as a friendship", crossed[0].Done)
		require.Equal(t, []legacy.Kind{legacy.KindBadID}, kinds(res, mr, "id="+minsu.ID+` entry="x1"`))
		require.Equal(t, legacy.Table{Name: mr, Read: 7, Imported: 4, Skipped: 3, Reported: 5}, *res.Table(mr))

		// The DM rows the import could not take as they are.
		rows := f.DM(ab).Rows
		require.Equal(t, []legacy.Kind{legacy.KindEmptyContent}, kinds(res, ab, "id="+rows[3].ID)) // NULL
		require.Equal(t, []legacy.Kind{legacy.KindEmptyContent}, kinds(res, ab, "id="+rows[4].ID)) // ""
		require.Equal(t, []legacy.Kind{legacy.KindUnknownAuthor}, kinds(res, ab, "id="+rows[5].ID))
		require.Equal(t, []legacy.Kind{legacy.KindBadTime}, kinds(res, ab, "id="+rows[6].ID))
		require.Equal(t, []legacy.Kind{legacy.KindBadText}, kinds(res, ab, "id="+rows[8].ID))
		require.Equal(t, []legacy.Kind{legacy.KindRoomMismatch}, kinds(res, ab, "id="+rows[9].ID))
		require.Equal(t, []legacy.Kind{legacy.KindBadID}, kinds(res, ab, "id="+rows[10].ID))
		for _, row := range f.DM("DM_12345").Rows {
			require.Equal(t, []legacy.Kind{legacy.KindBadTable}, kinds(res, "DM_12345", "id="+row.ID))
		}
		ai := legacytest.Table(alice, f.User("ivan"))
		require.Equal(t, []legacy.Kind{legacy.KindDepends}, kinds(res, ai, "id="+f.DM(ai).Rows[0].ID))
		require.Equal(t, []legacy.Kind{legacy.KindDMList}, kinds(res, "dm_list", "id=999"))
		require.Equal(t, []legacy.Kind{legacy.KindDMList}, kinds(res, legacytest.Table(erin, frank), "(table)"))
		require.Equal(t, legacy.Table{Name: "dm_list", Read: 7, Skipped: 1, Checked: 6, Reported: 1}, *res.Table("dm_list"))
		require.Equal(t, []legacy.Kind{legacy.KindUnused}, kinds(res, "room", "id=1"))
		require.Equal(t, []legacy.Kind{legacy.KindUnused}, kinds(res, "snowflake_counter", "count=7"))
		require.Len(t, res.Items, 30)

		// History in (created_at, id) order: the two rows of one time (an
		// edit in the original) by id.
		hist := allHistory(t, store, room(t, store, alice, bob))
		require.Len(t, hist, 6)
		require.True(t, slices.IsSortedFunc(hist, func(a, b persistence.Message) int {
			if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
				return c
			}
			return int(a.ID - b.ID)
		}))
		require.Equal(t, "안녕하세요! 오랜만이에요.", hist[0].Content)
		require.Equal(t, []string{"밥 먹었어? 🍚", "응, 방금 먹었어.\n너는?"}, []string{hist[1].Content, hist[2].Content})
	})
}

func ids(us []persistence.User) []int64 {
	var out []int64
	for _, u := range us {
		out = append(out, u.ID)
	}
	return out
}

func TestReportLines(t *testing.T) {
	f := legacytest.Default()
	src, _, _ := source(t, f)
	res := importInto(t, src, openStore(t, "sqlite:"+filepath.Join(t.TempDir(), "rewind.db")))
	ab := legacytest.Table(f.User("alice"), f.User("bob"))
	row := f.DM(ab).Rows[5] // by carol, who is not in the DM
	it := items(res, ab, "id="+row.ID)
	require.Len(t, it, 1)
	require.Equal(t, `unknown-author `+ab+` id=`+row.ID+`: not imported: the author is neither member (`+
		f.User("alice").ID+`, `+f.User("bob").ID+`) | id="`+row.ID+`" room="`+row.Room+`" author="`+row.Author+
		`" created_at="2021-12-23 00:23:00.000000" content="나는 이 대화방의 사람이 아닌데 어떻게 여기에 글을 쓰고 있는 걸까요? 정말 이상한 일이네요. 누가 설명해 "…(68 characters)`,
		it[0].String())
	// A password digest is described, never shown.
	var b strings.Builder
	require.NoError(t, res.WriteReport(&b))
	require.NotContains(t, b.String(), f.User("heidi").Password)
	require.NotContains(t, b.String(), f.User("alice").Password)
	require.Equal(t, len(res.Items)+1, strings.Count(b.String(), "\n"))
}

func TestImportTwiceChangesNothing(t *testing.T) {
	stores(t, func(t *testing.T, url string) {
		f := legacytest.Default()
		src, _, _ := source(t, f)
		store := openStore(t, url)
		first := importInto(t, src, store)
		before := snapshot(t, store, f)
		second := importInto(t, src, store)
		require.Equal(t, before, snapshot(t, store, f))

		require.Len(t, second.Tables, len(first.Tables))
		for i, tb := range second.Tables {
			was := first.Tables[i]
			require.Equal(t, was.Name, tb.Name)
			require.Zero(t, tb.Imported, tb.Name)
			require.Equal(t, was.Imported+was.Present, tb.Present, tb.Name)
			require.Equal(t, was.Skipped, tb.Skipped, tb.Name)
			require.Equal(t, was.Reported, tb.Reported, tb.Name)
		}
		// The same items, what was imported now found present.
		require.Len(t, second.Items, len(first.Items))
		for i, it := range second.Items {
			was := first.Items[i]
			require.Equal(t, [3]string{string(was.Kind), was.Table, was.Key}, [3]string{string(it.Kind), it.Table, it.Key})
			if strings.HasPrefix(was.Done, "imported") && it.Kind != legacy.KindDMList {
				require.True(t, strings.HasPrefix(it.Done, "already present"), "%s", it)
			} else {
				require.Equal(t, was.Done, it.Done)
			}
		}
		require.Equal(t, `already present as "alice-2"`, items(second, "user", "id="+f.User("alice2").ID)[0].Done)
	})
}

func TestDryRunWritesNothing(t *testing.T) {
	stores(t, func(t *testing.T, url string) {
		ctx := context.Background()
		f := legacytest.Default()
		src, _, _ := source(t, f)
		store := openStore(t, url)
		empty := snapshot(t, store, f)
		dry, err := src.DryRun(ctx, store, options())
		require.NoError(t, err)
		require.True(t, dry.DryRun)
		requireBalanced(t, dry)
		require.Equal(t, empty, snapshot(t, store, f))

		// It told what the import then does, table by table and item by item.
		res := importInto(t, src, store)
		require.Equal(t, tables(res), tables(dry))
		require.Equal(t, res.Items, dry.Items)

		// After the import, a dry run finds everything present.
		imported := snapshot(t, store, f)
		again, err := src.DryRun(ctx, store, options())
		require.NoError(t, err)
		require.Equal(t, imported, snapshot(t, store, f))
		for _, tb := range again.Tables {
			require.Zero(t, tb.Imported, tb.Name)
		}
	})
}

func tables(res *legacy.Result) []legacy.Table {
	var out []legacy.Table
	for _, t := range res.Tables {
		out = append(out, *t)
	}
	return out
}

func TestImportIntoStoreWithUsers(t *testing.T) {
	stores(t, func(t *testing.T, url string) {
		ctx := context.Background()
		f := legacytest.Default()
		src, _, _ := source(t, f)
		store := openStore(t, url)
		alice, bob, dave, grace := f.User("alice"), f.User("bob"), f.User("dave"), f.User("grace")
		existing := []persistence.User{
			{ID: 1_000_001, Name: "grace.kim", Email: "GRACE@school.ac.kr", PasswordHash: "$argon2id$x", CreatedAt: time.Now()},
			{ID: 1_000_002, Name: "BOB", Email: "bob@rewind.example", PasswordHash: "$argon2id$x", CreatedAt: time.Now()},
			{ID: userID(t, dave), Name: "dave.r", Email: "dave@rewind.example", PasswordHash: "$argon2id$x", CreatedAt: time.Now()},
		}
		for i, u := range existing {
			require.NoError(t, store.CreateUser(ctx, u))
			existing[i], _ = store.UserByID(ctx, u.ID) // as stored
		}
		res := importInto(t, src, store)

		// An email or id of another account is a conflict; what depends on
		// the user is not imported either.
		gi := items(res, "user", "id="+grace.ID)
		require.Len(t, gi, 1)
		require.Equal(t, legacy.KindConflict, gi[0].Kind)
		require.Contains(t, gi[0].Why, "REWIND user 1000001")
		ag := legacytest.Table(alice, grace)
		for _, row := range f.DM(ag).Rows {
			require.Equal(t, []legacy.Kind{legacy.KindDepends}, kinds(res, ag, "id="+row.ID))
		}
		lo, hi := alice.ID, grace.ID
		if userID(t, grace) < userID(t, alice) {
			lo, hi = hi, lo
		}
		require.Equal(t, []legacy.Kind{legacy.KindDepends}, kinds(res, "user.mutual_users", "id="+lo+" and id="+hi))
		di := items(res, "user", "id="+dave.ID)
		require.Len(t, di, 1)
		require.Equal(t, legacy.KindConflict, di[0].Kind)
		require.Contains(t, di[0].Why, `"dave.r"`)
		require.Equal(t, []legacy.Kind{legacy.KindDepends}, kinds(res, "user.mutual_requests", "id="+alice.ID+" asked by id="+dave.ID))
		in, _, _, err := store.FriendLists(ctx, userID(t, alice))
		require.NoError(t, err)
		require.Empty(t, in)

		// A name a REWIND user holds gets a suffix too.
		got, err := store.UserByID(ctx, userID(t, bob))
		require.NoError(t, err)
		require.Equal(t, "bob-2", got.Name)
		require.Equal(t, []legacy.Kind{legacy.KindRenamed}, kinds(res, "user", "id="+bob.ID))

		// The REWIND users are as they were.
		for _, u := range existing {
			got, err := store.UserByID(ctx, u.ID)
			require.NoError(t, err)
			require.Equal(t, u, got)
		}

		before := snapshot(t, store, f, 1_000_001, 1_000_002)
		again := importInto(t, src, store)
		require.Equal(t, before, snapshot(t, store, f, 1_000_001, 1_000_002))
		for _, tb := range again.Tables {
			require.Zero(t, tb.Imported, tb.Name)
		}
	})
}

// writerFunc is an io.Writer calling f with each write.
type writerFunc func(p []byte)

func (w writerFunc) Write(p []byte) (int, error) { w(p); return len(p), nil }

func TestImportResumes(t *testing.T) {
	stores(t, func(t *testing.T, url string) {
		ctx := context.Background()
		f := legacytest.Default()
		src, _, _ := source(t, f)
		store := openStore(t, url)
		bob, minsu, alice := f.User("bob"), f.User("minsu"), f.User("alice")
		big := legacytest.Table(bob, minsu)

		// A signal (a cancelled context) while the large DM is written:
		// the live progress line, redrawn at every batch by a clock that
		// moves a second per reading, shows when three batches are in.
		stop, cancel := context.WithCancel(ctx)
		defer cancel()
		opts := options()
		opts.Live = true
		opts.Progress = writerFunc(func(p []byte) {
			if strings.Contains(string(p), big+": 300/") {
				cancel()
			}
		})
		clock := fixedNow
		opts.Now = func() time.Time { clock = clock.Add(time.Second); return clock }
		res, err := src.Import(stop, store, opts)
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, 300, res.Table(big).Imported)
		require.Len(t, allHistory(t, store, room(t, store, bob, minsu)), 300)

		// As if a run had stopped between a friendship's two transactions.
		require.NoError(t, store.DeleteFriend(ctx, userID(t, alice), userID(t, bob)))
		_, err = store.RequestFriend(ctx, userID(t, alice), userID(t, bob), time.Now())
		require.NoError(t, err)

		// The next run takes the rest.
		rest := importInto(t, src, store)
		require.Equal(t, legacy.Table{Name: big, Read: legacytest.BigDM, Imported: legacytest.BigDM - 300, Present: 300}, *rest.Table(big))
		require.Equal(t, 1, rest.Table("user.mutual_users").Imported)
		friends, err := store.AreFriends(ctx, userID(t, alice), userID(t, bob))
		require.NoError(t, err)
		require.True(t, friends)

		// The store holds what one uninterrupted import writes (the
		// friendship made again is dated as the import dates it).
		clean := openStore(t, "sqlite:"+filepath.Join(t.TempDir(), "clean.db"))
		cleanOpts := options()
		cleanOpts.Now = func() time.Time { return fixedNow.Add(time.Second) } // the first reading above
		_, err = src.Import(ctx, clean, cleanOpts)
		require.NoError(t, err)
		require.Equal(t, snapshot(t, clean, f), snapshot(t, store, f))
	})
}

var fixedNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func TestImportLeavesSourceUntouched(t *testing.T) {
	f := legacytest.Default()
	src, mainPath, chatPath := source(t, f)
	sums := func() map[string][32]byte {
		out := map[string][32]byte{}
		entries, err := os.ReadDir(filepath.Dir(mainPath))
		require.NoError(t, err)
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(filepath.Dir(mainPath), e.Name()))
			require.NoError(t, err)
			out[e.Name()] = sha256.Sum256(b)
		}
		return out
	}
	before := sums()
	require.Len(t, before, 2) // no journal, -wal or -shm beside them
	importInto(t, src, openStore(t, "sqlite:"+filepath.Join(t.TempDir(), "rewind.db")))
	require.Equal(t, before, sums())
	require.Equal(t, filepath.Dir(mainPath), filepath.Dir(chatPath))
}

func TestOpenRefusesWhatIsNoLegacyDatabase(t *testing.T) {
	ctx := context.Background()
	_, mainPath, chatPath := source(t, legacytest.Default())
	missing := filepath.Join(t.TempDir(), "WIND_main.db")
	_, err := legacy.Open(ctx, missing, chatPath)
	require.EqualError(t, err, "legacy: main database "+missing+": no such file")

	_, err = legacy.Open(ctx, chatPath, mainPath)
	require.EqualError(t, err, "legacy: main database "+chatPath+" has no user table: is it WIND_main.db?")

	junk := filepath.Join(t.TempDir(), "junk.db")
	require.NoError(t, os.WriteFile(junk, []byte(strings.Repeat("not a database ", 100)), 0o600))
	_, err = legacy.Open(ctx, mainPath, junk)
	require.ErrorContains(t, err, "legacy: chat database "+junk+":")
	require.NotContains(t, err.Error(), "\n")
}
