package legacy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/legacy/legacytest"
	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/persistence/storeurl"
	"github.com/rewind-chat/rewind/server"
	"github.com/rewind-chat/rewind/setting"
)

// wait bounds every wait for an answer.
const wait = 10 * time.Second

// login posts the mobile client's login form and returns the token.
func login(t *testing.T, base, email, password string) string {
	t.Helper()
	res, err := http.PostForm(base+"/api/v1/auth/login", url.Values{"email": {email}, "password": {password}})
	require.NoError(t, err)
	defer res.Body.Close()
	var body struct {
		Type    string `json:"type"`
		Payload struct {
			Token   string `json:"token"`
			Message string `json:"message"`
		} `json:"payload"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
	require.Equal(t, http.StatusCreated, res.StatusCode, body.Payload.Message)
	require.Equal(t, "auth", body.Type)
	return body.Payload.Token
}

// chatItem is a history item as /ws sends it.
type chatItem struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	UserID    string `json:"user_id"`
	ChatID    string `json:"chat_id"`
	Content   string `json:"content"`
	CreatedAt string `json:"created_at"`
}

// load asks for the newest count messages of DM chatID and returns them.
func load(t *testing.T, c *client.Client, chatID string, count int) []chatItem {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	frames, err := c.Collect(ctx, "load", map[string]any{"type": "chat", "load_id": chatID, "count": count},
		func(f client.Frame) bool { return f.Type == "load" })
	require.NoError(t, err)
	end := frames[len(frames)-1]
	require.Equal(t, "load", end.Type, string(end.Payload))
	var items []chatItem
	for _, f := range frames[:len(frames)-1] {
		require.Equal(t, "chat", f.Type, string(f.Payload))
		var it chatItem
		require.NoError(t, f.Decode(&it))
		require.Equal(t, "load", it.Type)
		items = append(items, it)
	}
	return items
}

// wire is how /ws writes a time the original stored as s: six fraction
// digits, Asia/Seoul.
func wire(t *testing.T, s string) string {
	t.Helper()
	tm, err := time.ParseInLocation("2006-01-02 15:04:05.999999", s, seoul)
	require.NoError(t, err)
	return tm.Format("2006-01-02 15:04:05.000000")
}

// expected is what history of d holds after the import: its rows that the
// import took, oldest first, as /ws sends them.
func expected(t *testing.T, d legacytest.DM, skip func(key string) bool) []chatItem {
	t.Helper()
	var out []chatItem
	for _, row := range d.Rows {
		if skip("id=" + row.ID) {
			continue
		}
		out = append(out, chatItem{Type: "load", ID: row.ID, UserID: row.Author, ChatID: strings.TrimPrefix(d.Table, "DM_"),
			Content: strings.ReplaceAll(*row.Content, "\x00", ""), CreatedAt: wire(t, row.CreatedAt)})
	}
	slices.SortFunc(out, func(a, b chatItem) int {
		if c := strings.Compare(a.CreatedAt, b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID) // ids of one length here
	})
	return out
}

// TestImportedHistoryOverWebSocket: after the import a legacy user logs in
// with the original password (which login then replaces by argon2id),
// opens /ws as the shipped client does and loads the imported DMs by the
// chat ids it knows: the original ids, times and order.
func TestImportedHistoryOverWebSocket(t *testing.T) {
	stores(t, func(t *testing.T, databaseURL string) {
		ctx := context.Background()
		f := legacytest.Default()
		src, _, _ := source(t, f)
		store, err := storeurl.Open(ctx, databaseURL)
		require.NoError(t, err)
		res, err := src.Import(ctx, store, options())
		require.NoError(t, err)
		require.NoError(t, store.Close())

		srv, err := server.Start(ctx, server.Config{Addr: "127.0.0.1:0", DatabaseURL: databaseURL, AuthRatePerMinute: setting.Off})
		require.NoError(t, err)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			require.NoError(t, srv.Shutdown(ctx))
		})
		base := "http://" + srv.Addr()

		alice, bob, minsu := f.User("alice"), f.User("bob"), f.User("minsu")
		token := login(t, base, alice.Email, alice.Plain)
		u, err := srv.Store().UserByID(ctx, userID(t, alice))
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(u.PasswordHash, "$argon2id$"), "the legacy hash is replaced at login: %s", u.PasswordHash)
		login(t, base, alice.Email, alice.Plain) // and the password still works
		bobToken := login(t, base, bob.Email, bob.Plain)

		dial := func(token string) *client.Client {
			ctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			c, err := client.Dial(ctx, "ws://"+srv.Addr()+"/ws")
			require.NoError(t, err)
			t.Cleanup(func() { c.Close() })
			f, err := c.Call(ctx, "heartbeat", map[string]int{"count": 0})
			require.NoError(t, err)
			require.Equal(t, "heartbeat", f.Type)
			f, err = c.Call(ctx, "auth", map[string]string{"auth": token})
			require.NoError(t, err)
			require.Equal(t, "auth", f.Type, string(f.Payload))
			return c
		}
		ca := dial(token)

		ab := f.DM(legacytest.Table(alice, bob))
		want := expected(t, ab, func(key string) bool { return notImported(res, ab.Table, key) })
		require.Len(t, want, 6)
		require.Equal(t, "2021-12-23 00:19:16.000880", want[0].CreatedAt)
		require.Equal(t, want, load(t, ca, legacytest.ChatID(alice, bob), 100))

		am := f.DM(legacytest.Table(alice, minsu))
		require.Equal(t, expected(t, am, func(string) bool { return false }), load(t, ca, legacytest.ChatID(alice, minsu), 50))

		// The large DM, newest page first, as the client scrolls.
		cb := dial(bobToken)
		bm := expected(t, f.DM(legacytest.Table(bob, minsu)), func(string) bool { return false })
		require.Equal(t, bm[len(bm)-100:], load(t, cb, legacytest.ChatID(bob, minsu), 100))
	})
}
