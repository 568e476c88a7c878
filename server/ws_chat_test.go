package server_test

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/net/client"
)

// chatPayload is a chat frame's payload.
type chatPayload struct {
	Type      string  `json:"type"`
	ID        string  `json:"id"`
	UserID    string  `json:"user_id"`
	ChatID    string  `json:"chat_id"`
	Content   string  `json:"content"`
	CreatedAt string  `json:"created_at"`
	EditedAt  *string `json:"edited_at"`
}

func chatOf(t *testing.T, f client.Frame) chatPayload {
	t.Helper()
	require.Equal(t, "chat", f.Type, string(f.Payload))
	var p chatPayload
	require.NoError(t, f.Decode(&p))
	return p
}

// history loads a DM's history and returns its items and the end marker's count.
func history(t *testing.T, c *client.Client, payload map[string]any) ([]chatPayload, int) {
	t.Helper()
	frames, err := c.Collect(ctxWait(t), "load", payload, func(f client.Frame) bool { return f.Type == "load" })
	require.NoError(t, err)
	end := frames[len(frames)-1]
	if e, ok := end.AsError(); ok {
		t.Fatalf("load answered error %d %s", e.Code, e.Reason)
	}
	var marker struct {
		Type   string `json:"type"`
		LoadID string `json:"load_id"`
		Count  int    `json:"count"`
	}
	require.NoError(t, end.Decode(&marker))
	require.Equal(t, "chat", marker.Type)
	require.Equal(t, payload["load_id"], marker.LoadID)
	var items []chatPayload
	for _, f := range frames[:len(frames)-1] {
		p := chatOf(t, f)
		require.Equal(t, "load", p.Type)
		items = append(items, p)
	}
	require.Equal(t, len(items), marker.Count)
	return items, marker.Count
}

func TestDirectMessagesEndToEnd(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		alice, bob := n.newAccount("alice"), n.newAccount("bob")
		ca, _ := n.connect(alice, 1)
		ca2, _ := n.connect(alice, 2) // a second device
		cb, _ := n.connect(bob, 2)    // v2: a v1 session sees no edits (§2.9)
		dm := chatID(alice, bob)

		// Not friends yet.
		requireError(t, call(t, ca, "chat", map[string]string{"type": "send", "chat_id": dm, "content": "hi"}), 4005, "Not a mutual user.")

		// request → the other side and my other device hear of it.
		require.Equal(t, "ok", call(t, ca, "mutual_users", map[string]string{"type": "request", "name": bob.Name}).Type)
		var ev struct {
			Type   string         `json:"type"`
			User   map[string]any `json:"user"`
			Origin string         `json:"origin"`
		}
		f := next(t, cb)
		require.Equal(t, "mutual_users", f.Type)
		require.Empty(t, f.Nonce)
		require.NoError(t, f.Decode(&ev))
		require.Equal(t, "request", ev.Type)
		require.Equal(t, map[string]any{"id": alice.IDString(), "name": "alice", "profile": nil}, ev.User)
		require.Empty(t, ev.Origin)
		require.NoError(t, next(t, ca2).Decode(&ev))
		require.Equal(t, "request", ev.Type)
		require.Equal(t, bob.IDString(), ev.User["id"])
		require.Equal(t, "self", ev.Origin)

		// response → friends.
		require.Equal(t, "ok", call(t, cb, "mutual_users", map[string]string{"type": "response", "name": alice.Name}).Type)
		for _, c := range []*client.Client{ca, ca2} {
			require.NoError(t, next(t, c).Decode(&ev))
			require.Equal(t, "response", ev.Type)
			require.Equal(t, bob.IDString(), ev.User["id"])
		}
		friends := call(t, ca, "load", map[string]string{"type": "mutual_users"})
		require.Equal(t, "mutual_users", friends.Type)
		require.JSONEq(t, `[{"id":"`+bob.IDString()+`","name":"bob","profile":null}]`, string(friends.Payload))

		// send: echoed with the nonce after commit, pushed without it.
		echo := call(t, ca, "chat", map[string]string{"type": "send", "chat_id": dm, "content": "hello bob"})
		sent := chatOf(t, echo)
		require.NotEmpty(t, echo.Nonce)
		require.Equal(t, "send", sent.Type)
		require.Equal(t, alice.IDString(), sent.UserID)
		require.Equal(t, dm, sent.ChatID)
		require.Equal(t, "hello bob", sent.Content)
		require.Regexp(t, `^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$`, sent.CreatedAt)
		require.Nil(t, sent.EditedAt)
		for _, c := range []*client.Client{cb, ca2} {
			f := next(t, c)
			require.Empty(t, f.Nonce)
			require.Equal(t, sent, chatOf(t, f))
		}

		// A chat_id as a JSON number works too.
		dmNumber, err := strconv.ParseInt(dm, 10, 64)
		require.NoError(t, err)
		reply := chatOf(t, call(t, cb, "chat", map[string]any{"type": "send", "chat_id": dmNumber, "content": "hi alice"}))
		require.Equal(t, dm, reply.ChatID)
		require.Equal(t, reply, chatOf(t, next(t, ca)))
		require.Equal(t, reply, chatOf(t, next(t, ca2)))

		// edit keeps the id; delete is an edit to "".
		edited := chatOf(t, call(t, ca, "chat", map[string]string{"type": "edit", "chat_id": dm, "id": sent.ID, "content": "hello, bob"}))
		require.Equal(t, "edit", edited.Type)
		require.Equal(t, sent.ID, edited.ID)
		require.Equal(t, "hello, bob", edited.Content)
		require.NotNil(t, edited.EditedAt)
		require.Equal(t, edited, chatOf(t, next(t, cb)))
		require.Equal(t, edited, chatOf(t, next(t, ca2)))
		requireError(t, call(t, cb, "chat", map[string]string{"type": "edit", "chat_id": dm, "id": sent.ID, "content": "hacked"}), 4005, "Not the author.")

		items, _ := history(t, cb, map[string]any{"type": "chat", "load_id": dm})
		require.Len(t, items, 2)
		require.Equal(t, "hello, bob", items[0].Content, "oldest first")
		require.Equal(t, "hi alice", items[1].Content)

		deleted := chatOf(t, call(t, ca, "chat", map[string]string{"type": "edit", "chat_id": dm, "id": sent.ID, "content": ""}))
		require.Equal(t, "", deleted.Content)
		require.Equal(t, sent.ID, deleted.ID)
		require.Equal(t, deleted, chatOf(t, next(t, cb)))
		require.Equal(t, deleted, chatOf(t, next(t, ca2)))
		requireError(t, call(t, ca, "chat", map[string]string{"type": "edit", "chat_id": dm, "id": sent.ID, "content": "back"}), 4004, "Message not exist.")
		items, _ = history(t, ca, map[string]any{"type": "chat", "load_id": dm})
		require.Len(t, items, 1, "a deleted message leaves history")
		require.Equal(t, reply.ID, items[0].ID)

		// unfriend: history stays readable, sending is refused.
		require.Equal(t, "ok", call(t, cb, "mutual_users", map[string]string{"type": "delete", "name": alice.Name}).Type)
		require.NoError(t, next(t, ca).Decode(&ev))
		require.Equal(t, "delete", ev.Type)
		require.NoError(t, next(t, ca2).Decode(&ev))
		require.Equal(t, "delete", ev.Type)
		requireError(t, call(t, ca, "chat", map[string]string{"type": "send", "chat_id": dm, "content": "still there?"}), 4005, "Not a mutual user.")
		items, _ = history(t, ca, map[string]any{"type": "chat", "load_id": dm})
		require.Len(t, items, 1)
	})
}

func TestChatErrors(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		a, b, stranger := n.newAccount("ann"), n.newAccount("ben"), n.newAccount("stranger")
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		befriend(t, ca, a, cb, b)
		dm := chatID(a, b)
		cases := []struct {
			name    string
			payload map[string]any
			code    int
			reason  string
		}{
			{"no content", map[string]any{"type": "send", "chat_id": dm}, 4000, "content is not provided."},
			{"empty content", map[string]any{"type": "send", "chat_id": dm, "content": ""}, 4000, "content is not provided."},
			{"too long", map[string]any{"type": "send", "chat_id": dm, "content": strings.Repeat("가", 4001)}, 4000, "content is too long."},
			{"no such user", map[string]any{"type": "send", "chat_id": strconv.FormatInt(a.ID^999, 10), "content": "x"}, 4004, "User not exist."},
			{"not friends", map[string]any{"type": "send", "chat_id": chatID(a, stranger), "content": "x"}, 4005, "Not a mutual user."},
			{"no chat_id", map[string]any{"type": "send", "content": "x"}, 4000, "chat_id is not provided."},
			{"unknown chat type", map[string]any{"type": "shout", "chat_id": dm, "content": "x"}, 4000, "Unknown chat type."},
			{"edit unknown message", map[string]any{"type": "edit", "chat_id": dm, "id": "12345", "content": "x"}, 4004, "Message not exist."},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				requireError(t, call(t, ca, "chat", c.payload), c.code, c.reason)
			})
		}
		// Exactly 4000 characters is fine; nothing above reached bob.
		long := chatOf(t, call(t, ca, "chat", map[string]any{"type": "send", "chat_id": dm, "content": strings.Repeat("가", 4000)}))
		require.Equal(t, long.ID, chatOf(t, next(t, cb)).ID)
		// A message of another DM is not in this one.
		cs, _ := n.connect(stranger, 2)
		befriend(t, cs, stranger, cb, b)
		other := chatOf(t, call(t, cb, "chat", map[string]any{"type": "send", "chat_id": chatID(b, stranger), "content": "x"}))
		requireError(t, call(t, cb, "chat", map[string]any{"type": "edit", "chat_id": dm, "id": other.ID, "content": "y"}), 4004, "Message not exist.")
	})
}

func TestSendWithNonceIsIdempotent(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		a, b := n.newAccount("retry"), n.newAccount("peer")
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		befriend(t, ca, a, cb, b)
		msg := map[string]string{"type": "send", "chat_id": chatID(a, b), "content": "once"}
		require.NoError(t, ca.Send("chat", msg, "same-nonce"))
		first := next(t, ca)
		require.Equal(t, "same-nonce", first.Nonce)
		require.NoError(t, ca.Send("chat", msg, "same-nonce"))
		second := next(t, ca)
		require.Equal(t, "same-nonce", second.Nonce)
		require.Equal(t, chatOf(t, first), chatOf(t, second))
		require.Equal(t, chatOf(t, first).ID, chatOf(t, next(t, cb)).ID)
		// Bob got one event only: the next thing he sees is the answer to his own request.
		require.Equal(t, "heartbeat", call(t, cb, "heartbeat", 1).Type)
		require.NoError(t, cb.Send("heartbeat", 2, ""))
		require.Equal(t, "heartbeat", next(t, cb).Type)
		items, _ := history(t, cb, map[string]any{"type": "chat", "load_id": chatID(a, b)})
		require.Len(t, items, 1)
	})
}

func TestHistoryPaging(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		a, b := n.newAccount("pager"), n.newAccount("paged")
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		befriend(t, ca, a, cb, b)
		dm := chatID(a, b)
		var sent []chatPayload
		for i := range 7 {
			sent = append(sent, chatOf(t, call(t, ca, "chat", map[string]string{"type": "send", "chat_id": dm, "content": strconv.Itoa(i)})))
		}
		// Pages of 3 by the before cursor: 4..6, 1..3, 0, then nothing.
		var got []string
		before := ""
		for {
			p := map[string]any{"type": "chat", "load_id": dm, "count": 3}
			if before != "" {
				p["before"] = before
			}
			items, count := history(t, ca, p)
			if count == 0 {
				break
			}
			page := []string{}
			for _, it := range items {
				page = append(page, it.Content)
			}
			got = append(page, got...)
			before = items[0].ID
		}
		require.Equal(t, []string{"0", "1", "2", "3", "4", "5", "6"}, got)

		// The mobile client's datetime: base64 of an unpadded wire time
		// in the server zone; messages strictly older than it.
		created, err := time.ParseInLocation("2006-01-02 15:04:05.000000", sent[4].CreatedAt, seoul(t))
		require.NoError(t, err)
		stamp := created.Format("2006-1-2 15:04:05.0000000")
		items, _ := history(t, cb, map[string]any{"type": "chat", "load_id": dm, "datetime": base64.StdEncoding.EncodeToString([]byte(stamp)), "count": 2})
		require.Equal(t, []string{"2", "3"}, []string{items[0].Content, items[1].Content})

		// count bounds
		_, count := history(t, ca, map[string]any{"type": "chat", "load_id": dm, "count": 1000})
		require.Equal(t, 7, count)
		_, count = history(t, ca, map[string]any{"type": "chat", "load_id": dm})
		require.Equal(t, 7, count)
		for _, bad := range []any{0, -1, "x"} {
			requireError(t, call(t, ca, "load", map[string]any{"type": "chat", "load_id": dm, "count": bad}), 4000, "Invalid count.")
		}
		requireError(t, call(t, ca, "load", map[string]any{"type": "chat", "load_id": dm, "datetime": "not base64!"}), 4000, "Invalid datetime.")
		requireError(t, call(t, ca, "load", map[string]any{"type": "chat", "load_id": dm, "datetime": base64.StdEncoding.EncodeToString([]byte("tomorrow"))}), 4000, "Invalid datetime.")
		for _, bad := range []any{12345, map[string]any{}, true} { // not a string at all
			requireError(t, call(t, ca, "load", map[string]any{"type": "chat", "load_id": dm, "datetime": bad}), 4000, "Invalid datetime.")
		}
		for _, now := range []any{nil, ""} { // as absent
			_, count = history(t, ca, map[string]any{"type": "chat", "load_id": dm, "datetime": now})
			require.Equal(t, 7, count)
		}
		requireError(t, call(t, ca, "load", map[string]any{"type": "chat", "load_id": strconv.FormatInt(a.ID^777, 10)}), 4004, "provided DM is not opened.")
		requireError(t, call(t, ca, "load", map[string]any{"type": "gossip"}), 4000, "Unknown load type.")

		// A DM with a user who exists but never talked: empty.
		stranger := n.newAccount("quiet")
		_, count = history(t, ca, map[string]any{"type": "chat", "load_id": chatID(a, stranger)})
		require.Zero(t, count)
	})
}

func seoul(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Seoul")
	require.NoError(t, err)
	return loc
}

func TestFriendErrors(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		a, b, c := n.newAccount("fa"), n.newAccount("fb"), n.newAccount("fc")
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		mu := func(typ, name string) client.Frame {
			return call(t, ca, "mutual_users", map[string]string{"type": typ, "name": name})
		}
		requireError(t, call(t, ca, "mutual_users", map[string]string{"type": "request"}), 4000, "name is not provided.")
		requireError(t, mu("request", "nobody-here"), 4004, "select named user is not exist.")
		requireError(t, mu("request", a.Name), 4000, "cannot target yourself.")
		requireError(t, mu("poke", b.Name), 4000, "Unknown mutual_users type.")
		requireError(t, mu("response", b.Name), 4004, "targeted name was not requested.")
		requireError(t, mu("remove", b.Name), 4004, "targeted name was not requested.")
		requireError(t, mu("delete", b.Name), 4004, "select named user was not friend.")

		// A repeated request is ok; remove takes it back.
		require.Equal(t, "ok", mu("request", b.Name).Type)
		require.Equal(t, "request", eventType(t, next(t, cb)))
		require.Equal(t, "ok", mu("request", strings.ToUpper(b.Name)).Type)
		require.Equal(t, "ok", mu("remove", b.Name).Type)
		require.Equal(t, "remove", eventType(t, next(t, cb)))

		// b declines a's request with remove.
		require.Equal(t, "ok", mu("request", b.Name).Type)
		require.Equal(t, "request", eventType(t, next(t, cb)))
		require.Equal(t, "ok", call(t, cb, "mutual_users", map[string]string{"type": "remove", "name": a.Name}).Type)
		require.Equal(t, "remove", eventType(t, next(t, ca)))

		// Asking someone who asked me makes us friends at once.
		require.Equal(t, "ok", call(t, cb, "mutual_users", map[string]string{"type": "request", "name": a.Name}).Type)
		require.Equal(t, "request", eventType(t, next(t, ca)))
		require.Equal(t, "ok", mu("request", b.Name).Type)
		require.Equal(t, "response", eventType(t, next(t, cb)))
		requireError(t, mu("request", b.Name), 4000, "select named user is already friend.")

		// An offline user's request waits for them.
		require.Equal(t, "ok", mu("request", c.Name).Type)
		_, payload := n.connect(c, 2)
		var p struct {
			Requests []map[string]any `json:"mutual_requests"`
		}
		require.NoError(t, json.Unmarshal(payload, &p))
		require.Len(t, p.Requests, 1)
		require.Equal(t, a.IDString(), p.Requests[0]["id"])
	})
}

func eventType(t *testing.T, f client.Frame) string {
	t.Helper()
	require.Equal(t, "mutual_users", f.Type, string(f.Payload))
	var ev struct {
		Type string `json:"type"`
	}
	require.NoError(t, f.Decode(&ev))
	return ev.Type
}

func TestUserLookupAndProfile(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		a, b := n.newAccount("looker"), n.newAccount("looked")
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		want := `{"id":"` + b.IDString() + `","name":"looked","profile":null}`
		for _, p := range []map[string]any{{"id": b.IDString()}, {"id": b.ID}, {"name": "LOOKED"}} {
			f := call(t, ca, "user", p)
			require.Equal(t, "user", f.Type)
			require.JSONEq(t, want, string(f.Payload))
		}
		requireError(t, call(t, ca, "user", map[string]any{"id": "42"}), 4004, "User not exist.")
		requireError(t, call(t, ca, "user", map[string]any{"name": "ghost"}), 4004, "User not exist.")

		befriend(t, ca, a, cb, b)
		url := "https://cdn.example.test/a.png"
		f := call(t, ca, "user", map[string]any{"profile": url})
		require.Equal(t, "user", f.Type)
		require.JSONEq(t, `{"id":"`+a.IDString()+`","name":"looker","profile":"`+url+`"}`, string(f.Payload))
		ev := next(t, cb)
		require.Equal(t, "user", ev.Type)
		require.JSONEq(t, string(f.Payload), string(ev.Payload))
		for _, bad := range []any{"ftp://x.test/a.png", "not a url", "https://x.test/" + strings.Repeat("a", 512), 5} {
			requireError(t, call(t, ca, "user", map[string]any{"profile": bad}), 4000, "profile must be an http or https URL of at most 512 bytes.")
		}
		f = call(t, ca, "user", map[string]any{"profile": nil})
		require.JSONEq(t, `{"id":"`+a.IDString()+`","name":"looker","profile":null}`, string(f.Payload))
	})
}
