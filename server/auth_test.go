package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/server"
)

// resolve checks a token the way the gateway will: with the secret the
// server persisted.
func resolve(t *testing.T, store persistence.Store, token string) (persistence.User, error) {
	t.Helper()
	secret, err := auth.Secret(context.Background(), store, "")
	require.NoError(t, err)
	return auth.NewTokens(secret, time.Hour, store, nil).Resolve(context.Background(), token)
}

func TestSignUpOverRealSMTP(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		token := n.signUp("Alice", "alice@example.test", "correct horse")

		u, err := resolve(t, n.srv.Store(), token)
		require.NoError(t, err)
		require.Equal(t, "Alice", u.Name)
		require.Equal(t, "alice@example.test", u.Email)
		require.Nil(t, u.Profile)

		// Login ignores the case of the email.
		n.login("ALICE@Example.Test", "correct horse")

		// The mailer counts its outcome after the SMTP exchange ends.
		require.Eventually(t, func() bool {
			return strings.Contains(n.get("/metrics", "").Body, `rewind_mail_attempts_total{outcome="sent"} 1`)
		}, 5*time.Second, 10*time.Millisecond)
		m := n.get("/metrics", "").Body
		require.Contains(t, m, `rewind_accounts_verified_total 1`)
		require.Contains(t, m, `rewind_logins_total{result="ok"} 2`)
	})
}

func TestSignUpWithJSONBodies(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		a := n.postJSON("/api/v1/auth/register", map[string]string{"name": "bob", "email": "bob@example.test", "password": "hunter2hunter2"})
		require.Equal(t, http.StatusCreated, a.Status, a.Body)
		require.Equal(t, http.StatusCreated, n.get(n.mailedLink("bob@example.test"), "application/json").Status)
		a = n.postJSON("/api/v1/auth/login", map[string]string{"email": "bob@example.test", "password": "hunter2hunter2"})
		require.Equal(t, http.StatusCreated, a.Status, a.Body)
		require.Equal(t, "auth", a.Type)
		require.NotEmpty(t, a.Payload["token"])
	})
}

func TestVerifyLinkAnswersHTMLToBrowsers(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		n.register("carol", "carol@example.test", "password1")
		link := n.mailedLink("carol@example.test")
		browser := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
		a := n.get(link, browser)
		require.Equal(t, http.StatusCreated, a.Status)
		require.True(t, strings.HasPrefix(a.Header.Get("Content-Type"), "text/html"))
		require.Contains(t, a.Body, "account successfully created.")

		a = n.get(link, browser)
		require.Equal(t, http.StatusNotFound, a.Status)
		require.Contains(t, a.Body, "The session has expired or does not exist.")
	})
}

func TestRegisterErrors(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		n.signUp("taken", "taken@example.test", "password1")
		long := strings.Repeat("a", 33)
		cases := []struct {
			name    string
			fields  map[string]string
			status  int
			message string
		}{
			{"no name", map[string]string{"email": "x@example.test", "password": "password1"}, 400, "name is not provided."},
			{"name too short", map[string]string{"name": "x", "email": "x@example.test", "password": "password1"}, 400, "name must be 2 to 32 letters, digits, '_', '.' or '-'."},
			{"name too long", map[string]string{"name": long, "email": "x@example.test", "password": "password1"}, 400, "name must be 2 to 32 letters, digits, '_', '.' or '-'."},
			{"name with space", map[string]string{"name": "a b", "email": "x@example.test", "password": "password1"}, 400, "name must be 2 to 32 letters, digits, '_', '.' or '-'."},
			{"no email", map[string]string{"name": "xavier", "password": "password1"}, 400, "email is not provided."},
			{"bad email", map[string]string{"name": "xavier", "email": "not-an-address", "password": "password1"}, 400, "email is not a valid address."},
			{"email with display name", map[string]string{"name": "xavier", "email": "X <x@example.test>", "password": "password1"}, 400, "email is not a valid address."},
			{"email too long", map[string]string{"name": "xavier", "email": strings.Repeat("e", 250) + "@x.io", "password": "password1"}, 400, "email is not a valid address."},
			{"no password", map[string]string{"name": "xavier", "email": "x@example.test"}, 400, "password is not provided."},
			{"password too short", map[string]string{"name": "xavier", "email": "x@example.test", "password": "1234567"}, 400, "password must be 8 to 256 bytes long."},
			{"password too long", map[string]string{"name": "xavier", "email": "x@example.test", "password": strings.Repeat("p", 257)}, 400, "password must be 8 to 256 bytes long."},
			{"email taken, other case", map[string]string{"name": "xavier", "email": "TAKEN@example.test", "password": "password1"}, 400, "email is already exist."},
			{"name taken, other case", map[string]string{"name": "TaKeN", "email": "x@example.test", "password": "password1"}, 400, "name is already exist."},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				a := n.postForm("/api/v1/auth/register", c.fields)
				require.Equal(t, c.status, a.Status, a.Body)
				require.Equal(t, "error", a.Type)
				require.Equal(t, c.message, a.message())
			})
		}
		// None of them stored anything or sent a mail: the next mail is
		// the one for this registration.
		n.register("xavier", "x@example.test", "password1")
		n.mailedLink("x@example.test")
	})
}

func TestBodyLimitAndMethod(t *testing.T) {
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db")
	a := n.postForm("/api/v1/auth/register", map[string]string{"name": "big", "email": "big@example.test", "password": strings.Repeat("p", 1<<20)})
	require.Equal(t, http.StatusRequestEntityTooLarge, a.Status)
	require.Equal(t, "request body is too large.", a.message())

	a = n.get("/api/v1/auth/register", "")
	require.Equal(t, http.StatusMethodNotAllowed, a.Status)
	require.Equal(t, "error", a.Type)
	require.Equal(t, "POST", a.Header.Get("Allow"))

	a = n.get("/no/such/route", "")
	require.Equal(t, http.StatusNotFound, a.Status)
	require.Equal(t, "error", a.Type)
}

func TestReRegistrationReplacesPending(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		n.register("dave", "dave@example.test", "first-password")
		first := n.mailedLink("dave@example.test")
		// Same email, other name: replaces the first.
		n.register("david", "dave@example.test", "second-password")
		second := n.mailedLink("dave@example.test")
		require.NotEqual(t, first, second)

		a := n.get(first, "")
		require.Equal(t, http.StatusNotFound, a.Status)
		require.Equal(t, "error", a.Type)
		require.Equal(t, "The session has expired or does not exist.", a.message())

		a = n.get(second, "")
		require.Equal(t, http.StatusCreated, a.Status)
		require.Equal(t, "info", a.Type)
		require.Equal(t, "account successfully created.", a.message())
		require.Equal(t, http.StatusNotFound, n.get(second, "").Status, "a link works once")

		n.login("dave@example.test", "second-password")
		u, err := n.srv.Store().UserByEmail(context.Background(), "dave@example.test")
		require.NoError(t, err)
		require.Equal(t, "david", u.Name)

		// Same name, other email, replaces nothing: the first verified
		// takes the name, the other link then answers 409
		// (TestPendingRegistrationReservesNothing).
		n.register("erin", "erin1@example.test", "password1")
		old := n.mailedLink("erin1@example.test")
		n.register("ERIN", "erin2@example.test", "password1")
		require.Equal(t, http.StatusCreated, n.get(n.mailedLink("erin2@example.test"), "").Status)
		require.Equal(t, http.StatusConflict, n.get(old, "").Status)
	})
}

func TestExpiredLink(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		c := &clock{}
		n := startNode(t, db, func(cfg *server.Config) { cfg.Now = c.now })
		n.register("frank", "frank@example.test", "password1")
		link := n.mailedLink("frank@example.test")
		c.advance(24*time.Hour + time.Second)
		a := n.get(link, "")
		require.Equal(t, http.StatusNotFound, a.Status)
		require.Equal(t, "The session has expired or does not exist.", a.message())
	})
}

func TestVerifyConflictWhenTakenMeanwhile(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		n.register("grace", "grace@example.test", "password1")
		link := n.mailedLink("grace@example.test")
		// An operator creates an account with that name meanwhile.
		require.NoError(t, n.srv.Store().CreateUser(context.Background(), persistence.User{
			ID: 42, Name: "GRACE", Email: "other@example.test", PasswordHash: "$argon2id$x", CreatedAt: time.Now(),
		}))
		a := n.get(link, "")
		require.Equal(t, http.StatusConflict, a.Status)
		require.Equal(t, "error", a.Type)
		require.Equal(t, "name is already exist.", a.message())
		require.Equal(t, http.StatusNotFound, n.get(link, "").Status)
	})
}

func TestLoginErrors(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		n.signUp("heidi", "heidi@example.test", "password1")
		// A pending registration cannot log in.
		n.register("ivan", "ivan@example.test", "password1")
		cases := []struct {
			name    string
			fields  map[string]string
			status  int
			message string
		}{
			{"no email", map[string]string{"password": "password1"}, 400, "email or password is no provided."},
			{"no password", map[string]string{"email": "heidi@example.test"}, 400, "email or password is no provided."},
			{"wrong password", map[string]string{"email": "heidi@example.test", "password": "password2"}, 401, "email or password incorrect."},
			{"unknown email", map[string]string{"email": "nobody@example.test", "password": "password1"}, 401, "email or password incorrect."},
			{"not verified yet", map[string]string{"email": "ivan@example.test", "password": "password1"}, 401, "email or password incorrect."},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				a := n.postForm("/api/v1/auth/login", c.fields)
				require.Equal(t, c.status, a.Status, a.Body)
				require.Equal(t, "error", a.Type)
				require.Equal(t, c.message, a.message())
			})
		}
	})
}

func TestRateLimits(t *testing.T) {
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", func(c *server.Config) { c.AuthRatePerMinute = 3 })
	for i := range 3 {
		a := n.postForm("/api/v1/auth/login", map[string]string{"email": "nobody@example.test", "password": "password1"})
		require.Equal(t, http.StatusUnauthorized, a.Status, "attempt %d", i)
	}
	a := n.postForm("/api/v1/auth/login", map[string]string{"email": "nobody@example.test", "password": "password1"})
	require.Equal(t, http.StatusTooManyRequests, a.Status)
	require.Equal(t, "error", a.Type)
	require.Equal(t, "too many attempts.", a.message())

	// Register has its own bucket.
	for range 3 {
		require.Equal(t, http.StatusBadRequest, n.postForm("/api/v1/auth/register", nil).Status)
	}
	a = n.postForm("/api/v1/auth/register", map[string]string{"name": "judy", "email": "judy@example.test", "password": "password1"})
	require.Equal(t, http.StatusTooManyRequests, a.Status)
	require.Equal(t, "too many requests.", a.message())
}

func TestLogoutRevokesEveryToken(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		phone := n.signUp("mallory", "mallory@example.test", "password1")
		laptop := n.login("mallory@example.test", "password1")

		a := n.logout("")
		require.Equal(t, http.StatusUnauthorized, a.Status)
		require.Equal(t, "Token not provided.", a.message())
		a = n.logout(phone[:len(phone)-2] + "xx")
		require.Equal(t, http.StatusUnauthorized, a.Status)
		require.Equal(t, "Token signature mismatch.", a.message())
		a = n.logout("garbage")
		require.Equal(t, http.StatusUnauthorized, a.Status)
		require.Equal(t, "Invalid token payload provided.", a.message())

		a = n.logout(phone)
		require.Equal(t, http.StatusOK, a.Status, a.Body)
		require.Equal(t, "info", a.Type)
		for _, tok := range []string{phone, laptop} {
			_, err := resolve(t, n.srv.Store(), tok)
			require.ErrorIs(t, err, auth.ErrTokenExpired)
			a = n.logout(tok)
			require.Equal(t, http.StatusUnauthorized, a.Status)
			require.Equal(t, "Token expired.", a.message())
		}
		fresh := n.login("mallory@example.test", "password1")
		_, err := resolve(t, n.srv.Store(), fresh)
		require.NoError(t, err)
	})
}

func TestRestartKeepsAccountsPendingAndTokens(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		token := n.signUp("oscar", "oscar@example.test", "password1")
		n.register("peggy", "peggy@example.test", "password1")
		link := n.mailedLink("peggy@example.test")

		n.restart()

		_, err := resolve(t, n.srv.Store(), token)
		require.NoError(t, err, "a token survives a restart")
		require.Equal(t, http.StatusOK, n.logout(token).Status)
		require.Equal(t, http.StatusCreated, n.get(link, "").Status, "a pending registration survives a restart")
		n.login("peggy@example.test", "password1")
		n.login("oscar@example.test", "password1")
	})
}

func TestMailServerDownIsNotAnError(t *testing.T) {
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", func(c *server.Config) {
		c.Mail.Host, c.Mail.Port = "127.0.0.1", 1 // nothing listens there
	})
	a := n.postForm("/api/v1/auth/register", map[string]string{"name": "quinn", "email": "quinn@example.test", "password": "password1"})
	require.Equal(t, http.StatusCreated, a.Status, a.Body)
}

func TestHealthReadinessMetricsAndForms(t *testing.T) {
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db")
	require.Equal(t, http.StatusOK, n.get("/healthz", "").Status)
	require.Equal(t, http.StatusOK, n.get("/readyz", "").Status)
	for path, action := range map[string]string{"/register": "/api/v1/auth/register", "/login": "/api/v1/auth/login"} {
		a := n.get(path, "")
		require.Equal(t, http.StatusOK, a.Status)
		require.True(t, strings.HasPrefix(a.Header.Get("Content-Type"), "text/html"))
		require.Contains(t, a.Body, `action="`+action+`"`)
	}
	page := n.get("/", "")
	require.Equal(t, http.StatusOK, page.Status)
	require.NotEmpty(t, page.Header.Get("X-Request-Id"), "the browser client's page goes through the API's middleware")
	a := n.get("/metrics", "")
	require.Equal(t, http.StatusOK, a.Status)
	require.Contains(t, a.Body, `rewind_http_requests_total{code="200",method="GET",route="/healthz"}`)
	require.Contains(t, a.Body, `rewind_http_requests_total{code="200",method="GET",route="/{$}"}`)
	require.Contains(t, a.Body, "go_goroutines")

	require.NoError(t, n.srv.Store().Close())
	a = n.get("/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, a.Status)
	require.Equal(t, http.StatusOK, n.get("/healthz", "").Status)
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	n := startNode(t, "sqlite:"+t.TempDir()+"/rewind.db", func(c *server.Config) { c.DebugAddr = "127.0.0.1:0" })
	res, err := http.Get("http://" + n.srv.DebugAddr() + "/debug/pprof/heap?debug=1")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, http.StatusNotFound, n.get("/debug/pprof/", "").Status, "never on the public listener")
}
