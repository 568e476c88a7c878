package postgres

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres/pgtest"
)

// TestMigrationRekeysNames migrates a database that version 2 wrote (keys
// were strings.ToLower of the name) to the PRECIS keys of migration 3:
// names keep their spelling, the older of two users whose names now
// collide keeps the name, pending registrations get the new keys and keep
// one per email, and the new rules hold afterwards.
func TestMigrationRekeysNames(t *testing.T) {
	ctx := t.Context()
	s := open(t, pgtest.NewSchemaURL(t))
	require.NoError(t, s.migrate(ctx, 2))
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	users := []struct {
		id      int64
		name    string
		created int
	}{
		{1, "Alice", 2}, {2, "ＡＬＩＣＥ", 1}, {3, "STRASSE", 3}, {4, "straße", 4}, {5, "ΣΑΣ", 5}, {6, "Ärger", 6},
	}
	for _, u := range users {
		_, err := s.pool.Exec(ctx, `INSERT INTO users
			(id, name, name_folded, email, email_folded, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, '', $6)`,
			u.id, u.name, strings.ToLower(u.name), u.name+"@example.com", strings.ToLower(u.name)+"@example.com",
			base.Add(time.Duration(u.created)*time.Second))
		require.NoError(t, err)
	}
	expires := time.Now().Add(time.Hour)
	for _, p := range []struct{ key, name, email string }{
		{"k1", "σας", "p1@example.com"}, {"k2", "Bob", "p2@example.com"}, {"k3", "bobby", "P2@example.com"},
	} {
		created := base.Add(10 * time.Second)
		if p.key == "k3" {
			created = base.Add(9 * time.Second) // older, same email: dropped
		}
		_, err := s.pool.Exec(ctx, `INSERT INTO pending_registrations
			(key_hash, name, name_folded, email, email_folded, password_hash, expires_at, created_at)
			VALUES ($1, $2, $3, $4, $5, '', $6, $7)`, []byte(p.key), p.name, strings.ToLower(p.name), p.email, strings.ToLower(p.email), expires, created)
		require.NoError(t, err)
	}

	require.NoError(t, s.Migrate(ctx))

	byName := map[string]int64{"alice": 2, "ＡＬＩＣＥ": 2, "Alice": 2, "strasse": 3, "straße": 3, "σας": 5, "äRGER": 6}
	for name, id := range byName {
		u, err := s.UserByName(ctx, name)
		require.NoError(t, err, name)
		require.Equal(t, id, u.ID, name)
	}
	for _, u := range users {
		got, err := s.UserByID(ctx, u.id)
		require.NoError(t, err)
		require.Equal(t, u.name, got.Name, "the spelling is kept")
	}
	var key string
	require.NoError(t, s.pool.QueryRow(ctx, `SELECT name_folded FROM users WHERE id = 1`).Scan(&key))
	require.Equal(t, "alice#1", key)
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
