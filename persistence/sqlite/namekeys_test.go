package sqlite

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/persistence/storetest"
)

// TestMigrationRekeysNames migrates a database that version 2 wrote (keys
// were strings.ToLower of the name) to the PRECIS keys of migration 3
// (storetest.RequireRekeyedNames says what must hold).
func TestMigrationRekeysNames(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "rewind.db"))
	require.NoError(t, s.migrate(ctx, 2))
	for _, u := range storetest.RekeyUsers {
		_, err := s.write.ExecContext(ctx, `INSERT INTO users
			(id, name, name_folded, email, email_folded, password_hash, created_at) VALUES (?, ?, ?, ?, ?, '', ?)`,
			u.ID, u.Name, strings.ToLower(u.Name), u.Name+"@example.com", strings.ToLower(u.Name)+"@example.com", u.Created)
		require.NoError(t, err)
	}
	expires := time.Now().Add(time.Hour).UnixMicro()
	for _, p := range storetest.RekeyPending {
		_, err := s.write.ExecContext(ctx, `INSERT INTO pending_registrations
			(key_hash, name, name_folded, email, email_folded, password_hash, expires_at, created_at)
			VALUES (?, ?, ?, ?, ?, '', ?, ?)`, []byte(p.Key), p.Name, strings.ToLower(p.Name), p.Email,
			strings.ToLower(p.Email), expires, p.Created)
		require.NoError(t, err)
	}

	require.NoError(t, s.Migrate(ctx))

	var key string
	require.NoError(t, s.read.QueryRowContext(ctx, `SELECT name_folded FROM users WHERE id = 1`).Scan(&key))
	storetest.RequireRekeyedNames(t, s, key)
}
