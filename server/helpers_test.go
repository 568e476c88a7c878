package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/actors/mailer"
	"github.com/rewind-chat/rewind/logtest"
	"github.com/rewind-chat/rewind/net/smtpd"
	"github.com/rewind-chat/rewind/persistence/postgres/pgtest"
	"github.com/rewind-chat/rewind/server"
	"github.com/rewind-chat/rewind/setting"
)

// stores runs f once on a fresh SQLite database and once on a fresh
// PostgreSQL schema (skipped when PostgreSQL is unreachable, failed when it
// is required).
func stores(t *testing.T, f func(t *testing.T, databaseURL string)) {
	t.Run("sqlite", func(t *testing.T) {
		f(t, "sqlite:"+filepath.Join(t.TempDir(), "rewind.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		f(t, pgtest.NewSchemaURL(t))
	})
}

// clock is a settable time source shared by a test and its server.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// node is a running server with its SMTP receiver, clock and log.
type node struct {
	t    *testing.T
	srv  *server.Server
	cfg  server.Config
	smtp *smtpd.Server
	log  *logtest.Buffer
	base string
}

// startNode starts a server on a loopback port over databaseURL, mailing
// through a real SMTP server in this process. edit adjusts the config.
func startNode(t *testing.T, databaseURL string, edit ...func(*server.Config)) *node {
	t.Helper()
	n := newNode(t, databaseURL, edit...)
	n.start()
	return n
}

// newNode is startNode without the start: the config, SMTP receiver and
// log of a node.
func newNode(t *testing.T, databaseURL string, edit ...func(*server.Config)) *node {
	t.Helper()
	mail, err := smtpd.Start("127.0.0.1:0", 16)
	require.NoError(t, err)
	t.Cleanup(func() { mail.Close() })
	n := &node{t: t, smtp: mail, log: &logtest.Buffer{}}
	logger := zerolog.New(n.log).With().Timestamp().Logger()
	n.cfg = server.Config{
		Addr:              "127.0.0.1:0",
		DatabaseURL:       databaseURL,
		AuthRatePerMinute: setting.Off,
		Logger:            &logger,
		Mail: mailer.Config{
			Host: mail.Host(), Port: mail.Port(), TLS: mailer.TLSNone,
			From: "rewind@example.test", BaseBackoff: 10 * time.Millisecond,
		},
	}
	for _, e := range edit {
		e(&n.cfg)
	}
	return n
}

func (n *node) start() {
	n.t.Helper()
	srv, err := server.Start(context.Background(), n.cfg)
	require.NoError(n.t, err)
	n.srv = srv
	n.base = "http://" + srv.Addr()
	n.t.Cleanup(n.stop)
}

// stop shuts the server down; a second call does nothing.
func (n *node) stop() {
	if n.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(n.t, n.srv.Shutdown(ctx))
	n.srv = nil
}

// restart stops the server and starts a new one on the same database and
// address family, as a process restart would.
func (n *node) restart() {
	n.t.Helper()
	n.stop()
	n.start()
}

// answer is a decoded response.
type answer struct {
	Status  int
	Header  http.Header
	Type    string         `json:"type"`
	Payload map[string]any `json:"payload"`
	Body    string
}

func (a answer) message() string {
	m, _ := a.Payload["message"].(string)
	return m
}

func (n *node) do(req *http.Request) answer {
	n.t.Helper()
	res, err := http.DefaultClient.Do(req)
	require.NoError(n.t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(n.t, err)
	a := answer{Status: res.StatusCode, Header: res.Header, Body: string(body)}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		require.NoError(n.t, json.Unmarshal(body, &a), "body %q", body)
	}
	return a
}

// postForm posts form-encoded fields, as the mobile client does.
func (n *node) postForm(path string, fields map[string]string) answer {
	n.t.Helper()
	v := url.Values{}
	for k, s := range fields {
		v.Set(k, s)
	}
	req, err := http.NewRequest(http.MethodPost, n.base+path, strings.NewReader(v.Encode()))
	require.NoError(n.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return n.do(req)
}

// postJSON posts body as application/json.
func (n *node) postJSON(path string, body any) answer {
	n.t.Helper()
	b, err := json.Marshal(body)
	require.NoError(n.t, err)
	req, err := http.NewRequest(http.MethodPost, n.base+path, bytes.NewReader(b))
	require.NoError(n.t, err)
	req.Header.Set("Content-Type", "application/json")
	return n.do(req)
}

func (n *node) get(path, accept string) answer {
	n.t.Helper()
	req, err := http.NewRequest(http.MethodGet, n.base+path, nil)
	require.NoError(n.t, err)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return n.do(req)
}

func (n *node) logout(token string) answer {
	n.t.Helper()
	req, err := http.NewRequest(http.MethodPost, n.base+"/api/v1/auth/logout", nil)
	require.NoError(n.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return n.do(req)
}

var linkPattern = regexp.MustCompile(`https?://[^\s"<>]+/api/v1/auth/email_verify/[A-Za-z0-9_-]+`)

// mailedLink waits for the next mail, checks it went to email, and returns
// the verification link's path.
func (n *node) mailedLink(email string) string {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := n.smtp.Next(ctx)
	require.NoError(n.t, err, "no verification mail arrived")
	require.Equal(n.t, []string{email}, m.To)
	link := linkPattern.FindString(decodeQP(string(m.Data)))
	require.NotEmpty(n.t, link, "no verification link in mail:\n%s", m.Data)
	u, err := url.Parse(link)
	require.NoError(n.t, err)
	return u.Path
}

// decodeQP undoes quoted-printable soft line breaks and "=3D", enough to
// find a link in a mail body.
func decodeQP(s string) string {
	s = strings.ReplaceAll(s, "=\r\n", "")
	return strings.ReplaceAll(s, "=3D", "=")
}

// register posts a registration and requires it to be accepted.
func (n *node) register(name, email, password string) {
	n.t.Helper()
	a := n.postForm("/api/v1/auth/register", map[string]string{"name": name, "email": email, "password": password})
	require.Equal(n.t, http.StatusCreated, a.Status, a.Body)
	require.Equal(n.t, "info", a.Type)
	require.Equal(n.t, "successfully created an account creation request.", a.message())
}

// signUp registers, follows the mailed link and logs in; it returns the token.
func (n *node) signUp(name, email, password string) string {
	n.t.Helper()
	n.register(name, email, password)
	a := n.get(n.mailedLink(email), "")
	require.Equal(n.t, http.StatusCreated, a.Status, a.Body)
	return n.login(email, password)
}

func (n *node) login(email, password string) string {
	n.t.Helper()
	a := n.postForm("/api/v1/auth/login", map[string]string{"email": email, "password": password})
	require.Equal(n.t, http.StatusCreated, a.Status, a.Body)
	require.Equal(n.t, "auth", a.Type)
	token, _ := a.Payload["token"].(string)
	require.NotEmpty(n.t, token)
	return token
}
