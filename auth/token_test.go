package auth_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/auth"
)

// claimsOf decodes a token's claims without checking it.
func claimsOf(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var c map[string]any
	require.NoError(t, json.Unmarshal(raw, &c))
	return c
}

// With no lifetime (REWIND_TOKEN_TTL's default) a token carries no exp and
// resolves however old it is, until a logout bumps the generation.
func TestTokensWithoutLifetimeNeverExpire(t *testing.T) {
	ctx := context.Background()
	store, u := tokenFixture(t)
	secret := []byte(strings.Repeat("s", 32))
	issued := time.Now()
	token, err := auth.NewTokens(secret, 0, store, func() time.Time { return issued }).Issue(u)
	require.NoError(t, err)
	c := claimsOf(t, token)
	require.NotContains(t, c, "exp")
	require.EqualValues(t, issued.Unix(), c["iat"])

	later := auth.NewTokens(secret, 0, store, func() time.Time { return issued.Add(10 * 365 * 24 * time.Hour) })
	got, err := later.Resolve(ctx, token)
	require.NoError(t, err)
	require.Equal(t, u.ID, got.ID)

	_, err = store.BumpTokenGeneration(ctx, u.ID)
	require.NoError(t, err)
	_, err = later.Resolve(ctx, token)
	require.ErrorIs(t, err, auth.ErrTokenExpired, "a logout revokes it")
}

// A lifetime set after tokens were issued without one applies to them from
// their iat.
func TestLifetimeSetLaterEndsTokensIssuedWithoutOne(t *testing.T) {
	ctx := context.Background()
	store, u := tokenFixture(t)
	secret := []byte(strings.Repeat("s", 32))
	issued := time.Now()
	token, err := auth.NewTokens(secret, 0, store, func() time.Time { return issued }).Issue(u)
	require.NoError(t, err)

	at := func(d time.Duration) error {
		_, err := auth.NewTokens(secret, time.Hour, store, func() time.Time { return issued.Add(d) }).Resolve(ctx, token)
		return err
	}
	require.NoError(t, at(time.Hour-time.Second))
	require.ErrorIs(t, at(time.Hour), auth.ErrTokenExpired)
}

// Tokens issued with a lifetime keep their exp when the lifetime is turned
// off: valid until then, expired after.
func TestTokensKeepTheirExpWhenTheLifetimeIsOff(t *testing.T) {
	ctx := context.Background()
	store, u := tokenFixture(t)
	secret := []byte(strings.Repeat("s", 32))
	issued := time.Now()
	token, err := auth.NewTokens(secret, time.Hour, store, func() time.Time { return issued }).Issue(u)
	require.NoError(t, err)
	require.EqualValues(t, issued.Add(time.Hour).Unix(), claimsOf(t, token)["exp"])

	at := func(d time.Duration) error {
		_, err := auth.NewTokens(secret, 0, store, func() time.Time { return issued.Add(d) }).Resolve(ctx, token)
		return err
	}
	require.NoError(t, at(time.Hour-time.Second))
	require.ErrorIs(t, at(time.Hour), auth.ErrTokenExpired)
}
