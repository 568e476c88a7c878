package auth_test

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/text/unicode/norm"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/sqlite"
)

// cheapParams keep the tests fast; the cost is the caller's choice.
var cheapParams = auth.PasswordParams{MemoryKiB: 1024, Time: 1, Threads: 1}

func TestUserMakerMakesVerifiedUsers(t *testing.T) {
	m, err := auth.NewUserMaker(5, cheapParams)
	require.NoError(t, err)
	decomposed := norm.NFD.String("Äbel")
	u, err := m.User(decomposed, "abel@example.test", "password1")
	require.NoError(t, err)
	require.Equal(t, "Äbel", u.Name, "NFC, as registration stores it")
	require.Equal(t, "abel@example.test", u.Email)
	require.Positive(t, u.ID)
	require.Equal(t, int64(5), (u.ID>>12)&1023, "the maker's snowflake node")
	require.False(t, u.CreatedAt.IsZero())
	require.Contains(t, u.PasswordHash, "$argon2id$v=19$m=1024,t=1,p=1$", "the maker's cost")
	ok, err := auth.CheckPassword("password1", u.PasswordHash)
	require.NoError(t, err)
	require.True(t, ok)

	// The user is ready for the store, which finds it by name and e-mail.
	ctx := t.Context()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rewind.db"))
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	require.NoError(t, store.Migrate(ctx))
	require.NoError(t, store.CreateUser(ctx, u))
	got, err := store.UserByName(ctx, "äbel")
	require.NoError(t, err)
	require.Equal(t, u.ID, got.ID)
	again, err := m.User("ÄBEL", "other@example.test", "password1")
	require.NoError(t, err)
	require.NotEqual(t, u.ID, again.ID)
	require.ErrorIs(t, store.CreateUser(ctx, again), persistence.ErrNameTaken)
}

func TestUserMakerRefusesWhatRegistrationRefuses(t *testing.T) {
	m, err := auth.NewUserMaker(0, cheapParams)
	require.NoError(t, err)
	for _, f := range [][3]string{
		{"x", "x@example.test", "password1"},
		{"alice", "not an address", "password1"},
		{"alice", "alice@example.test", "short"},
		{"alice\x00", "alice@example.test", "password1"},
	} {
		_, want := auth.CheckRegistration(f[0], f[1], f[2])
		require.Error(t, want)
		_, err := m.User(f[0], f[1], f[2])
		var re *auth.RegistrationError
		require.ErrorAs(t, err, &re)
		require.Equal(t, want.Error(), err.Error())
	}

	_, err = auth.NewUserMaker(1024, cheapParams)
	require.Error(t, err, "node ids are 0..1023")
}

func TestUserMakerHashesAPasswordOnce(t *testing.T) {
	m, err := auth.NewUserMaker(0, cheapParams)
	require.NoError(t, err)
	var wg sync.WaitGroup
	users := make([]persistence.User, 8)
	errs := make([]error, len(users))
	for i := range users {
		wg.Go(func() { users[i], errs[i] = m.User("user"+string(rune('a'+i)), "u@example.test", "password1") })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	for _, u := range users[1:] {
		require.Equal(t, users[0].PasswordHash, u.PasswordHash, "one hash for one password")
		require.NotEqual(t, users[0].ID, u.ID)
	}

	other, err := m.User("bob", "bob@example.test", "password2")
	require.NoError(t, err)
	require.NotEqual(t, users[0].PasswordHash, other.PasswordHash)
	ok, err := auth.CheckPassword("password2", other.PasswordHash)
	require.NoError(t, err)
	require.True(t, ok)
}
