package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/persistence"
)

// The rows a store's TestMigrationRekeysNames writes with version 2's
// keys (strings.ToLower of the name and email) before it migrates: users
// with Created seconds after a base time (user 2 is older than user 1 and
// takes "alice"), and pending registrations, of which k3 is the older of
// two with one email.
var (
	RekeyUsers = []struct {
		ID      int64
		Name    string
		Created int
	}{
		{1, "Alice", 2}, {2, "ＡＬＩＣＥ", 1}, {3, "STRASSE", 3}, {4, "straße", 4}, {5, "ΣΑΣ", 5}, {6, "Ärger", 6},
	}
	RekeyPending = []struct {
		Key, Name, Email string
		Created          int
	}{
		{"k1", "σας", "p1@example.com", 10}, {"k2", "Bob", "p2@example.com", 10}, {"k3", "bobby", "P2@example.com", 9},
	}
)

// RequireRekeyedNames checks a store migrated from RekeyUsers and
// RekeyPending: names keep their spelling, the older of two users whose
// names now collide keeps the name (user 1's key, as stored, is
// "alice#1"), pending registrations have the new keys and one per email,
// and the new rules hold afterwards.
func RequireRekeyedNames(t *testing.T, s persistence.Store, user1Key string) {
	t.Helper()
	ctx := t.Context()
	byName := map[string]int64{"alice": 2, "ＡＬＩＣＥ": 2, "Alice": 2, "strasse": 3, "straße": 3, "σας": 5, "äRGER": 6}
	for name, id := range byName {
		u, err := s.UserByName(ctx, name)
		require.NoError(t, err, name)
		require.Equal(t, id, u.ID, name)
	}
	for _, u := range RekeyUsers {
		got, err := s.UserByID(ctx, u.ID)
		require.NoError(t, err)
		require.Equal(t, u.Name, got.Name, "the spelling is kept")
	}
	require.Equal(t, "alice#1", user1Key)
	require.ErrorIs(t, s.CreateUser(ctx, persistence.User{ID: 9, Name: "ALICE", Email: "new@example.com"}), persistence.ErrNameTaken)

	now := time.Now()
	_, err := s.VerifyRegistration(ctx, []byte("k1"), now, 10)
	require.ErrorIs(t, err, persistence.ErrNameTaken, "σας is ΣΑΣ's name now")
	_, err = s.VerifyRegistration(ctx, []byte("k3"), now, 11)
	require.ErrorIs(t, err, persistence.ErrNotFound, "one pending registration per email, the newest")
	u, err := s.VerifyRegistration(ctx, []byte("k2"), now, 12)
	require.NoError(t, err)
	require.Equal(t, "Bob", u.Name)
}
