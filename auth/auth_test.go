package auth_test

import (
	"context"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/sqlite"
)

func TestPasswordHash(t *testing.T) {
	hash, err := auth.HashPassword("correct horse", auth.OWASPParams)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(hash, "$argon2id$v=19$m=19456,t=2,p=1$"), hash)
	require.NotContains(t, hash, "correct horse")

	again, err := auth.HashPassword("correct horse", auth.OWASPParams)
	require.NoError(t, err)
	require.NotEqual(t, hash, again, "each hash has its own salt")

	ok, err := auth.CheckPassword("correct horse", hash)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = auth.CheckPassword("correct horsf", hash)
	require.NoError(t, err)
	require.False(t, ok)

	// Hashes keep their own parameters: raising the cost later keeps old
	// hashes valid.
	cheap, err := auth.HashPassword("pw", auth.PasswordParams{MemoryKiB: 1024, Time: 1, Threads: 1})
	require.NoError(t, err)
	ok, err = auth.CheckPassword("pw", cheap)
	require.NoError(t, err)
	require.True(t, ok)

	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$c2FsdA$aGFzaA", "$argon2id$v=18$m=1,t=1,p=1$c2FsdA$aGFzaA", "$argon2id$v=19$m=x$c2FsdA$aGFzaA", "$argon2id$v=19$m=1,t=1,p=1$!!$aGFzaA"} {
		_, err := auth.CheckPassword("pw", bad)
		require.Error(t, err, bad)
	}
}

// tokenFixture is a real SQLite store with one user.
func tokenFixture(t *testing.T) (persistence.Store, persistence.User) {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rewind.db"))
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	require.NoError(t, store.Migrate(ctx))
	u := persistence.User{ID: 7, Name: "alice", Email: "alice@example.test", PasswordHash: "$argon2id$x", CreatedAt: time.Now()}
	require.NoError(t, store.CreateUser(ctx, u))
	return store, u
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	store, u := tokenFixture(t)
	secret := []byte(strings.Repeat("s", 32))
	now := time.Now()
	clock := func() time.Time { return now }
	tokens := auth.NewTokens(secret, time.Hour, store, clock)

	token, err := tokens.Issue(u)
	require.NoError(t, err)
	got, err := tokens.Resolve(ctx, token)
	require.NoError(t, err)
	require.Equal(t, u.ID, got.ID)

	parts := strings.Split(token, ".")
	require.Len(t, parts, 3, "a JWT")
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	require.Contains(t, string(claims), `"sub":"7"`)

	other := auth.NewTokens([]byte(strings.Repeat("o", 32)), time.Hour, store, clock)
	forged, err := other.Issue(u)
	require.NoError(t, err)
	ghost, err := tokens.Issue(persistence.User{ID: 8})
	require.NoError(t, err)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"8","gen":0,"iat":1,"exp":9999999999}`)) + "." + parts[2]

	cases := []struct {
		name  string
		token string
		want  *auth.TokenError
	}{
		{"empty", "", auth.ErrTokenNotProvided},
		{"blank", "  ", auth.ErrTokenNotProvided},
		{"not a token", "hello", auth.ErrTokenPayload},
		{"four parts", token + ".x", auth.ErrTokenPayload},
		{"other secret", forged, auth.ErrTokenSignature},
		{"tampered claims", tampered, auth.ErrTokenSignature},
		{"bad signature encoding", parts[0] + "." + parts[1] + ".%%%", auth.ErrTokenSignature},
		{"user gone", ghost, auth.ErrTokenPayload},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := tokens.Resolve(ctx, c.token)
			require.ErrorIs(t, err, c.want)
		})
	}

	t.Run("expired", func(t *testing.T) {
		later := auth.NewTokens(secret, time.Hour, store, func() time.Time { return now.Add(time.Hour) })
		_, err := later.Resolve(ctx, token)
		require.ErrorIs(t, err, auth.ErrTokenExpired)
	})
	t.Run("revoked by a new generation", func(t *testing.T) {
		_, err := store.BumpTokenGeneration(ctx, u.ID)
		require.NoError(t, err)
		_, err = tokens.Resolve(ctx, token)
		require.ErrorIs(t, err, auth.ErrTokenExpired)
	})
}

func TestTokenSecretIsGeneratedOnceAndKept(t *testing.T) {
	ctx := context.Background()
	store, _ := tokenFixture(t)
	first, err := auth.Secret(ctx, store, "")
	require.NoError(t, err)
	require.Len(t, first, 32)
	second, err := auth.Secret(ctx, store, "")
	require.NoError(t, err)
	require.Equal(t, first, second)

	configured, err := auth.Secret(ctx, store, strings.Repeat("c", 32))
	require.NoError(t, err)
	require.Equal(t, []byte(strings.Repeat("c", 32)), configured)
	_, err = auth.Secret(ctx, store, "short")
	require.Error(t, err)
}

func TestVerificationKeys(t *testing.T) {
	keys := auth.NewVerificationKeys([]byte(strings.Repeat("s", 32)))
	key, hash, err := keys.New()
	require.NoError(t, err)
	raw, err := base64.RawURLEncoding.DecodeString(key)
	require.NoError(t, err)
	require.Len(t, raw, 32, "256 random bits")
	require.Equal(t, hash, keys.Hash(key))
	key2, _, err := keys.New()
	require.NoError(t, err)
	require.NotEqual(t, key, key2)
	require.NotEqual(t, hash, auth.NewVerificationKeys([]byte(strings.Repeat("o", 32))).Hash(key), "keyed by the secret")
}

func TestCheckRegistration(t *testing.T) {
	ok := []struct{ name, email string }{
		{"al", "a@b.c"},
		{"Ärger_2.0-x", "first.last+tag@example.co.kr"},
		{"김철수", "kim@example.test"},
		{strings.Repeat("n", 32), "x@example.test"},
	}
	for _, c := range ok {
		_, err := auth.CheckRegistration(c.name, c.email, "password1")
		require.NoError(t, err, c.name)
	}
	// A decomposed "Ä" (A + combining diaeresis) is stored composed.
	reg, err := auth.CheckRegistration("A\u0308rger", "x@example.test", "password1")
	require.NoError(t, err)
	require.Equal(t, "\u00c4rger", reg.Name)

	bad := []struct{ name, email, password, want string }{
		{"", "x@example.test", "password1", "name is not provided."},
		{"a", "x@example.test", "password1", "name must be"},
		{"a!", "x@example.test", "password1", "name must be"},
		{"al", "", "password1", "email is not provided."},
		{"al", "x@", "password1", "email is not a valid address."},
		{"al", "x@example.test", "", "password is not provided."},
		{"al", "x@example.test", "short", "password must be 8 to 256 bytes long."},
	}
	for _, c := range bad {
		_, err := auth.CheckRegistration(c.name, c.email, c.password)
		var re *auth.RegistrationError
		require.ErrorAs(t, err, &re, c.want)
		require.Contains(t, re.Message, c.want)
	}
}
