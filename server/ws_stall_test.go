package server_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/persistence/storetest"
	"github.com/rewind-chat/rewind/persistence/storeurl"
	"github.com/rewind-chat/rewind/server"
)

// startGated starts a node whose store is held by a gate.
func startGated(t *testing.T, databaseURL string) (*node, *storetest.Gate) {
	store, err := storeurl.Open(context.Background(), databaseURL)
	require.NoError(t, err)
	gate := storetest.NewGate(store)
	n := startNode(t, databaseURL, noRateLimit, func(c *server.Config) { c.Store = gate })
	return n, gate
}

// sendChat sends one DM and returns its nonce.
func sendChat(t *testing.T, c *client.Client, dm, content string) string {
	t.Helper()
	nonce := c.NewNonce()
	require.NoError(t, c.Send("chat", sendPayload(dm, content), nonce))
	return nonce
}

// A store call that waits holds up only the actor that made it: while one
// room's activation, one user's friend request or one session's history
// read waits in the store, every other delivery goes on, including the
// deliveries to that very user and session.
func TestStalledStoreHoldsOnlyItsCaller(t *testing.T) {
	stores(t, func(t *testing.T, databaseURL string) {
		n, gate := startGated(t, databaseURL)
		a, b, c, d, e := n.newAccount("stall-a"), n.newAccount("stall-b"), n.newAccount("stall-c"),
			n.newAccount("stall-d"), n.newAccount("stall-e")
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		cc, _ := n.connect(c, 2)
		cd, _ := n.connect(d, 2)
		befriend(t, ca, a, cb, b)
		befriend(t, cc, c, cd, d)
		call(t, cc, "chat", sendPayload(chatID(c, d), "warm"))
		require.Equal(t, "chat", next(t, cd).Type)

		// A cold room's activation waits: a warm room goes on.
		gate.Hold("OpenDMs")
		held := sendChat(t, ca, chatID(a, b), "cold room")
		require.True(t, gate.AwaitWaiting("OpenDMs", 1, wait), "the activation did not reach the store")
		delivered := 0
		for i := range 20 {
			f := call(t, cc, "chat", sendPayload(chatID(c, d), fmt.Sprint("warm ", i)))
			require.Equal(t, "chat", f.Type, string(f.Payload))
			if f := next(t, cd); f.Type == "chat" {
				delivered++
			}
		}
		require.Equal(t, 1, gate.Waiting("OpenDMs"), "the activation ended early: nothing was stalled")
		require.Equal(t, 20, delivered, "delivered while stalled")
		gate.Release("OpenDMs")
		f, err := awaitNonce(ctxWait(t), ca, held)
		require.NoError(t, err)
		require.Equal(t, "chat", f.Type, string(f.Payload))
		require.Equal(t, "chat", next(t, cb).Type)

		// A's friend request waits: deliveries to A go on.
		gate.Hold("RequestFriend")
		held = ca.NewNonce()
		require.NoError(t, ca.Send("mutual_users", map[string]string{"type": "request", "name": e.Name}, held))
		require.True(t, gate.AwaitWaiting("RequestFriend", 1, wait))
		delivered = 0
		for i := range 10 {
			call(t, cb, "chat", sendPayload(chatID(a, b), fmt.Sprint("to a ", i)))
			if f := next(t, ca); f.Type == "chat" && f.Nonce == "" {
				delivered++
			}
		}
		require.Equal(t, 1, gate.Waiting("RequestFriend"))
		require.Equal(t, 10, delivered, "delivered to the user while its friend request was stalled")
		gate.Release("RequestFriend")
		f, err = awaitNonce(ctxWait(t), ca, held)
		require.NoError(t, err)
		require.Equal(t, "ok", f.Type, string(f.Payload))

		// A's history read waits: events still reach that session.
		gate.Hold("History")
		held = ca.NewNonce()
		require.NoError(t, ca.Send("load", map[string]any{"type": "chat", "load_id": chatID(a, b), "count": 100}, held))
		require.True(t, gate.AwaitWaiting("History", 1, wait))
		delivered = 0
		for i := range 5 {
			call(t, cb, "chat", sendPayload(chatID(a, b), fmt.Sprint("during load ", i)))
			if f := next(t, ca); f.Type == "chat" && f.Nonce == "" {
				delivered++
			}
		}
		require.Equal(t, 1, gate.Waiting("History"))
		require.Equal(t, 5, delivered, "delivered to the session while its own read was stalled")
		gate.Release("History")
		items := 0
		for {
			f := next(t, ca)
			require.Equal(t, held, f.Nonce, "%s %s", f.Type, f.Payload)
			if f.Type == "load" {
				break
			}
			items++
		}
		// The page ends at the time of the request, before the five.
		require.Equal(t, 1+10, items, "the history after the stall")
	})
}
