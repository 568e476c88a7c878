package httpapi_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/net/httpapi"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/sqlite"
	"github.com/rewind-chat/rewind/setting"
)

// failingReplace is a store whose password-hash writes fail.
type failingReplace struct{ persistence.Store }

func (failingReplace) ReplacePasswordHash(context.Context, int64, string, string) (bool, error) {
	return false, errors.New("disk full")
}

type noMail struct{}

func (noMail) SendVerification(to, name, link string) {}

var cheap = auth.PasswordParams{MemoryKiB: 1024, Time: 1, Threads: 1}

func legacyHash(password string) string {
	sum := sha512.Sum512([]byte(password))
	return auth.LegacyHash(hex.EncodeToString(sum[:]))
}

// legacyAPI serves an API over a fresh SQLite store (wrapped by wrap) that
// holds one imported user, alice, whose password is "old pw". One hashing
// slot: a login that needed two at once would wait and fail.
func legacyAPI(t *testing.T, wrap func(persistence.Store) persistence.Store) (http.Handler, persistence.Store, *bytes.Buffer) {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "rewind.db"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	require.NoError(t, s.Migrate(t.Context()))
	require.NoError(t, s.CreateUser(t.Context(), persistence.User{
		ID: 1, Name: "alice", Email: "alice@example.test", PasswordHash: legacyHash("old pw"),
	}))
	var log bytes.Buffer
	logger := zerolog.New(zerolog.SyncWriter(&log))
	secret := []byte("0123456789abcdef0123456789abcdef")
	api, err := httpapi.New(httpapi.Config{
		Store:             wrap(s),
		Tokens:            auth.NewTokens(secret, 0, s, nil),
		Keys:              auth.NewVerificationKeys(secret),
		Mailer:            noMail{},
		NewID:             func() int64 { return 2 },
		AuthRatePerMinute: setting.Off,
		Password:          cheap,
		Logger:            &logger,
		Limits:            httpapi.Limits{HashConcurrency: 1, HashWait: time.Second},
	})
	require.NoError(t, err)
	return api, s, &log
}

func login(h http.Handler, email, password string) int {
	body := url.Values{"email": {email}, "password": {password}}.Encode()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/login", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func storedHash(t *testing.T, s persistence.Store) string {
	t.Helper()
	u, err := s.UserByID(t.Context(), 1)
	require.NoError(t, err)
	return u.PasswordHash
}

func TestLegacyLoginSurvivesFailedReplace(t *testing.T) {
	h, s, log := legacyAPI(t, func(s persistence.Store) persistence.Store { return failingReplace{s} })
	require.Equal(t, http.StatusCreated, login(h, "alice@example.test", "old pw"))
	require.Contains(t, log.String(), "legacy password hash not replaced")
	require.Contains(t, log.String(), "disk full")
	require.Equal(t, legacyHash("old pw"), storedHash(t, s), "kept for the next login")
	require.Equal(t, http.StatusCreated, login(h, "alice@example.test", "old pw"))
}

func TestLegacyLoginsAtOnce(t *testing.T) {
	h, s, _ := legacyAPI(t, func(s persistence.Store) persistence.Store { return s })
	codes := make([]int, 4)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Go(func() { codes[i] = login(h, "alice@example.test", "old pw") })
	}
	wg.Wait()
	for _, code := range codes {
		require.Equal(t, http.StatusCreated, code)
	}
	hash := storedHash(t, s)
	require.False(t, auth.NeedsUpgrade(hash))
	ok, err := auth.CheckPassword("old pw", hash)
	require.NoError(t, err)
	require.True(t, ok, "the one hash stored is the password's")
}
