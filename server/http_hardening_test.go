package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/net/clientaddr"
	"github.com/rewind-chat/rewind/server"
)

// The tests of protocol.md §1 "Registration hardening" (issue 8: findings
// 5, 6, 8, 10, 11, 13, 14 and 16, and trusted proxies), each on the real
// server over real HTTP.

// cheapHashes makes logins fast where the hashing cost is not the point.
func cheapHashes(c *server.Config) {
	c.Password = auth.PasswordParams{MemoryKiB: 1024, Time: 1, Threads: 1}
}

// registerAnswer posts a registration and returns the answer.
func (n *node) registerAnswer(name, email, password string) answer {
	n.t.Helper()
	return n.postForm("/api/v1/auth/register", map[string]string{"name": name, "email": email, "password": password})
}

// Finding 8: names compare in their PRECIS UsernameCaseMapped form with
// full case folding, in registration and in the gateway's lookups.
func TestNamesCompareInPRECISFormWithCaseFolding(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, cheapHashes)
		pairs := []struct{ taken, other string }{
			{"Alice", "ＡＬＩＣＥ"},
			{"Alice", "alice"},
			{"ΣΑΣ", "σας"},
			{"straße", "STRASSE"},
			{"ｔａｒｏ", "Taro"},
		}
		for i, p := range pairs {
			if i == 0 || p.taken != pairs[i-1].taken {
				n.signUp(p.taken, fmt.Sprintf("taken%d@example.test", i), "password1")
			}
			a := n.registerAnswer(p.other, fmt.Sprintf("other%d@example.test", i), "password1")
			require.Equal(t, http.StatusBadRequest, a.Status, "%q after %q: %s", p.other, p.taken, a.Body)
			require.Equal(t, "name is already exist.", a.message(), "%q after %q", p.other, p.taken)
		}

		// The gateway finds users by any spelling of their name, and
		// shows the name as it was registered.
		viewer := n.newAccount("viewer")
		c, _ := n.connect(viewer, 2)
		for spelling, want := range map[string]string{"ＡＬＩＣＥ": "Alice", "σασ": "ΣΑΣ", "Strasse": "straße", "TARO": "ｔａｒｏ"} {
			f := call(t, c, "user", map[string]string{"name": spelling})
			require.Equal(t, "user", f.Type, "%s: %s", spelling, f.Payload)
			var u struct{ Name string }
			require.NoError(t, f.Decode(&u))
			require.Equal(t, want, u.Name)
		}
	})
}

// Finding 8: a name whose letters come from more than one script is
// refused, except Han with Hiragana/Katakana and Han with Hangul.
func TestMixedScriptNamesRefused(t *testing.T) {
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", cheapHashes)
	n.signUp("alice", "alice@example.test", "password1")
	for i, name := range []string{"\u0430lice", "\u0430li\u0441e", "alice山", "김alice", "Ωmega", "たろう김", "ab\u0410"} {
		a := n.registerAnswer(name, fmt.Sprintf("mixed%d@example.test", i), "password1")
		require.Equal(t, http.StatusBadRequest, a.Status, "%q: %s", name, a.Body)
		require.Equal(t, "name mixes scripts.", a.message(), "%q", name)
	}
	for i, name := range []string{"алиса", "山田たろう", "ヤマダ太郎", "김哲洙", "σας", "Ärger_2.0-x", "たろう_2"} {
		email := fmt.Sprintf("single%d@example.test", i)
		n.register(name, email, "password1")
		n.mailedLink(email)
	}
}

// Finding 11: a pending registration reserves nothing. Several wait for
// one name, the first verified takes it, the others' links answer 409; a
// new registration with the same email replaces that email's pending one.
func TestPendingRegistrationReservesNothing(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, cheapHashes)
		n.register("nick", "nick1@example.test", "password1")
		first := n.mailedLink("nick1@example.test")
		n.register("NICK", "nick2@example.test", "password2")
		second := n.mailedLink("nick2@example.test")
		n.register("Ｎｉｃｋ", "nick3@example.test", "password3")
		third := n.mailedLink("nick3@example.test")

		a := n.get(second, "")
		require.Equal(t, http.StatusCreated, a.Status, "a later registration of the name did not cancel the first")
		for _, link := range []string{first, third} {
			a = n.get(link, "")
			require.Equal(t, http.StatusConflict, a.Status, a.Body)
			require.Equal(t, "name is already exist.", a.message())
		}
		n.login("nick2@example.test", "password2")

		n.register("olivia", "olivia@example.test", "password1")
		old := n.mailedLink("olivia@example.test")
		n.register("olive", "OLIVIA@example.test", "password1")
		latest := n.mailedLink("OLIVIA@example.test")
		require.Equal(t, http.StatusNotFound, n.get(old, "").Status, "replaced by the same email's new registration")
		require.Equal(t, http.StatusCreated, n.get(latest, "").Status)
	})
}

// Finding 10: 10 failed logins per account within 15 minutes, then 429,
// whatever the client address, for existing and unknown emails alike.
func TestLoginLimitedPerAccount(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		c := &clock{}
		n := startNode(t, db, cheapHashes, func(cfg *server.Config) { cfg.Now = c.now })
		n.signUp("wendy", "wendy@example.test", "password1")
		n.signUp("xena", "xena@example.test", "password1")
		for _, email := range []string{"wendy@example.test", "nobody@example.test"} {
			for i := range 10 {
				a := n.postForm("/api/v1/auth/login", map[string]string{"email": email, "password": "wrong-password"})
				require.Equal(t, http.StatusUnauthorized, a.Status, "%s attempt %d", email, i)
			}
			for _, password := range []string{"wrong-password", "password1"} {
				a := n.postForm("/api/v1/auth/login", map[string]string{"email": strings.ToUpper(email), "password": password})
				require.Equal(t, http.StatusTooManyRequests, a.Status, "%s: %s", email, a.Body)
				require.Equal(t, "error", a.Type)
				require.Equal(t, "too many attempts.", a.message())
			}
		}
		n.login("xena@example.test", "password1") // another account is not limited

		c.advance(15*time.Minute + time.Second)
		n.login("wendy@example.test", "password1")
		// A success forgets the failures.
		for range 9 {
			require.Equal(t, http.StatusUnauthorized, n.postForm("/api/v1/auth/login", map[string]string{"email": "wendy@example.test", "password": "x"}).Status)
		}
		n.login("wendy@example.test", "password1")
		require.Equal(t, http.StatusUnauthorized, n.postForm("/api/v1/auth/login", map[string]string{"email": "wendy@example.test", "password": "x"}).Status)
	})
}

// Finding 10: password hashing runs in at most HashConcurrency slots; a
// request that cannot start within HashWait is answered 503 "server busy."
// No timing is asserted: with one slot, a wait of a nanosecond and hashes
// of tens of milliseconds, concurrent logins find the slot taken.
func TestPasswordHashingBounded(t *testing.T) {
	slow := auth.PasswordParams{MemoryKiB: 16 * 1024, Time: 2, Threads: 1}
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", func(c *server.Config) {
		c.Password = slow
		c.HTTPLimits.HashConcurrency = 1
		c.HTTPLimits.HashWait = time.Nanosecond
	})
	n.signUp("yuri", "yuri@example.test", "password1")
	statuses := concurrentLogins(t, n, 8, "yuri@example.test", "password1")
	require.Positive(t, statuses[http.StatusServiceUnavailable], "%v", statuses)
	require.Positive(t, statuses[http.StatusCreated], "%v", statuses)
	require.Equal(t, 8, statuses[http.StatusServiceUnavailable]+statuses[http.StatusCreated], "%v", statuses)
	require.Contains(t, n.get("/metrics", "").Body, "rewind_password_hashing_busy_total")

	// With a long enough wait the one slot serves them all in turn.
	m := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", func(c *server.Config) {
		c.Password = slow
		c.HTTPLimits.HashConcurrency = 1
		c.HTTPLimits.HashWait = time.Minute
	})
	m.signUp("zoe", "zoe@example.test", "password1")
	statuses = concurrentLogins(t, m, 8, "zoe@example.test", "password1")
	require.Equal(t, map[int]int{http.StatusCreated: 8}, statuses)
}

// concurrentLogins runs k logins at once and counts their statuses; every
// 503 must be "server busy.".
func concurrentLogins(t *testing.T, n *node, k int, email, password string) map[int]int {
	t.Helper()
	answers := make([]answer, k)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			<-start
			answers[i] = n.postForm("/api/v1/auth/login", map[string]string{"email": email, "password": password})
		})
	}
	close(start)
	wg.Wait()
	statuses := map[int]int{}
	for _, a := range answers {
		statuses[a.Status]++
		if a.Status == http.StatusServiceUnavailable {
			require.Equal(t, "server busy.", a.message())
		}
	}
	return statuses
}

// Finding 10: at most 3 verification mails per email address per hour;
// past that 429 "too many requests." and nothing is queued.
func TestVerificationMailsLimitedPerAddress(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		c := &clock{}
		n := startNode(t, db, cheapHashes, func(cfg *server.Config) { cfg.Now = c.now })
		for i := range 3 {
			n.register(fmt.Sprint("uma", i), "uma@example.test", "password1")
			n.mailedLink("uma@example.test")
			c.advance(time.Minute)
		}
		a := n.registerAnswer("uma9", "UMA@example.test", "password1")
		require.Equal(t, http.StatusTooManyRequests, a.Status, a.Body)
		require.Equal(t, "error", a.Type)
		require.Equal(t, "too many requests.", a.message())
		// Nothing was queued: the next mail is another address's.
		n.register("vera", "vera@example.test", "password1")
		n.mailedLink("vera@example.test")

		c.advance(time.Hour - 3*time.Minute) // an hour after the first mail
		n.register("uma", "uma@example.test", "password1")
		require.Equal(t, http.StatusCreated, n.get(n.mailedLink("uma@example.test"), "").Status)
	})
}

// Trusted proxies: X-Forwarded-For names the client of the per-IP limits
// only when the peer is in REWIND_TRUSTED_PROXIES; the rightmost address
// not in the list is the client.
func TestTrustedProxiesNameTheClient(t *testing.T) {
	register := func(n *node, xff string) int {
		req, err := http.NewRequest(http.MethodPost, n.base+"/api/v1/auth/register", strings.NewReader(""))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		return n.do(req).Status
	}
	// Without trusted proxies the header is ignored: every request is
	// 127.0.0.1's, whatever it claims.
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", func(c *server.Config) { c.AuthRatePerMinute = 2 })
	require.Equal(t, http.StatusBadRequest, register(n, "203.0.113.1"))
	require.Equal(t, http.StatusBadRequest, register(n, "203.0.113.2"))
	require.Equal(t, http.StatusTooManyRequests, register(n, "203.0.113.3"))

	proxies, err := clientaddr.ParseProxies("127.0.0.0/8")
	require.NoError(t, err)
	m := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", func(c *server.Config) {
		c.AuthRatePerMinute = 2
		c.TrustedProxies = proxies
	})
	require.Equal(t, http.StatusBadRequest, register(m, "203.0.113.1"))
	require.Equal(t, http.StatusBadRequest, register(m, "198.51.100.7, 203.0.113.1"), "a spoofed left part is not the client")
	require.Equal(t, http.StatusTooManyRequests, register(m, "203.0.113.1, 127.0.0.9"), "trusted hops are skipped")
	require.Equal(t, http.StatusBadRequest, register(m, "203.0.113.2"), "another client has its own bucket")
	require.Equal(t, http.StatusBadRequest, register(m, ""), "the proxy itself")
}

// rawRequest opens a TCP connection to n and writes head.
func rawRequest(t *testing.T, n *node, head string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", n.srv.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = conn.Write([]byte(head))
	require.NoError(t, err)
	return conn
}

// readResponse reads one response from conn within limit.
func readResponse(t *testing.T, conn net.Conn, limit time.Duration) (*http.Response, string) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(limit)))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "no answer within %v", limit)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	res.Body.Close()
	return res, string(body)
}

// Finding 5 (HTTP): endpoints that take no body answer without waiting for
// the body a slow client announces.
func TestNoBodyEndpointsAnswerWithoutWaitingForOne(t *testing.T) {
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db")
	cases := []struct {
		request string
		status  int
	}{
		{"GET /healthz", http.StatusOK},
		{"GET /readyz", http.StatusOK},
		{"GET /metrics", http.StatusOK},
		{"GET /register", http.StatusOK},
		{"GET /api/v1/auth/email_verify/nosuchkey", http.StatusNotFound},
		{"POST /api/v1/auth/logout", http.StatusUnauthorized},
		{"GET /api/v1/auth/login", http.StatusMethodNotAllowed},
		{"GET /no/such/route", http.StatusNotFound},
	}
	for _, c := range cases {
		for _, framing := range []string{"Content-Length: 1000\r\n\r\nx", "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n"} {
			t.Run(c.request+" "+strings.Fields(framing)[0], func(t *testing.T) {
				conn := rawRequest(t, n, c.request+" HTTP/1.1\r\nHost: rewind\r\n"+framing)
				// The rest of the body never comes (a client at a byte
				// per 5 s is as good as this).
				res, _ := readResponse(t, conn, 3*time.Second)
				require.Equal(t, c.status, res.StatusCode)
			})
		}
	}
}

// Finding 5 (HTTP): a request body must arrive within the body timeout
// (10 s by default, shortened here): a client trickling its body gets 408
// and the connection is closed.
func TestRequestBodyMustArriveInTime(t *testing.T) {
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", func(c *server.Config) {
		c.HTTPLimits.BodyTimeout = 500 * time.Millisecond
	})
	for _, path := range []string{"/api/v1/auth/login", "/api/v1/auth/register"} {
		t.Run(path, func(t *testing.T) {
			conn := rawRequest(t, n, "POST "+path+" HTTP/1.1\r\nHost: rewind\r\n"+
				"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n")
			stop := make(chan struct{})
			defer close(stop)
			go func() { // one byte per 100 ms: 20 s for the whole body
				for {
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
						if _, err := conn.Write([]byte("a")); err != nil {
							return
						}
					}
				}
			}()
			res, body := readResponse(t, conn, 5*time.Second)
			require.Equal(t, http.StatusRequestTimeout, res.StatusCode, body)
			require.True(t, res.Close, "the connection is not reused")
			require.Contains(t, body, "request body did not arrive in time.")
		})
	}
	// A body that arrives in time is served as ever.
	a := n.postForm("/api/v1/auth/login", map[string]string{"email": "nobody@example.test", "password": "password1"})
	require.Equal(t, http.StatusUnauthorized, a.Status)
}

// Finding 6: when the token secret comes from the database the server
// says at start that a copy of the database forges tokens; the secret
// itself is never logged, generated or configured.
func TestTokenSecretFromDatabaseWarnsAndIsNeverLogged(t *testing.T) {
	const warning = "a copy of the database is enough to forge tokens; set REWIND_TOKEN_SECRET or REWIND_TOKEN_SECRET_FILE"
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, cheapHashes)
		token := n.signUp("sam", "sam@example.test", "password1")
		secret, err := auth.Secret(context.Background(), n.srv.Store(), "")
		require.NoError(t, err)
		n.restart()
		n.logout(token)
		n.stop()
		log := n.log.String()
		require.Equal(t, 2, strings.Count(log, warning), "once per start:\n%s", log)
		requireSecretNotIn(t, log, secret)
	})

	configured := []byte(strings.Repeat("k", 20) + "-configured-secret")
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", cheapHashes, func(c *server.Config) { c.TokenSecret = string(configured) })
	n.signUp("tom", "tom@example.test", "password1")
	n.stop()
	require.NotContains(t, n.log.String(), warning)
	requireSecretNotIn(t, n.log.String(), configured)
}

func requireSecretNotIn(t *testing.T, log string, secret []byte) {
	t.Helper()
	for _, form := range []string{string(secret), hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret),
		base64.RawStdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret)} {
		require.NotContains(t, log, form)
	}
}

// Finding 13: the verification key is never logged, whatever the path
// around it and the status: paths are logged by route pattern.
func TestVerificationKeyNeverLogged(t *testing.T) {
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", cheapHashes)
	n.register("una", "una@example.test", "password1")
	link := n.mailedLink("una@example.test")
	key := path.Base(link)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", link + "/extra", http.StatusNotFound},
		{"GET", link + "/", http.StatusNotFound},
		{"GET", "/api/v1/auth/email_verify/x/" + key, http.StatusNotFound},
		{"GET", "/" + key, http.StatusNotFound},
		{"GET", "/api/v1/" + key + "/email_verify", http.StatusNotFound},
		{"POST", link, http.StatusMethodNotAllowed},
		{"GET", "/api/v1/auth/email_verify/" + key + "/../" + key, http.StatusTemporaryRedirect},
		{"GET", "/healthz?key=" + key, http.StatusOK},
		{"GET", link + "?again=" + key, http.StatusCreated},
		{"HEAD", link, http.StatusNotFound},
	} {
		req, err := http.NewRequest(c.method, n.base+c.path, nil)
		require.NoError(t, err)
		res, err := noRedirect.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, c.status, res.StatusCode, "%s %s", c.method, c.path)
	}
	n.stop()
	log := n.log.String()
	require.Contains(t, log, "/api/v1/auth/email_verify/{key}")
	require.NotContains(t, log, key)
}

// Finding 14: token signatures are decoded strictly: the other spellings
// of the last character and line breaks inside are refused as a bad
// signature, on the WebSocket and on logout.
func TestTokenSignatureDecodedStrictly(t *testing.T) {
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", cheapHashes)
	token := n.signUp("vic", "vic@example.test", "password1")
	dot := strings.LastIndexByte(token, '.')
	signed, sig := token[:dot], token[dot+1:]
	want, err := base64.RawURLEncoding.DecodeString(sig)
	require.NoError(t, err)
	var spellings []string // the same bytes to a lenient decoder
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		v := sig[:len(sig)-1] + string(c)
		if b, err := base64.RawURLEncoding.DecodeString(v); err == nil && bytes.Equal(b, want) && v != sig {
			spellings = append(spellings, signed+"."+v)
		}
	}
	require.Len(t, spellings, 3)
	for _, s := range spellings {
		a := n.logout(s)
		require.Equal(t, http.StatusUnauthorized, a.Status, s)
		require.Equal(t, "Token signature mismatch.", a.message())
	}
	lineBreaks := []string{signed + "." + sig[:20] + "\n" + sig[20:], signed + "." + sig[:20] + "\r" + sig[20:], signed + "." + sig[:20] + "\r\n" + sig[20:]}
	for _, s := range append(spellings, lineBreaks...) {
		c := n.dial(2)
		require.Equal(t, "heartbeat", call(t, c, "heartbeat", map[string]int{"count": 0}).Type)
		requireError(t, call(t, c, "auth", map[string]string{"auth": s}), 4000, "Token signature mismatch.")
	}
	c := n.dial(2)
	require.Equal(t, "heartbeat", call(t, c, "heartbeat", map[string]int{"count": 0}).Type)
	require.Equal(t, "auth", call(t, c, "auth", map[string]string{"auth": token}).Type, "the token as issued works")
	require.Equal(t, http.StatusOK, n.logout(token).Status)
}

// Finding 16: JSON bodies with anything after the object are refused, and
// a NUL or invalid UTF-8 in any field is a 400 that names the field, never
// a 500 (PostgreSQL refuses NUL in text: SQLSTATE 22021).
func TestHTTPFieldsRefuseJunkNULAndInvalidUTF8(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, cheapHashes)
		n.signUp("victor", "victor@example.test", "password1")
		post := func(path, contentType, body string) answer {
			req, err := http.NewRequest(http.MethodPost, n.base+path, strings.NewReader(body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", contentType)
			return n.do(req)
		}
		const form, json = "application/x-www-form-urlencoded", "application/json"
		const reg, login = "/api/v1/auth/register", "/api/v1/auth/login"
		cases := []struct {
			name, path, contentType, body string
			status                        int
			message                       string
		}{
			{"JSON with trailing junk", login, json, `{"email":"victor@example.test","password":"password1"} x`, 400, "request body could not be read."},
			{"two JSON objects", login, json, `{"email":"victor@example.test","password":"password1"}{"a":"b"}`, 400, "request body could not be read."},
			{"register JSON with trailing junk", reg, json, `{"name":"walt","email":"walt@example.test","password":"password1"}]`, 400, "request body could not be read."},
			{"login email with NUL", login, form, "email=victor%00%40example.test&password=password1", 400, "email must be valid UTF-8 without U+0000."},
			{"login email with NUL, JSON", login, json, `{"email":"victor@example.test\u0000","password":"password1"}`, 400, "email must be valid UTF-8 without U+0000."},
			{"login email invalid UTF-8", login, form, "email=victor%FF%40example.test&password=password1", 400, "email must be valid UTF-8 without U+0000."},
			{"login email invalid UTF-8, JSON", login, json, "{\"email\":\"victor\xff@example.test\",\"password\":\"password1\"}", 400, "email must be valid UTF-8 without U+0000."},
			{"login password with NUL", login, form, "email=victor%40example.test&password=pass%00word1", 400, "password must be valid UTF-8 without U+0000."},
			{"name with NUL", reg, form, "name=wa%00lt&email=walt%40example.test&password=password1", 400, "name must be valid UTF-8 without U+0000."},
			{"name invalid UTF-8, JSON", reg, json, "{\"name\":\"wa\xc3lt\",\"email\":\"walt@example.test\",\"password\":\"password1\"}", 400, "name must be valid UTF-8 without U+0000."},
			{"email with NUL, JSON", reg, json, `{"name":"walt","email":"walt\u0000@example.test","password":"password1"}`, 400, "email must be valid UTF-8 without U+0000."},
			{"email invalid UTF-8", reg, form, "name=walt&email=w%E9lt%40example.test&password=password1", 400, "email must be valid UTF-8 without U+0000."},
			{"password with NUL", reg, form, "name=walt&email=walt%40example.test&password=password%00", 400, "password must be valid UTF-8 without U+0000."},
			{"password invalid UTF-8", reg, json, "{\"name\":\"walt\",\"email\":\"walt@example.test\",\"password\":\"pass\xffword\"}", 400, "password must be valid UTF-8 without U+0000."},
			{"JSON with trailing space is fine", login, json, "{\"email\":\"victor@example.test\",\"password\":\"password1\"}\n ", 201, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				a := post(c.path, c.contentType, c.body)
				require.Equal(t, c.status, a.Status, a.Body)
				if c.message != "" {
					require.Equal(t, "error", a.Type)
					require.Equal(t, c.message, a.message())
				}
			})
		}
		// None of them registered anything: the next mail is this one's.
		n.register("walt", "walt@example.test", "password1")
		n.mailedLink("walt@example.test")
	})
}
