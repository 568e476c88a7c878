package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres/pgtest"
	"github.com/rewind-chat/rewind/persistence/storeurl"
	"github.com/rewind-chat/rewind/server"
)

// The chat hardening of issue 8, each test on the real server over real
// WebSockets: a refused write fails alone (finding 1), no session outlives
// a logout (2), a nonce is per chat (3), 5000 and 5001 tell the truth and
// queued writes fail together while the database stalls (4), sessions per
// user and idle room actors are bounded (12), and a huge history count is
// cut (16).

// poison is a content that the poisoning store turns into one that the
// database refuses, below the frame decoder (which refuses U+0000 and
// invalid UTF-8 itself): the writer must be robust on its own.
const poison = "poison me"

// poisoning is a Store whose WriteMessages turns the content poison into a
// string holding U+0000 and an invalid UTF-8 byte.
type poisoning struct{ persistence.Store }

func (p poisoning) WriteMessages(ctx context.Context, ops []persistence.MessageOp) ([]persistence.MessageResult, error) {
	ops = append([]persistence.MessageOp(nil), ops...)
	for i := range ops {
		if ops[i].Message.Content == poison {
			ops[i].Message.Content = "poisoned \x00 \xff"
		}
	}
	return p.Store.WriteMessages(ctx, ops)
}

// Finding 1: a write the database refuses fails alone, never the batch it
// shares with other users' writes. Ten attackers keep poisoned sends in the
// writer's batches while an unrelated pair sends 1,000 messages: every one
// of the pair's is stored and echoed, every poisoned one is answered 4000
// and stored nowhere. (Before, PostgreSQL failed the whole group-commit
// transaction with SQLSTATE 22021, and the pair got 5000s.)
func TestPoisonedWriteFailsAlone(t *testing.T) {
	stores(t, func(t *testing.T, databaseURL string) {
		store, err := storeurl.Open(context.Background(), databaseURL)
		require.NoError(t, err)
		n := startNode(t, databaseURL, noRateLimit, func(c *server.Config) {
			c.Store = poisoning{store}
			c.Gateway.HeartbeatInterval = 10 * time.Minute // the run is longer than one on a busy machine
		})

		a, b := n.newAccount("steadfast"), n.newAccount("bystander")
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		befriend(t, ca, a, cb, b)
		dm := chatID(a, b)

		const attackers = 10
		var (
			stop             atomic.Bool
			refused, wrongly atomic.Int64
			wg               sync.WaitGroup
			attackerDM       string
			firstAttacker    *client.Client
			problems         = make(chan error, 2*attackers)
		)
		for i := range attackers {
			x, y := n.newAccount(fmt.Sprint("poisoner", i)), n.newAccount(fmt.Sprint("accomplice", i))
			cx, _ := n.connect(x, 2)
			cy, _ := n.connect(y, 2)
			befriend(t, cx, x, cy, y)
			if i == 0 {
				attackerDM, firstAttacker = chatID(x, y), cx
			}
			xdm := chatID(x, y)
			wg.Go(func() {
				// Two sends in flight, so that the session always has one
				// for the writer.
				const window = 2
				inflight := 0
				for k := 0; ; k++ {
					for inflight < window && !stop.Load() {
						if err := cx.Send("chat", sendPayload(xdm, poison), fmt.Sprint("p", k, "-", inflight)); err != nil {
							problems <- err
							return
						}
						inflight++
					}
					if inflight == 0 {
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), wait)
					f, err := cx.Next(ctx)
					cancel()
					if err != nil {
						problems <- fmt.Errorf("attacker %d: %w", i, err)
						return
					}
					inflight--
					if e, ok := f.AsError(); ok && e.Code == 4000 && e.Reason == "Invalid request." {
						refused.Add(1)
						continue
					}
					if wrongly.Add(1) == 1 {
						problems <- fmt.Errorf("attacker %d: a poisoned send answered %s %s", i, f.Type, f.Payload)
					}
				}
			})
		}

		// The pair: 1,000 sends, 8 in flight, each answered by its echo.
		const sends, window = 1000, 8
		pending := map[string]string{} // nonce → content
		sent, echoed, failed := 0, 0, 0
		for echoed+failed < sends {
			for sent < sends && len(pending) < window {
				nonce, content := fmt.Sprint("pair-", sent), fmt.Sprint("pair message ", sent)
				require.NoError(t, ca.Send("chat", sendPayload(dm, content), nonce))
				pending[nonce] = content
				sent++
			}
			f := next(t, ca)
			content, ok := pending[f.Nonce]
			require.True(t, ok, "frame without a pending nonce: %s %s", f.Type, f.Payload)
			delete(pending, f.Nonce)
			if e, isErr := f.AsError(); isErr {
				if failed++; failed <= 3 {
					t.Errorf("the pair's send %s answered %d %s", f.Nonce, e.Code, e.Reason)
				}
				continue
			}
			m, isChat := asChat(f)
			require.True(t, isChat, "%s %s", f.Type, f.Payload)
			require.Equal(t, content, m.Content)
			echoed++
		}
		stop.Store(true)
		wg.Wait()
		close(problems)
		for err := range problems {
			t.Error(err)
		}
		require.Equal(t, sends, echoed, "every send of the pair stored and echoed (%d failed)", failed)
		require.Zero(t, wrongly.Load(), "poisoned sends not answered 4000")
		require.Greater(t, refused.Load(), int64(50), "the attackers' writes must have shared the writer's batches")
		require.Len(t, fullHistory(t, ca, dm), sends)
		require.Empty(t, fullHistory(t, firstAttacker, attackerDM), "nothing poisoned is stored")
		t.Logf("%d sends of the pair echoed beside %d refused poisoned sends", echoed, refused.Load())
	})
}

// Finding 2: a session that authenticates while its user's logout runs
// does not survive the logout. The gated run makes the race certain: the
// token is checked, the logout revokes it and closes the user's sessions,
// and only then would the session have attached.
func TestAuthDuringLogoutDoesNotSurvive(t *testing.T) {
	stores(t, func(t *testing.T, databaseURL string) {
		n, gate := startGated(t, databaseURL)
		a := n.newAccount("leaver")
		other, _ := n.connect(a, 2) // an open session: the logout closes it

		c := n.dial(2)
		require.Equal(t, "heartbeat", call(t, c, "heartbeat", 0).Type)
		gate.Hold("FriendLists") // auth reads the lists after checking the token
		require.NoError(t, c.Send("auth", map[string]string{"auth": a.Token}, "auth"))
		require.True(t, gate.AwaitWaiting("FriendLists", 1, wait), "the auth did not reach its reads")
		require.Equal(t, http.StatusOK, n.logout(a.Token).Status)
		requireClosed(t, other, 4000, "Logged out elsewhere.")
		gate.Release("FriendLists")
		f, err := awaitNonce(ctxWait(t), c, "auth")
		require.NoError(t, err)
		requireError(t, f, 4000, "Token expired.")
		requireError(t, call(t, c, "load", map[string]string{"type": "mutual_users"}), 4001, "Authentication required.")

		// The same race left to chance, hundreds of times.
		races(t, n, 300)
	})
}

// races runs rounds of an auth and a logout of the same user started
// together, and fails when a session is authenticated after the logout
// answered without being closed.
func races(t *testing.T, n *node, rounds int) {
	t.Helper()
	var authed, refusedAuth int
	for i := range rounds {
		a := n.newAccount(fmt.Sprint("racer", i))
		c := n.dial(2)
		require.Equal(t, "heartbeat", call(t, c, "heartbeat", 0).Type)
		logout := make(chan int, 1)
		delay := time.Duration(rand.IntN(1500)) * time.Microsecond
		go func() {
			time.Sleep(delay)
			req, _ := http.NewRequest(http.MethodPost, n.base+"/api/v1/auth/logout", nil)
			req.Header.Set("Authorization", "Bearer "+a.Token)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				logout <- 0
				return
			}
			res.Body.Close()
			logout <- res.StatusCode
		}()
		require.NoError(t, c.Send("auth", map[string]string{"auth": a.Token}, "auth"))
		require.Equal(t, http.StatusOK, <-logout, "round %d: logout", i)
		// The logout has answered: from now on the session must not be
		// authenticated, or must be about to be closed with 4000.
		f, err := awaitNonce(ctxWait(t), c, "auth")
		require.NoError(t, err, "round %d: no answer to auth", i)
		if _, isErr := f.AsError(); isErr {
			requireError(t, f, 4000, "Token expired.")
			refusedAuth++
			requireError(t, call(t, c, "load", map[string]string{"type": "mutual_users"}), 4001, "Authentication required.")
			c.Close()
			continue
		}
		require.Equal(t, "auth", f.Type)
		authed++
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		for {
			_, err := c.Next(ctx)
			if err == nil {
				continue
			}
			var ce *client.CloseError
			require.ErrorAs(t, err, &ce, "round %d: the session authenticated during the logout survived it", i)
			require.Equal(t, 4000, ce.Code)
			break
		}
		cancel()
		c.Close()
	}
	t.Logf("%d rounds: %d auths answered and then closed by the logout, %d refused", rounds, authed, refusedAuth)
}

// Finding 3: the nonce is the idempotency key per (author, chat). The same
// nonce in another DM is a new message, stored, echoed and delivered; a
// retry in each DM answers that DM's message and tells nobody.
func TestNoncePerChat(t *testing.T) {
	stores(t, func(t *testing.T, databaseURL string) {
		n := startNode(t, databaseURL, noRateLimit)
		a, b, c := n.newAccount("nonce-a"), n.newAccount("nonce-b"), n.newAccount("nonce-c")
		ca, _ := n.connect(a, 2)
		cb, _ := n.connect(b, 2)
		cc, _ := n.connect(c, 2)
		befriend(t, ca, a, cb, b)
		befriend(t, ca, a, cc, c)
		ab, ac := chatID(a, b), chatID(a, c)

		sendOnce := func(dm, content string) storedChat {
			t.Helper()
			f, err := sendAwait(ctxWait(t), ca, dm, content, "same nonce")
			require.NoError(t, err)
			m, ok := asChat(f)
			require.True(t, ok, "%s %s", f.Type, f.Payload)
			return m
		}
		toB := sendOnce(ab, "to b")
		require.Equal(t, "to b", toB.Content)
		ev, _ := asChat(next(t, cb))
		require.Equal(t, toB.ID, ev.ID)

		toC := sendOnce(ac, "to c")
		require.Equal(t, "to c", toC.Content, "the same nonce in another chat is a new message")
		require.NotEqual(t, toB.ID, toC.ID)
		ev, ok := asChat(next(t, cc))
		require.True(t, ok)
		require.Equal(t, toC.ID, ev.ID, "the other member is told")

		// Retries answer each chat's own message and push nothing.
		require.Equal(t, toB.ID, sendOnce(ab, "retry to b").ID)
		require.Equal(t, toC.ID, sendOnce(ac, "retry to c").ID)
		for _, cl := range []*client.Client{cb, cc} {
			require.NoError(t, cl.Send("heartbeat", "after the retries", ""))
			require.Equal(t, "heartbeat", next(t, cl).Type, "a retry pushes nothing")
		}
		require.Len(t, fullHistory(t, ca, ab), 1)
		require.Len(t, fullHistory(t, ca, ac), 1)
	})
}

// Finding 4: while the database stalls (its connection open, nothing
// answered), a write that reached it is answered 5001, since it may commit
// yet, and not 5000 ("nothing was applied"); the writes queued behind it,
// in the same session and in another one, are all answered within about
// one time limit, not one limit each in turn. After the stall every write
// retried with its nonce is stored exactly once.
func TestStalledDatabaseAnswersUnknownOutcome(t *testing.T) {
	const limit = time.Second
	schemaURL := pgtest.NewSchemaURL(t)
	u, err := url.Parse(schemaURL)
	require.NoError(t, err)
	proxy := startTCPProxy(t, u.Host)
	u.Host = proxy.addr()
	n := startNode(t, u.String(), noRateLimit, func(c *server.Config) { c.Gateway.ChatWriteTimeout = limit })

	a, b := n.newAccount("staller"), n.newAccount("waiter")
	ca, _ := n.connect(a, 2)
	cb, _ := n.connect(b, 2)
	befriend(t, ca, a, cb, b)
	ca2, _ := n.connect(a, 2) // before the stall: auth reads the database
	dm := chatID(a, b)
	_, ok := asChat(call(t, ca, "chat", sendPayload(dm, "warm up"))) // the room is loaded
	require.True(t, ok)

	proxy.stall()
	start := time.Now()
	require.NoError(t, ca.Send("chat", sendPayload(dm, "stalled q0"), "q0"))
	time.Sleep(limit / 5) // q0's transaction is out and stuck
	type pending struct {
		c      *client.Client
		nonce  string
		answer client.Frame
		at     time.Duration
	}
	var all []*pending
	all = append(all, &pending{c: ca, nonce: "q0"})
	for i := 1; i < 5; i++ {
		nonce := fmt.Sprint("q", i)
		require.NoError(t, ca.Send("chat", sendPayload(dm, "stalled "+nonce), nonce))
		all = append(all, &pending{c: ca, nonce: nonce})
	}
	for i := range 3 {
		nonce := fmt.Sprint("r", i)
		require.NoError(t, ca2.Send("chat", sendPayload(dm, "stalled "+nonce), nonce))
		all = append(all, &pending{c: ca2, nonce: nonce})
	}
	// Generous, and still below two limits: before, the five sends of ca
	// were answered at 1, 2, 3, 4 and 5 s.
	deadline, cancel := context.WithTimeout(context.Background(), 2*limit+limit/2)
	defer cancel()
	unknown := 0
	for _, p := range all {
		f, err := awaitNonce(deadline, p.c, p.nonce)
		require.NoError(t, err, "%s not answered within %v of the stall", p.nonce, time.Since(start))
		p.answer, p.at = f, time.Since(start)
		e, isErr := f.AsError()
		require.True(t, isErr, "%s answered %s %s while the database stalls", p.nonce, f.Type, f.Payload)
		switch e.Code {
		case 5001:
			require.Equal(t, "Outcome unknown; retry with the same nonce.", e.Reason)
			unknown++
		case 5000:
		default:
			t.Fatalf("%s answered %d %s", p.nonce, e.Code, e.Reason)
		}
	}
	e, _ := all[0].answer.AsError()
	require.Equal(t, 5001, e.Code, "q0 reached the database, which may commit it: its outcome is unknown")
	for _, p := range all {
		e, _ := p.answer.AsError()
		t.Logf("%s answered %d after %v", p.nonce, e.Code, p.at.Round(10*time.Millisecond))
	}

	proxy.resume()
	for _, p := range all {
		ctx, cancel := context.WithTimeout(context.Background(), 3*wait)
		for {
			f, err := sendAwait(ctx, p.c, dm, "stalled "+p.nonce, p.nonce)
			require.NoError(t, err, "retry of %s", p.nonce)
			if e, isErr := f.AsError(); isErr {
				require.Contains(t, []int{5000, 5001}, e.Code, "retry of %s: %s", p.nonce, e.Reason)
				time.Sleep(20 * time.Millisecond)
				continue
			}
			m, ok := asChat(f)
			require.True(t, ok)
			require.Equal(t, "stalled "+p.nonce, m.Content)
			break
		}
		cancel()
	}
	db := pgConnect(t, schemaURL)
	rows, err := db.Query(ctxWait(t), `SELECT nonce, count(*) FROM messages WHERE author_id = $1 AND nonce IS NOT NULL GROUP BY nonce`, a.ID)
	require.NoError(t, err)
	counts := map[string]int{}
	var (
		nonce string
		count int
	)
	_, err = pgx.ForEachRow(rows, []any{&nonce, &count}, func() error { counts[nonce] = count; return nil })
	require.NoError(t, err)
	for _, p := range all {
		require.Equal(t, 1, counts[p.nonce], "%s stored exactly once", p.nonce)
	}
	t.Logf("%d writes answered within %v of the stall, %d of them 5001", len(all), all[len(all)-1].at.Round(10*time.Millisecond), unknown)
}

// Finding 12: at most REWIND_WS_MAX_SESSIONS (default 64) sessions per
// user; the auth that would exceed it is answered 4029 and the connection
// stays unauthenticated, and it may authenticate once a session ends.
func TestMaxSessionsPerUser(t *testing.T) {
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", noRateLimit)
	a := n.newAccount("many")
	var sessions []*client.Client
	for range 64 {
		c, _ := n.connect(a, 2)
		sessions = append(sessions, c)
	}
	c := n.dial(2)
	require.Equal(t, "heartbeat", call(t, c, "heartbeat", 0).Type)
	requireError(t, call(t, c, "auth", map[string]string{"auth": a.Token}), 4029, "Too many sessions.")
	requireError(t, call(t, c, "load", map[string]string{"type": "mutual_users"}), 4001, "Authentication required.")

	require.NoError(t, sessions[0].Close())
	waitUntil(t, wait, "a session to end", func() bool {
		f := call(t, c, "auth", map[string]string{"auth": a.Token})
		if f.Type == "auth" {
			return true
		}
		requireError(t, f, 4029, "Too many sessions.")
		return false
	})
	require.Equal(t, "mutual_users", call(t, c, "load", map[string]string{"type": "mutual_users"}).Type)
}

// Finding 12: sends to made-up chat_ids do not pile up room actors: a room
// whose state says no one can write to it answers and retires at once.
func TestMadeUpChatIDsDoNotPileUpRooms(t *testing.T) {
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", noRateLimit)
	a, stranger := n.newAccount("prober"), n.newAccount("stranger")
	ca, _ := n.connect(a, 2)
	const sends, window = 2000, 32
	const rooms = "rewind_rooms_active"
	inflight, answered := 0, 0
	for i := 0; answered < sends; {
		for ; i < sends && inflight < window; i++ {
			other := int64(5_000_000_000 + i)
			dm := strconv.FormatInt(a.ID^other, 10)
			if i%100 == 0 {
				dm = chatID(a, stranger) // a real user, not a friend
			}
			require.NoError(t, ca.Send("chat", sendPayload(dm, "hello?"), fmt.Sprint("m", i)))
			inflight++
		}
		f := next(t, ca)
		e, isErr := f.AsError()
		require.True(t, isErr, "%s %s", f.Type, f.Payload)
		if strings.HasSuffix(f.Nonce, "00") || f.Nonce == "m0" {
			require.Equal(t, 4005, e.Code, f.Nonce)
		} else {
			require.Equal(t, 4004, e.Code, f.Nonce)
		}
		inflight--
		answered++
	}
	waitUntil(t, wait, "the rooms to retire", func() bool { return metricValue(t, n, rooms) <= 1 })
	t.Logf("after %d sends to made-up chat ids: %v rooms alive", sends, metricValue(t, n, rooms))
}

// Finding 16: a count too large for any integer is cut to 100 as §2.4
// says; zero and negative counts stay errors.
func TestHistoryCountIsCut(t *testing.T) {
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", noRateLimit)
	a, b := n.newAccount("counter"), n.newAccount("counted")
	ca, _ := n.connect(a, 2)
	cb, _ := n.connect(b, 2)
	befriend(t, ca, a, cb, b)
	dm := chatID(a, b)
	for i := range 101 {
		_, ok := asChat(call(t, ca, "chat", sendPayload(dm, fmt.Sprint("m", i))))
		require.True(t, ok)
	}
	for _, count := range []string{"99999999999999999999", "100", "101", "9223372036854775807"} {
		frames, err := ca.Collect(ctxWait(t), "load", map[string]any{"type": "chat", "load_id": dm, "count": json.Number(count)},
			func(f client.Frame) bool { return f.Type == "load" })
		require.NoError(t, err)
		end := frames[len(frames)-1]
		require.Equal(t, "load", end.Type, "count %s: %s", count, end.Payload)
		var marker struct{ Count int }
		require.NoError(t, end.Decode(&marker))
		require.Equal(t, 100, marker.Count, "count %s", count)
		require.Len(t, frames, 101)
	}
	for _, count := range []string{"0", "-1", "-99999999999999999999"} {
		f := call(t, ca, "load", map[string]any{"type": "chat", "load_id": dm, "count": json.Number(count)})
		requireError(t, f, 4000, "Invalid count.")
	}
}
