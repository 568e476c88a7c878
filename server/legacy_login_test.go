package server_test

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/persistence"
)

// sha512hex is the original backend's password hash,
// sha512(password.encode('utf-8')).hexdigest().
func sha512hex(password string) string {
	sum := sha512.Sum512([]byte(password))
	return hex.EncodeToString(sum[:])
}

// importUser stores a user as rewind import-legacy does, with the legacy
// hash of password.
func (n *node) importUser(id int64, name, password string) persistence.User {
	n.t.Helper()
	u := persistence.User{ID: id, Name: name, Email: name + "@example.test",
		PasswordHash: auth.LegacyHash(sha512hex(password)), CreatedAt: time.Now()}
	require.NoError(n.t, n.srv.Store().CreateUser(context.Background(), u))
	return u
}

func (n *node) passwordHash(id int64) string {
	n.t.Helper()
	u, err := n.srv.Store().UserByID(context.Background(), id)
	require.NoError(n.t, err)
	return u.PasswordHash
}

func TestLegacyPasswordReplacedAtLogin(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		imported := n.importUser(41, "olduser", "old password 1")

		a := n.postForm("/api/v1/auth/login", map[string]string{"email": imported.Email, "password": "old password 2"})
		require.Equal(t, http.StatusUnauthorized, a.Status, a.Body)
		require.Equal(t, "email or password incorrect.", a.message())
		require.Equal(t, imported.PasswordHash, n.passwordHash(41), "a wrong password replaces nothing")

		token := n.login(imported.Email, "old password 1")
		u, err := resolve(t, n.srv.Store(), token)
		require.NoError(t, err)
		require.Equal(t, imported.ID, u.ID)

		hash := n.passwordHash(41)
		require.True(t, strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$"), hash)
		ok, err := auth.CheckPassword("old password 1", hash)
		require.NoError(t, err)
		require.True(t, ok)

		// Now through argon2id; the hash stays what the first login stored.
		n.login(imported.Email, "old password 1")
		require.Equal(t, hash, n.passwordHash(41))
		a = n.postForm("/api/v1/auth/login", map[string]string{"email": imported.Email, "password": "old password 2"})
		require.Equal(t, http.StatusUnauthorized, a.Status, a.Body)
	})
}

// The original backend had no length rule: a password shorter than
// registration allows still logs in, before and after its hash is replaced.
func TestLegacyShortPassword(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		imported := n.importUser(42, "shorty", "abcd")
		n.login(imported.Email, "abcd")
		require.False(t, auth.NeedsUpgrade(n.passwordHash(42)))
		n.login(imported.Email, "abcd")
	})
}
