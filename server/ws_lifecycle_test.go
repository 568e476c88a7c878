package server_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/server"
)

func TestHeartbeatAnswersItsPayload(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		c := n.dial(1)
		for _, p := range []string{`{"count":3}`, `5`, `"x"`, `[1,{"a":null}]`, `null`} {
			f := call(t, c, "heartbeat", json.RawMessage(p))
			require.Equal(t, "heartbeat", f.Type)
			require.JSONEq(t, p, string(f.Payload))
			require.NotEmpty(t, f.Nonce)
		}
		// Without a nonce the answer carries none.
		require.NoError(t, c.SendText([]byte(`{"type":"heartbeat","payload":{"count":1}}`)))
		f := next(t, c)
		require.Equal(t, "heartbeat", f.Type)
		require.Empty(t, f.Nonce)
		require.JSONEq(t, `{"count":1}`, string(f.Payload))
	})
}

func TestAuthBeforeHeartbeatIsRefusedAndClosed(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		a := n.newAccount("early")
		c := n.dial(1)
		f := call(t, c, "auth", map[string]string{"auth": a.Token})
		requireError(t, f, 4003, "First heartbeat payload was not received.")
		requireClosed(t, c, 4003, "Heartbeat missing. Websocket session closed.")
	})
}

func fastHeartbeats(c *server.Config) {
	c.Gateway.HeartbeatInterval = 300 * time.Millisecond
	c.Gateway.HeartbeatGrace = 200 * time.Millisecond
}

func TestNoHeartbeatIsClosed(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, fastHeartbeats)
		requireClosed(t, n.dial(1), 4003, "Heartbeat missing. Websocket session closed.")
	})
}

func TestHeartbeatsKeepASessionAlive(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, fastHeartbeats)
		a := n.newAccount("steady")
		c, _ := n.connect(a, 1)
		stop := c.Heartbeats(100 * time.Millisecond)
		// Alive well past several deadlines: requests are still answered.
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			require.Equal(t, "user", call(t, c, "user", map[string]string{"name": a.Name}).Type)
			time.Sleep(100 * time.Millisecond)
		}
		stop()
		requireClosed(t, c, 4003, "Heartbeat missing. Websocket session closed.")
	})
}

func TestFramesThatAreNotRequests(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		c := n.dial(1)
		require.NoError(t, c.SendBinary([]byte{1, 2, 3}))
		requireError(t, next(t, c), 1003, "Binary data not supported.")
		for _, bad := range []string{`hello`, `[1,2]`, `"str"`, `{"type":`} {
			require.NoError(t, c.SendText([]byte(bad)))
			requireError(t, next(t, c), 1007, "Data should be JSON.")
		}
		for _, bad := range []string{`{}`, `{"payload":{}}`, `{"type":""}`, `{"type":7}`} {
			require.NoError(t, c.SendText([]byte(bad)))
			requireError(t, next(t, c), 4000, "Invalid request.")
		}
		requireError(t, call(t, c, "dance", nil), 4000, "Unknown type.")
		// The connection stays open through all of that.
		require.Equal(t, "heartbeat", call(t, c, "heartbeat", map[string]int{"count": 1}).Type)
	})
}

// A message over REWIND_WS_MAX_FRAME is answered 1009 and the session goes
// on (the shipped client never reconnects); one over 1 MiB closes it.
func TestOversizedFrame(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, func(c *server.Config) { c.Gateway.MaxFrame = 1024 })
		c := n.dial(1)
		require.Equal(t, "heartbeat", call(t, c, "heartbeat", strings.Repeat("x", 900)).Type)
		// Its nonce is never read: the answer carries none.
		require.NoError(t, c.Send("heartbeat", strings.Repeat("x", 1100), ""))
		requireError(t, next(t, c), 1009, "Frame too large.")
		require.Equal(t, "heartbeat", call(t, c, "heartbeat", 1).Type, "the session goes on")
		require.NoError(t, c.Send("heartbeat", strings.Repeat("x", 1<<20), ""))
		requireClosed(t, c, 1009, "")
	})
}

func TestRequestsBeforeAuth(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		c := n.dial(1)
		call(t, c, "heartbeat", map[string]int{"count": 0})
		for _, typ := range []string{"chat", "load", "mutual_users", "user"} {
			requireError(t, call(t, c, typ, map[string]string{"type": "send"}), 4001, "Authentication required.")
		}
	})
}

func TestAuthErrors(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		c0 := &clock{}
		n := startNode(t, db, func(c *server.Config) { c.Now = c0.now })
		a := n.newAccount("tokens")
		c := n.dial(1)
		call(t, c, "heartbeat", map[string]int{"count": 0})
		requireError(t, call(t, c, "auth", map[string]string{}), 4000, "Token not provided.")
		requireError(t, call(t, c, "auth", map[string]string{"auth": ""}), 4000, "Token not provided.")
		requireError(t, call(t, c, "auth", map[string]string{"auth": a.Token[:len(a.Token)-3] + "abc"}), 4000, "Token signature mismatch.")
		requireError(t, call(t, c, "auth", map[string]string{"auth": "not.a-token"}), 4000, "Invalid token payload provided.")
		c0.advance(2 * time.Hour) // newAccount's tokens last an hour
		requireError(t, call(t, c, "auth", map[string]string{"auth": a.Token}), 4000, "Token expired.")
		// Still unauthenticated, still open.
		requireError(t, call(t, c, "user", map[string]string{"name": a.Name}), 4001, "Authentication required.")
	})
}

func TestReauth(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		a, b := n.newAccount("first"), n.newAccount("second")
		c, first := n.connect(a, 2)
		again := call(t, c, "auth", map[string]string{"auth": a.Token})
		require.Equal(t, "auth", again.Type)
		require.JSONEq(t, string(first), string(again.Payload))
		requireError(t, call(t, c, "auth", map[string]string{"auth": b.Token}), 4000, "Already authenticated.")
	})
}

func TestAuthPayloadVersions(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		me, friend, asker, asked := n.newAccount("me"), n.newAccount("friend"), n.newAccount("asker"), n.newAccount("asked")
		cm, _ := n.connect(me, 2)
		cf, _ := n.connect(friend, 2)
		befriend(t, cm, me, cf, friend)
		ca, _ := n.connect(asker, 2)
		require.Equal(t, "ok", call(t, ca, "mutual_users", map[string]string{"type": "request", "name": me.Name}).Type)
		require.Equal(t, "ok", call(t, cm, "mutual_users", map[string]string{"type": "request", "name": asked.Name}).Type)

		user := func(a account) map[string]any {
			return map[string]any{"id": a.IDString(), "name": a.Name, "profile": nil}
		}
		want := map[string]any{
			"self_user":       user(me),
			"mutual_requests": []any{user(asker)},
			"sent_requests":   []any{user(asked)},
			"mutual_users":    []any{user(friend)},
		}
		_, v2 := n.connect(me, 2)
		var got2 map[string]any
		require.NoError(t, json.Unmarshal(v2, &got2))
		friendV2 := user(friend)
		friendV2["status"] = "online" // v2 only (protocol.md §4.4)
		require.Equal(t, map[string]any{
			"self_user": want["self_user"], "mutual_requests": want["mutual_requests"],
			"sent_requests": want["sent_requests"], "mutual_users": []any{friendV2},
			"chats":  []any{}, // v2 only (protocol.md §4.1); no DM has a message yet
			"guilds": []any{}, // v2 only (protocol.md §3)
		}, got2)

		_, v1 := n.connect(me, 1)
		var got1 map[string]any
		require.NoError(t, json.Unmarshal(v1, &got1))
		require.Equal(t, want["self_user"], got1["self_user"])
		for _, k := range []string{"mutual_requests", "sent_requests", "mutual_users"} {
			s, ok := got1[k].(string)
			require.True(t, ok, "v1 sends %s as a JSON string", k)
			var list []any
			require.NoError(t, json.Unmarshal([]byte(s), &list))
			require.Equal(t, want[k], list, k)
		}
	})
}

func TestRateLimit(t *testing.T) {
	t.Parallel() // it waits out the 10 s of protocol.md §2.7
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", func(c *server.Config) {
		c.Gateway.Rate, c.Gateway.Burst = 1, 3
	})
	c := n.dial(1)
	for range 3 {
		require.Equal(t, "heartbeat", call(t, c, "heartbeat", 1).Type)
	}
	f := call(t, c, "heartbeat", 1)
	requireError(t, f, 4029, "rate limited.")
	require.NotEmpty(t, f.Nonce, "the refusal answers the request's nonce")
	// Staying over the limit for 10 s closes the session.
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
				if c.Send("heartbeat", 1, "") != nil {
					return
				}
			}
		}
	}()
	requireClosed(t, c, 4008, "")
}
