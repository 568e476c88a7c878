package auth_test

import (
	"context"
	"encoding/base64"
	"os"
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
		{"signature with a line feed", parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n" + parts[2][10:], auth.ErrTokenSignature},
		{"signature with a carriage return", parts[0] + "." + parts[1] + "." + parts[2][:10] + "\r" + parts[2][10:], auth.ErrTokenSignature},
		{"signature padded", token + "=", auth.ErrTokenSignature},
		{"user gone", ghost, auth.ErrTokenPayload},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := tokens.Resolve(ctx, c.token)
			require.ErrorIs(t, err, c.want)
		})
	}

	// 32 bytes are 43 characters whose last one carries 4 bits: three other
	// characters spell the same bytes to a lenient decoder.
	sig := parts[2]
	others := 0
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		variant := sig[:len(sig)-1] + string(c)
		if variant == sig {
			continue
		}
		if b, err := base64.RawURLEncoding.DecodeString(variant); err != nil || string(b) != string(mustDecode(t, sig)) {
			continue
		}
		others++
		_, err := tokens.Resolve(ctx, parts[0]+"."+parts[1]+"."+variant)
		require.ErrorIs(t, err, auth.ErrTokenSignature, "other spelling %q", variant)
	}
	require.Equal(t, 3, others)

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

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	require.NoError(t, err)
	return b
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	secret := strings.Repeat("f", 40)
	for name, content := range map[string]string{"plain": secret, "lf": secret + "\n", "crlf": secret + "\r\n"} {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		got, err := auth.ReadSecretFile(path)
		require.NoError(t, err, name)
		require.Equal(t, secret, got, name)
	}
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("tiny-secret\n"), 0o600))
	_, err := auth.ReadSecretFile(short)
	require.ErrorContains(t, err, "at least 32 bytes")
	require.NotContains(t, err.Error(), "tiny-secret")
	_, err = auth.ReadSecretFile(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
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
		{"ＡＬＩＣＥ", "wide@example.test"},
		{"алиса", "alisa@example.test"},
		{"σας", "sigma@example.test"},
		{"山田たろう", "yamada@example.test"},
		{"ヤマダ太郎", "taro@example.test"},
		{"김哲洙", "kim2@example.test"},
		{"たろう_2", "taro2@example.test"},
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
		{"\u0430lice", "x@example.test", "password1", "name mixes scripts."},
		{"alice山", "x@example.test", "password1", "name mixes scripts."},
		{"김alice", "x@example.test", "password1", "name mixes scripts."},
		{"たろう김", "x@example.test", "password1", "name mixes scripts."},
		{"Ωmega", "x@example.test", "password1", "name mixes scripts."},
		{"\u01c5emal", "x@example.test", "password1", "name must be"}, // titlecase digraph: PRECIS refuses it
		{"1שלום", "x@example.test", "password1", "name must be"},      // breaks the Bidi Rule
		{"al\x00", "x@example.test", "password1", "name must be valid UTF-8 without U+0000."},
		{"al\xff", "x@example.test", "password1", "name must be valid UTF-8 without U+0000."},
		{"al", "x\x00@example.test", "password1", "email must be valid UTF-8 without U+0000."},
		{"al", "x@example.test", "password\x00", "password must be valid UTF-8 without U+0000."},
	}
	for _, c := range bad {
		_, err := auth.CheckRegistration(c.name, c.email, c.password)
		var re *auth.RegistrationError
		require.ErrorAs(t, err, &re, c.want)
		require.Contains(t, re.Message, c.want)
	}
}
