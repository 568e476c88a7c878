package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/persistence"
)

// wait bounds every wait for a frame in the WebSocket tests.
const wait = 10 * time.Second

var userSeq atomic.Int64

// account is a verified user and a token for it.
type account struct {
	persistence.User
	Token string
}

// IDString is the user's id as the wire writes it.
func (a account) IDString() string { return strconv.FormatInt(a.ID, 10) }

// newAccount creates a user directly in the node's store (registration is
// tested over HTTP elsewhere) and issues a token with the node's secret.
func (n *node) newAccount(name string) account {
	n.t.Helper()
	ctx := context.Background()
	id := 1_000_000 + userSeq.Add(1)
	u := persistence.User{ID: id, Name: name, Email: fmt.Sprintf("%s-%d@example.test", name, id),
		PasswordHash: "$argon2id$unused", CreatedAt: time.Now()}
	require.NoError(n.t, n.srv.Store().CreateUser(ctx, u))
	secret, err := auth.Secret(ctx, n.srv.Store(), "")
	require.NoError(n.t, err)
	token, err := auth.NewTokens(secret, time.Hour, n.srv.Store(), nil).Issue(u)
	require.NoError(n.t, err)
	return account{User: u, Token: token}
}

// dial opens a WebSocket to the node; version 2 adds ?v=2.
func (n *node) dial(version int) *client.Client {
	n.t.Helper()
	url := "ws://" + n.srv.Addr() + "/ws"
	if version == 2 {
		url += "?v=2"
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := client.Dial(ctx, url)
	require.NoError(n.t, err)
	n.t.Cleanup(func() { c.Close() })
	return c
}

// connect dials, heartbeats and authenticates as a; it returns the client
// and the auth answer's payload.
func (n *node) connect(a account, version int) (*client.Client, json.RawMessage) {
	n.t.Helper()
	c := n.dial(version)
	f := call(n.t, c, "heartbeat", map[string]int{"count": 0})
	require.Equal(n.t, "heartbeat", f.Type)
	f = call(n.t, c, "auth", map[string]string{"auth": a.Token})
	require.Equal(n.t, "auth", f.Type, string(f.Payload))
	return c, f.Payload
}

// call sends a request and returns its first answer.
func call(t *testing.T, c *client.Client, typ string, payload any) client.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	f, err := c.Call(ctx, typ, payload)
	require.NoError(t, err)
	return f
}

// next returns the next frame not yet read.
func next(t *testing.T, c *client.Client) client.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	f, err := c.Next(ctx)
	require.NoError(t, err)
	return f
}

// requireError checks that f is an error frame with code and reason.
func requireError(t *testing.T, f client.Frame, code int, reason string) {
	t.Helper()
	e, ok := f.AsError()
	require.True(t, ok, "want error %d %q, got %s %s", code, reason, f.Type, f.Payload)
	require.Equal(t, code, e.Code, reason)
	require.Equal(t, reason, e.Reason)
}

// requireClosed waits for the server to close c with code and reason.
func requireClosed(t *testing.T, c *client.Client, code int, reason string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	for {
		_, err := c.Next(ctx)
		if err == nil {
			continue // frames sent before the close
		}
		var ce *client.CloseError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, code, ce.Code)
		if reason != "" {
			require.Equal(t, reason, ce.Reason)
		}
		return
	}
}

// befriend makes a and b friends through the protocol.
func befriend(t *testing.T, ca *client.Client, a account, cb *client.Client, b account) {
	t.Helper()
	require.Equal(t, "ok", call(t, ca, "mutual_users", map[string]string{"type": "request", "name": b.Name}).Type)
	require.Equal(t, "mutual_users", next(t, cb).Type)
	require.Equal(t, "ok", call(t, cb, "mutual_users", map[string]string{"type": "response", "name": a.Name}).Type)
	require.Equal(t, "mutual_users", next(t, ca).Type)
}

// chatID is the DM id of a and b.
func chatID(a, b account) string { return strconv.FormatInt(a.ID^b.ID, 10) }

// ctxWait is a context that ends after wait, cancelled with the test.
func ctxWait(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}
