package server_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/server"
	"github.com/rewind-chat/rewind/setting"
)

// rawClient speaks WebSocket with no protocol logic: it sends exactly the
// bytes it is given and returns frames as generic maps, so that a test sees
// every key of a frame, or its absence (client.Frame hides both).
type rawClient struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader // reads through whatever the handshake buffered
	rw io.ReadWriter // r and nc, for wsutil to answer control frames
}

// dialRaw opens /ws+query on the node.
func (n *node) dialRaw(query string) *rawClient {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, "ws://"+n.srv.Addr()+"/ws"+query)
	require.NoError(n.t, err)
	n.t.Cleanup(func() { nc.Close() })
	var r io.Reader = nc
	if br != nil {
		r = br
	}
	c := &rawClient{t: n.t, nc: nc, r: bufio.NewReader(r)}
	c.rw = struct {
		io.Reader
		io.Writer
	}{c.r, nc}
	return c
}

// connectRaw dials, heartbeats and authenticates as a, sending no nonce.
func (n *node) connectRaw(a account, query string) *rawClient {
	n.t.Helper()
	c := n.dialRaw(query)
	c.sendText(`{"type":"heartbeat","payload":{"count":0}}`)
	require.Equal(n.t, "heartbeat", c.read()["type"])
	c.send("auth", map[string]string{"auth": a.Token}, "")
	require.Equal(n.t, "auth", c.read()["type"])
	return c
}

func (c *rawClient) sendText(s string) {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetWriteDeadline(time.Now().Add(wait)))
	require.NoError(c.t, wsutil.WriteClientText(c.nc, []byte(s)))
}

// send sends {"type":typ,"payload":payload}, with "nonce" only when set.
func (c *rawClient) send(typ string, payload any, nonce string) {
	c.t.Helper()
	m := map[string]any{"type": typ, "payload": payload}
	if nonce != "" {
		m["nonce"] = nonce
	}
	b, err := json.Marshal(m)
	require.NoError(c.t, err)
	c.sendText(string(b))
}

// read returns the next text frame decoded as a map.
func (c *rawClient) read() map[string]any {
	c.t.Helper()
	require.NoError(c.t, c.nc.SetReadDeadline(time.Now().Add(wait)))
	data, op, err := wsutil.ReadServerData(c.rw)
	require.NoError(c.t, err)
	require.Equal(c.t, ws.OpText, op)
	var m map[string]any
	require.NoError(c.t, json.Unmarshal(data, &m), "%s", data)
	return m
}

// readNoNonce is read for frames that must not carry a "nonce" key at all.
func (c *rawClient) readNoNonce() map[string]any {
	c.t.Helper()
	m := c.read()
	require.NotContains(c.t, m, "nonce", "%v", m)
	return m
}

// obj is m[key] as an object.
func obj(t *testing.T, m map[string]any, key string) map[string]any {
	t.Helper()
	o, ok := m[key].(map[string]any)
	require.True(t, ok, "%s is %T, want an object: %v", key, m[key], m)
	return o
}

func sqliteURL(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "rewind.db") }

func TestSlowConsumerIsClosed4009(t *testing.T) {
	n := startNode(t, sqliteURL(t), func(c *server.Config) {
		c.Gateway.SendQueue = 8
		c.Gateway.Rate = setting.Off
	})
	// The receive buffer is left alone: Linux grows a socket's buffer only
	// as its application reads, so one that never reads stays small. (A
	// buffer shrunk with SetReadBuffer kept the window so small, even once
	// enlarged again, that reading the backlog outlasted the server's close
	// wait.)
	c := n.dialRaw("")

	// Flood ~15 KB heartbeats without reading. The server keeps reading
	// them, so our writes never block; its answers pile up until its queue
	// overflows. The session logs that moment, the only outward sign of it
	// while we are not reading.
	pad := strings.Repeat("x", 15<<10)
	deadline := time.Now().Add(wait)
	sent := 0
	for !strings.Contains(n.log.String(), "session: slow consumer") {
		require.True(t, time.Now().Before(deadline), "no slow consumer after %d heartbeats", sent)
		c.sendText(fmt.Sprintf(`{"type":"heartbeat","payload":{"count":%d,"pad":"%s"}}`, sent, pad))
		sent++
	}

	start := time.Now()
	// Now read: the answers that were in flight, in order and without gaps
	// (nothing dropped silently), then the 4009 close frame.
	require.NoError(t, c.nc.SetReadDeadline(time.Now().Add(wait)))
	got := 0
	for {
		h, err := ws.ReadHeader(c.r)
		require.NoError(t, err, "after %d answers in %s", got, time.Since(start))
		p := make([]byte, h.Length)
		_, err = io.ReadFull(c.r, p)
		require.NoError(t, err, "after %d answers in %s", got, time.Since(start))
		if h.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(p)
			require.Equal(t, ws.StatusCode(4009), code)
			break
		}
		require.Equal(t, ws.OpText, h.OpCode)
		var f struct {
			Type    string `json:"type"`
			Payload struct {
				Count int    `json:"count"`
				Pad   string `json:"pad"`
			} `json:"payload"`
		}
		require.NoError(t, json.Unmarshal(p, &f))
		require.Equal(t, "heartbeat", f.Type)
		require.Equal(t, got, f.Payload.Count)
		require.Len(t, f.Payload.Pad, len(pad))
		got++
	}
	require.Less(t, got, sent, "the queue overflowed, so not every request was answered")
	t.Logf("sent %d heartbeats, %d answered before the close; reading them took %s", sent, got, time.Since(start))

	// Complete the closing handshake; the server then drops the socket
	// (and would after a few seconds anyway, hence no check of the write).
	_ = ws.WriteFrame(c.nc, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(4009, ""))))
	_, err := c.r.ReadByte()
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server ends the connection: %v", err)
	require.Error(t, err)
	require.Eventually(t, func() bool {
		return strings.Contains(n.get("/metrics", "").Body, `rewind_ws_closes_total{code="4009"} 1`)
	}, wait, 10*time.Millisecond)
}

func TestLogoutClosesSessions4000(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		const email, password = "leaver@example.test", "a long enough password"
		me := account{Token: n.signUp("leaver", email, password)}
		c1, _ := n.connect(me, 1)
		c2, _ := n.connect(me, 2)
		other := n.newAccount("stayer")
		co, _ := n.connect(other, 2)
		anon := n.dial(1)
		require.Equal(t, "heartbeat", call(t, anon, "heartbeat", 0).Type)

		a := n.logout(me.Token)
		require.Equal(t, 200, a.Status, a.Body)
		require.Equal(t, "info", a.Type)
		requireClosed(t, c1, 4000, "")
		requireClosed(t, c2, 4000, "")

		// Nobody else is touched.
		require.Equal(t, "heartbeat", call(t, co, "heartbeat", 1).Type)
		require.Equal(t, "user", call(t, co, "user", map[string]string{"name": other.Name}).Type)
		require.Equal(t, "heartbeat", call(t, anon, "heartbeat", 1).Type)

		// The old token is dead, on the gateway and over HTTP.
		c := n.dial(1)
		require.Equal(t, "heartbeat", call(t, c, "heartbeat", 0).Type)
		requireError(t, call(t, c, "auth", map[string]string{"auth": me.Token}), 4000, "Token expired.")
		require.Equal(t, 401, n.logout(me.Token).Status)

		// Logging in again gives a token that works.
		again := account{Token: n.login(email, password)}
		c3, _ := n.connect(again, 1)
		require.Equal(t, "heartbeat", call(t, c3, "heartbeat", 2).Type)
	})
}

func TestShutdownClosesSessions1001(t *testing.T) {
	n := startNode(t, sqliteURL(t))
	a, b := n.newAccount("leaving"), n.newAccount("staying")
	ca, _ := n.connect(a, 1)
	cb, _ := n.connect(b, 2)
	befriend(t, ca, a, cb, b)
	sent := chatOf(t, call(t, ca, "chat", map[string]string{"type": "send", "chat_id": chatID(a, b), "content": "before shutdown"}))
	require.Equal(t, sent.ID, chatOf(t, next(t, cb)).ID)
	beaten := n.dial(1) // heartbeat only, never authenticated
	require.Equal(t, "heartbeat", call(t, beaten, "heartbeat", 0).Type)
	fresh := n.dial(2) // not even a heartbeat

	n.stop()
	for _, c := range []*client.Client{ca, cb, beaten, fresh} {
		requireClosed(t, c, 1001, "")
	}

	// The echoed message survived the shutdown.
	n.start()
	ca, _ = n.connect(a, 1)
	items, _ := history(t, ca, map[string]any{"type": "chat", "load_id": chatID(a, b)})
	require.Len(t, items, 1)
	sent.Type = "load"
	require.Equal(t, sent, items[0])
}

func TestMobileClientReplay(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		seoul := seoul(t)
		token := n.signUp("mobile", "mobile@example.test", "mobile password")
		peer := n.newAccount("peer")
		peerUser := map[string]any{"id": peer.IDString(), "name": "peer", "profile": nil}

		// The peer asks first, so the mobile client's auth lists a request.
		cp := n.connectRaw(peer, "")
		cp.sendText(`{"type":"mutual_users","payload":{"type":"request","name":"mobile"}}`)
		require.Equal(t, map[string]any{"type": "ok", "payload": nil}, cp.readNoNonce())

		m := n.dialRaw("")
		m.sendText(`{"type":"heartbeat","payload":{"count":0}}`)
		require.Equal(t, map[string]any{"type": "heartbeat", "payload": map[string]any{"count": 0.0}}, m.readNoNonce())

		authFrame := `{"type":"auth","payload":{"auth":"` + token + `"}}`
		m.sendText(authFrame)
		f := m.readNoNonce()
		require.Equal(t, "auth", f["type"])
		p := obj(t, f, "payload")
		require.ElementsMatch(t, []string{"self_user", "mutual_requests", "sent_requests", "mutual_users"}, slicesOfKeys(p))
		self := obj(t, p, "self_user")
		myID, ok := self["id"].(string)
		require.True(t, ok, "self_user.id is a string: %v", self)
		require.Regexp(t, `^[1-9]\d*$`, myID)
		me := map[string]any{"id": myID, "name": "mobile", "profile": nil}
		require.Equal(t, me, self)
		requireListString(t, p, "mutual_requests", []any{peerUser})
		requireListString(t, p, "sent_requests", []any{})
		requireListString(t, p, "mutual_users", []any{})

		m.sendText(`{"type":"mutual_users","payload":{"type":"response","name":"peer"}}`)
		require.Equal(t, map[string]any{"type": "ok", "payload": nil}, m.readNoNonce())
		require.Equal(t, map[string]any{"type": "mutual_users", "payload": map[string]any{"type": "response", "user": me}}, cp.readNoNonce())

		// The mobile client never authenticates again: its friends list
		// refreshes by a load.
		m.sendText(`{"type":"load","payload":{"type":"mutual_users"}}`)
		require.Equal(t, map[string]any{"type": "mutual_users", "payload": []any{peerUser}}, m.readNoNonce())

		id, err := strconv.ParseInt(myID, 10, 64)
		require.NoError(t, err)
		dm := strconv.FormatInt(id^peer.ID, 10)
		m.sendText(`{"type":"chat","payload":{"type":"send","chat_id":"` + dm + `","content":"hi"}}`)
		echo := m.readNoNonce()
		require.Equal(t, "chat", echo["type"])
		c := obj(t, echo, "payload")
		require.ElementsMatch(t, []string{"type", "id", "user_id", "chat_id", "content", "created_at"}, slicesOfKeys(c))
		require.Equal(t, "send", c["type"])
		require.Regexp(t, `^[1-9]\d*$`, c["id"])
		require.Equal(t, myID, c["user_id"])
		require.Equal(t, dm, c["chat_id"])
		require.Equal(t, "hi", c["content"])
		requireWireTimeNow(t, c["created_at"], seoul)
		require.Equal(t, echo, cp.readNoNonce(), "the peer gets the same frame")

		cp.sendText(`{"type":"chat","payload":{"type":"send","chat_id":"` + dm + `","content":"hello"}}`)
		reply := cp.readNoNonce()
		require.Equal(t, peer.IDString(), obj(t, reply, "payload")["user_id"])
		require.Equal(t, reply, m.readNoNonce())

		// History as the mobile client asks for it: base64 of an unpadded
		// local time with six fraction digits, no count.
		stamp := time.Now().Add(2 * time.Second).In(seoul).Format("2006-1-2 15:04:05.000000")
		m.sendText(`{"type":"load","payload":{"type":"chat","load_id":"` + dm + `","datetime":"` +
			base64.StdEncoding.EncodeToString([]byte(stamp)) + `"}}`)
		for _, sent := range []map[string]any{echo, reply} { // oldest first
			item := maps.Clone(sent)
			payload := maps.Clone(obj(t, sent, "payload"))
			payload["type"] = "load"
			item["payload"] = payload
			require.Equal(t, item, m.readNoNonce())
		}
		require.Equal(t, map[string]any{"type": "load", "payload": map[string]any{"type": "chat", "load_id": dm, "count": 2.0}}, m.readNoNonce())
	})
}

func slicesOfKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// requireListString checks a v1 auth list: JSON text inside a string.
func requireListString(t *testing.T, p map[string]any, key string, want []any) {
	t.Helper()
	s, ok := p[key].(string)
	require.True(t, ok, "%s is %T, want a string", key, p[key])
	var got []any
	require.NoError(t, json.Unmarshal([]byte(s), &got), "%s: %q", key, s)
	require.Equal(t, want, got, key)
}

// requireWireTimeNow checks that v is a wire time in loc close to now.
func requireWireTimeNow(t *testing.T, v any, loc *time.Location) {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "%v", v)
	require.Regexp(t, `^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$`, s)
	at, err := time.ParseInLocation("2006-01-02 15:04:05.000000", s, loc)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), at, 5*time.Second, "%s read in %s", s, loc)
}

func TestAnswersKeepRequestOrder(t *testing.T) {
	n := startNode(t, sqliteURL(t), func(c *server.Config) { c.Gateway.Rate = setting.Off })
	a, b := n.newAccount("orderly"), n.newAccount("chatty")
	ca, _ := n.connect(a, 2)
	cb, _ := n.connect(b, 2)
	befriend(t, ca, a, cb, b)
	dm := chatID(a, b)

	// Each kind answers in its own place: the session itself, the store,
	// the room actor, the user actor; some fail, one answers many frames.
	type request struct {
		typ     string
		payload any
		check   func(t *testing.T, frames []client.Frame)
	}
	one := func(typ string) func(*testing.T, []client.Frame) {
		return func(t *testing.T, fs []client.Frame) {
			require.Len(t, fs, 1)
			require.Equal(t, typ, fs[0].Type, string(fs[0].Payload))
		}
	}
	fails := func(code int, reason string) func(*testing.T, []client.Frame) {
		return func(t *testing.T, fs []client.Frame) {
			require.Len(t, fs, 1)
			requireError(t, fs[0], code, reason)
		}
	}
	kinds := []func(i int) request{
		func(i int) request { return request{"heartbeat", map[string]int{"count": i}, one("heartbeat")} },
		func(i int) request {
			content := "m" + strconv.Itoa(i)
			return request{"chat", map[string]string{"type": "send", "chat_id": dm, "content": content}, func(t *testing.T, fs []client.Frame) {
				require.Len(t, fs, 1)
				require.Equal(t, content, chatOf(t, fs[0]).Content)
			}}
		},
		func(int) request { return request{"user", map[string]string{"name": b.Name}, one("user")} },
		func(int) request {
			return request{"load", map[string]string{"type": "mutual_users"}, one("mutual_users")}
		},
		func(int) request { return request{"dance", nil, fails(4000, "Unknown type.")} },
		func(int) request {
			return request{"user", map[string]string{"id": "42"}, fails(4004, "User not exist.")}
		},
		func(int) request {
			return request{"load", map[string]any{"type": "chat", "load_id": dm, "count": 3}, func(t *testing.T, fs []client.Frame) {
				require.Len(t, fs, 4, "three items and the end marker")
				for _, f := range fs[:3] {
					require.Equal(t, "load", chatOf(t, f).Type)
				}
				require.Equal(t, "load", fs[3].Type)
			}}
		},
		func(int) request {
			return request{"mutual_users", map[string]string{"type": "request", "name": b.Name}, fails(4000, "select named user is already friend.")}
		},
		func(i int) request {
			return request{"user", map[string]any{"profile": fmt.Sprintf("https://cdn.example.test/%d.png", i)}, one("user")}
		},
		func(int) request {
			return request{"chat", map[string]string{"type": "edit", "chat_id": dm, "id": "12345", "content": "x"}, fails(4004, "Message not exist.")}
		},
		func(int) request { return request{"auth", map[string]string{"auth": a.Token}, one("auth")} },
	}
	// Three messages exist before the first history load.
	for i := range 3 {
		chatOf(t, call(t, ca, "chat", map[string]string{"type": "send", "chat_id": dm, "content": "seed" + strconv.Itoa(i)}))
		next(t, cb)
	}

	// Bob talks meanwhile: his events interleave with the answers.
	const bobSends = 30
	bobDone := make(chan error, 1)
	go func() {
		for i := range bobSends {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			f, err := cb.Call(ctx, "chat", map[string]string{"type": "send", "chat_id": dm, "content": "b" + strconv.Itoa(i)})
			cancel()
			if err == nil && f.Type != "chat" {
				err = fmt.Errorf("bob's send %d answered %s %s", i, f.Type, f.Payload)
			}
			if err != nil {
				bobDone <- err
				return
			}
		}
		bobDone <- nil
	}()

	const total = 200
	reqs := make([]request, 0, total+1)
	for i := range total {
		reqs = append(reqs, kinds[i%len(kinds)](i))
	}
	reqs = append(reqs, kinds[0](total)) // ends on a one-frame answer
	for i, r := range reqs {
		require.NoError(t, ca.Send(r.typ, r.payload, "r"+strconv.Itoa(i)))
	}

	// Group the answers by nonce as they come: the groups must follow the
	// requests exactly, each contiguous.
	last := "r" + strconv.Itoa(len(reqs)-1)
	var groups [][]client.Frame
	events := 0
	ctx := ctxWait(t)
	for len(groups) == 0 || groups[len(groups)-1][0].Nonce != last {
		f, err := ca.Next(ctx)
		require.NoError(t, err, "after %d answers", len(groups))
		if f.Nonce == "" {
			events++
			continue
		}
		if len(groups) > 0 && groups[len(groups)-1][0].Nonce == f.Nonce {
			groups[len(groups)-1] = append(groups[len(groups)-1], f)
			continue
		}
		require.Less(t, len(groups), len(reqs), "more answers than requests: %s", f.Nonce)
		require.Equal(t, "r"+strconv.Itoa(len(groups)), f.Nonce, "answer out of order (%s %s)", f.Type, f.Payload)
		groups = append(groups, []client.Frame{f})
	}
	require.Len(t, groups, len(reqs))
	for i, g := range groups {
		t.Run(fmt.Sprintf("r%d-%s", i, reqs[i].typ), func(t *testing.T) { reqs[i].check(t, g) })
	}
	require.NoError(t, <-bobDone)
	t.Logf("%d answers in order, %d events interleaved", len(groups), events)
}

func TestIdleRoomStopsAndRestarts(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		const idle = 50 * time.Millisecond
		n := startNode(t, db, func(c *server.Config) {
			c.Gateway.RoomIdle = idle
			c.Gateway.Rate = setting.Off
		})
		a, b := n.newAccount("early"), n.newAccount("late")
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		befriend(t, ca, a, cb, b)
		dm := chatID(a, b)
		send := func(c *client.Client, content string) error {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			f, err := c.Call(ctx, "chat", map[string]string{"type": "send", "chat_id": dm, "content": content})
			if err != nil {
				return fmt.Errorf("send %q: %w", content, err)
			}
			var p chatPayload
			if f.Type != "chat" || f.Decode(&p) != nil || p.Content != content {
				return fmt.Errorf("send %q answered %s %s", content, f.Type, f.Payload)
			}
			return nil
		}

		require.NoError(t, send(ca, "first"))
		require.Equal(t, "first", chatOf(t, next(t, cb)).Content)
		// Stay well past the idle time, the session kept busy, so that the
		// room retires; nothing outside shows that, so wait it out.
		for until := time.Now().Add(5 * idle); time.Now().Before(until); time.Sleep(idle / 5) {
			require.Equal(t, "heartbeat", call(t, ca, "heartbeat", 1).Type)
		}
		require.NoError(t, send(ca, "second"))
		require.Equal(t, "second", chatOf(t, next(t, cb)).Content)
		items, _ := history(t, cb, map[string]any{"type": "chat", "load_id": dm})
		require.Equal(t, []string{"first", "second"}, contents(items))

		// Both members send at about the moment the room goes idle, from
		// either side of it: a send racing the retirement must still be
		// stored, echoed and pushed.
		gaps := []time.Duration{idle - 10*time.Millisecond, idle - 3*time.Millisecond, idle - time.Millisecond,
			idle, idle + time.Millisecond, idle + 3*time.Millisecond, idle + 10*time.Millisecond, 2 * idle}
		const rounds = 24
		want := []string{"first", "second"}
		for r := range rounds {
			gap := gaps[r%len(gaps)]
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, c := range []*client.Client{ca, cb} {
				content := fmt.Sprintf("%c%d", "ab"[i], r)
				want = append(want, content)
				wg.Go(func() {
					time.Sleep(gap + time.Duration(i*r%3)*time.Millisecond)
					errs[i] = send(c, content)
				})
			}
			wg.Wait()
			require.NoError(t, errors.Join(errs...), "round %d, gap %s", r, gap)
		}
		// Each member got every message of the other one, once.
		for i, c := range []*client.Client{ca, cb} {
			var got []string
			for range rounds {
				got = append(got, chatOf(t, next(t, c)).Content)
			}
			var exp []string
			for r := range rounds {
				exp = append(exp, fmt.Sprintf("%c%d", "ba"[i], r))
			}
			require.Equal(t, exp, got)
		}
		items, _ = history(t, ca, map[string]any{"type": "chat", "load_id": dm, "count": 100})
		require.ElementsMatch(t, want, contents(items))
		require.Equal(t, []string{"first", "second"}, contents(items)[:2])
	})
}

func contents(items []chatPayload) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Content
	}
	return out
}

func TestNonceEchoedOnErrorsAndAnswers(t *testing.T) {
	n := startNode(t, sqliteURL(t))
	a, b, stranger := n.newAccount("asker"), n.newAccount("answerer"), n.newAccount("stranger")
	dm := chatID(a, b)
	// ask sends one request with nonce and returns its first answer, which
	// must carry that nonce.
	ask := func(c *client.Client, typ string, payload any, nonce string) client.Frame {
		t.Helper()
		require.NoError(t, c.Send(typ, payload, nonce))
		f := next(t, c)
		require.Equal(t, nonce, f.Nonce, "%s %s", f.Type, f.Payload)
		return f
	}

	// The refusal of an auth before the first heartbeat, before the close.
	early := n.dial(1)
	requireError(t, ask(early, "auth", map[string]string{"auth": a.Token}, "too-early"), 4003, "First heartbeat payload was not received.")
	requireClosed(t, early, 4003, "")

	c := n.dial(2)
	require.Equal(t, "heartbeat", ask(c, "heartbeat", map[string]int{"count": 0}, "beat").Type)
	requireError(t, ask(c, "user", map[string]string{"name": b.Name}, "anonymous"), 4001, "Authentication required.")
	requireError(t, ask(c, "dance", nil, "unknown"), 4000, "Unknown type.")
	requireError(t, ask(c, "auth", map[string]string{}, "no-token"), 4000, "Token not provided.")
	require.Equal(t, "auth", ask(c, "auth", map[string]string{"auth": a.Token}, "auth").Type)
	requireError(t, ask(c, "user", map[string]string{"id": "42"}, "nobody"), 4004, "User not exist.")
	require.Equal(t, "user", ask(c, "user", map[string]string{"name": b.Name}, "lookup").Type)
	requireError(t, ask(c, "mutual_users", map[string]string{"type": "delete", "name": b.Name}, "not-friend"), 4004, "select named user was not friend.")
	require.Equal(t, "ok", ask(c, "mutual_users", map[string]string{"type": "request", "name": b.Name}, "befriend").Type)
	cb, _ := n.connect(b, 2)
	require.Equal(t, "ok", call(t, cb, "mutual_users", map[string]string{"type": "response", "name": a.Name}).Type)
	require.Equal(t, "mutual_users", next(t, c).Type)
	requireError(t, ask(c, "chat", map[string]string{"type": "send", "chat_id": chatID(a, stranger), "content": "x"}, "forbidden"), 4005, "Not a mutual user.")
	requireError(t, ask(c, "chat", map[string]string{"type": "send", "chat_id": dm}, "empty"), 4000, "content is not provided.")
	first := chatOf(t, ask(c, "chat", map[string]string{"type": "send", "chat_id": dm, "content": "one"}, "send-1"))
	chatOf(t, ask(c, "chat", map[string]string{"type": "send", "chat_id": dm, "content": "two"}, "send-2"))
	require.Equal(t, "edit", chatOf(t, ask(c, "chat", map[string]string{"type": "edit", "chat_id": dm, "id": first.ID, "content": "uno"}, "edit")).Type)
	require.Equal(t, "user", ask(c, "user", map[string]any{"profile": "https://cdn.example.test/me.png"}, "profile").Type)
	require.Equal(t, "mutual_users", ask(c, "load", map[string]string{"type": "mutual_users"}, "friends").Type)
	requireError(t, ask(c, "load", map[string]any{"type": "chat", "load_id": dm, "count": 0}, "bad-count"), 4000, "Invalid count.")

	// History: every item and the end marker carry the nonce.
	require.NoError(t, c.Send("load", map[string]any{"type": "chat", "load_id": dm}, "history"))
	for _, content := range []string{"uno", "two"} {
		f := next(t, c)
		require.Equal(t, "history", f.Nonce)
		require.Equal(t, content, chatOf(t, f).Content)
	}
	end := next(t, c)
	require.Equal(t, "load", end.Type)
	require.Equal(t, "history", end.Nonce)

	// The limit is 64 bytes, not characters.
	for _, nonce := range []string{strings.Repeat("n", 64), strings.Repeat("가", 21) + "x"} {
		require.Equal(t, "heartbeat", ask(c, "heartbeat", 1, nonce).Type)
	}
	for _, nonce := range []string{strings.Repeat("n", 65), strings.Repeat("가", 22)} {
		require.NoError(t, c.Send("heartbeat", 1, nonce))
		f := next(t, c)
		requireError(t, f, 4000, "Invalid request.")
		require.Empty(t, f.Nonce, "an invalid nonce is not echoed")
	}
	require.NoError(t, c.SendText([]byte(`{"type":"heartbeat","payload":1,"nonce":7}`)))
	requireError(t, next(t, c), 4000, "Invalid request.")
	require.Equal(t, "heartbeat", ask(c, "heartbeat", 2, "still-open").Type)
}

func TestOtherUsersEventsCarryNoNonce(t *testing.T) {
	n := startNode(t, sqliteURL(t))
	a, b := n.newAccount("doer"), n.newAccount("watcher")
	a1 := n.connectRaw(a, "")
	a2 := n.connectRaw(a, "?v=2") // the doer's second device
	b1 := n.connectRaw(b, "?v=2") // v2: it sees edits and profile events (§2.9)
	// answer reads the direct answer to a request, which carries nonce.
	answer := func(c *rawClient, typ, nonce string) map[string]any {
		t.Helper()
		m := c.read()
		require.Equal(t, typ, m["type"], "%v", m)
		require.Equal(t, nonce, m["nonce"], "%v", m)
		return m
	}
	event := func(c *rawClient, typ string) map[string]any {
		t.Helper()
		m := c.readNoNonce()
		require.Equal(t, typ, m["type"], "%v", m)
		return m
	}

	a1.send("mutual_users", map[string]string{"type": "request", "name": b.Name}, "ask")
	answer(a1, "ok", "ask")
	event(b1, "mutual_users")
	require.Equal(t, "self", obj(t, event(a2, "mutual_users"), "payload")["origin"])

	b1.send("mutual_users", map[string]string{"type": "response", "name": a.Name}, "accept")
	answer(b1, "ok", "accept")
	event(a1, "mutual_users")
	event(a2, "mutual_users")

	dm := chatID(a, b)
	a1.send("chat", map[string]string{"type": "send", "chat_id": dm, "content": "hi"}, "send")
	id := obj(t, answer(a1, "chat", "send"), "payload")["id"]
	for _, c := range []*rawClient{a2, b1} {
		require.Equal(t, id, obj(t, event(c, "chat"), "payload")["id"])
	}
	a1.send("chat", map[string]any{"type": "edit", "chat_id": dm, "id": id, "content": "hi!"}, "edit")
	answer(a1, "chat", "edit")
	for _, c := range []*rawClient{a2, b1} {
		require.Equal(t, "edit", obj(t, event(c, "chat"), "payload")["type"])
	}
	b1.send("chat", map[string]string{"type": "send", "chat_id": dm, "content": "hello"}, "reply")
	answer(b1, "chat", "reply")
	event(a1, "chat")
	event(a2, "chat")

	// A profile change reaches the friend as a user event.
	a1.send("user", map[string]any{"profile": "https://cdn.example.test/doer.png"}, "pic")
	answer(a1, "user", "pic")
	require.Equal(t, a.IDString(), obj(t, event(b1, "user"), "payload")["id"])

	// An unfriending by the other side. a2 is left out: whether the doer's
	// other devices see their own profile change is not specified.
	b1.send("mutual_users", map[string]string{"type": "delete", "name": a.Name}, "unfriend")
	answer(b1, "ok", "unfriend")
	require.Equal(t, "delete", obj(t, event(a1, "mutual_users"), "payload")["type"])
}
