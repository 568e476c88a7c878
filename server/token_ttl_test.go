package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/server"
)

// authAfter logs in over HTTP, lets age pass on the node's clock, and
// returns the first answer to an auth with that token over /ws.
func authAfter(t *testing.T, n *node, clk *clock, name string, age time.Duration) (token, answer string) {
	t.Helper()
	token = n.signUp(name, name+"@example.test", "correct horse")
	clk.advance(age)
	c := n.dial(1)
	require.Equal(t, "heartbeat", call(t, c, "heartbeat", 0).Type)
	f := call(t, c, "auth", map[string]string{"auth": token})
	if e, ok := f.AsError(); ok {
		require.Equal(t, 4000, e.Code)
		return token, e.Reason
	}
	return token, f.Type
}

// By default tokens do not expire (protocol.md §1: the shipped client never
// logs in again by itself): one issued 31 days ago authenticates, until a
// logout revokes it.
func TestTokensDoNotExpireByDefault(t *testing.T) {
	clk := &clock{}
	n := startNode(t, sqliteURL(t), func(c *server.Config) { c.Now = clk.now })
	token, answer := authAfter(t, n, clk, "alice", 31*24*time.Hour)
	require.Equal(t, "auth", answer)

	require.Equal(t, http.StatusOK, n.logout(token).Status)
	c := n.dial(1)
	call(t, c, "heartbeat", 0)
	requireError(t, call(t, c, "auth", map[string]string{"auth": token}), 4000, "Token expired.")
}

// With REWIND_TOKEN_TTL set, a token past it is refused.
func TestTokenTTLWhenSet(t *testing.T) {
	clk := &clock{}
	n := startNode(t, sqliteURL(t), func(c *server.Config) { c.Now, c.TokenTTL = clk.now, time.Hour })
	_, answer := authAfter(t, n, clk, "bob", 2*time.Hour)
	require.Equal(t, "Token expired.", answer)
}
