package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/actors/guild"
	"github.com/rewind-chat/rewind/actors/mailer"
	"github.com/rewind-chat/rewind/actors/session"
	"github.com/rewind-chat/rewind/actors/writer"
	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/net/gateway"
	"github.com/rewind-chat/rewind/net/httpapi"
	"github.com/rewind-chat/rewind/server"
	"github.com/rewind-chat/rewind/setting"
)

// defaultServeConfig is serve's configuration with no flag and none of
// the REWIND_* variables set.
func defaultServeConfig(t *testing.T) (*settings, server.Config) {
	t.Helper()
	for _, env := range os.Environ() {
		if name, _, _ := strings.Cut(env, "="); strings.HasPrefix(name, "REWIND_") || name == "MAIL_ADDRESS" || name == "MAIL_PASSWD" {
			t.Setenv(name, "") // restored after the test
			require.NoError(t, os.Unsetenv(name))
		}
	}
	s := serveSettings()
	require.NoError(t, parse(s, nil, io.Discard))
	cfg, err := serveConfig(s)
	require.NoError(t, err)
	return s, cfg
}

// The flags' defaults are the components' constants, so a default changes
// in one place: what an unset setting puts in server.Config is what the
// component would take for a zero.
func TestFlagDefaultsAreTheComponents(t *testing.T) {
	_, cfg := defaultServeConfig(t)
	require.Equal(t, server.DefaultAddr, cfg.Addr)
	require.Equal(t, auth.DefaultTokenTTL, cfg.TokenTTL)
	require.Equal(t, writer.DefaultConcurrency, cfg.WriteTransactions)
	require.Equal(t, httpapi.DefaultAuthRatePerMinute, cfg.AuthRatePerMinute)
	require.Equal(t, mailer.DefaultTLS, cfg.Mail.TLS)
	require.Zero(t, cfg.Mail.Port, "the mailer's, by TLS mode")
	g := cfg.Gateway
	require.Equal(t, server.DefaultTimezone.String(), g.Timezone.String())
	require.Equal(t, session.DefaultHeartbeatInterval, g.HeartbeatInterval)
	require.Equal(t, session.DefaultHeartbeatGrace, g.HeartbeatGrace)
	require.Equal(t, gateway.DefaultMaxFrame, g.MaxFrame)
	require.Equal(t, gateway.DefaultSendQueue, g.SendQueue)
	require.Equal(t, gateway.DefaultSendBytes, g.SendBytes)
	require.Equal(t, float64(session.DefaultRate), g.Rate)
	require.Equal(t, session.DefaultBurst, g.Burst)
	require.Equal(t, directory.DefaultMaxSessions, g.MaxSessions)
	require.Equal(t, guild.DefaultMaxMembers, g.GuildMaxMembers)
	require.Equal(t, session.DefaultAuthTimeout, g.AuthTimeout)
	require.Equal(t, gateway.DefaultMaxUnauthenticatedPerIP, g.MaxUnauthenticatedPerIP)
	require.Zero(t, g.MaxConnections, "the gateway's DefaultMaxConnections, from the open-files limit")
}

// TestReadmeSettingsTable: every setting of rewind serve is in the README's
// table, with the default the flag has.
func TestReadmeSettingsTable(t *testing.T) {
	s, _ := defaultServeConfig(t)
	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	defer f.Close()
	names := regexp.MustCompile("`(REWIND_[A-Z0-9_]+)`")
	literal := regexp.MustCompile("^`([^`]*)`")
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cells := strings.Split(sc.Text(), " | ")
		if len(cells) < 3 || !strings.HasPrefix(cells[0], "| `REWIND_") {
			continue
		}
		def := cells[1]
		for _, m := range names.FindAllStringSubmatch(cells[0], -1) {
			env := m[1]
			seen[env] = true
			flagName, ok := s.flags[env]
			require.True(t, ok, "README lists %s, which rewind serve does not have", env)
			want := s.fs.Lookup(flagName).DefValue
			switch env {
			case "REWIND_PUBLIC_URL": // made from the port by the server
				require.Empty(t, want, env)
				require.Contains(t, def, "http://localhost:<port>", env)
			case "REWIND_SMTP_USERNAME", "REWIND_SMTP_PASSWORD": // $MAIL_ADDRESS, $MAIL_PASSWD
				require.Empty(t, want, env)
				require.True(t, strings.HasPrefix(def, "`$MAIL_"), "%s: %s", env, def)
			case "REWIND_SMTP_PORT": // 0: the mailer's, by TLS mode
				require.Equal(t, "0", want)
				require.Equal(t, fmt.Sprintf("by TLS mode: %d, %d, %d", mailer.DefaultPortImplicit, mailer.DefaultPortStartTLS, mailer.DefaultPortNone), def)
			case "REWIND_MAX_CONNECTIONS": // empty: the gateway's, from the open-files limit
				require.Empty(t, want)
				require.Equal(t, fmt.Sprintf("the open-files limit less %d", gateway.DescriptorReserve), def)
			default:
				if m := literal.FindStringSubmatch(def); m != nil {
					require.Equal(t, want, m[1], "README's default of %s", env)
				} else {
					require.Empty(t, want, "README's default of %s is %q", env, def)
				}
			}
		}
	}
	require.NoError(t, sc.Err())
	for env := range s.flags {
		require.True(t, seen[env], "%s is missing from README's settings table", env)
	}
}

// startServe starts a node from serve's settings with env set.
func startServe(t *testing.T, env map[string]string) *server.Server {
	t.Helper()
	env["REWIND_DATABASE_URL"] = "sqlite:" + filepath.Join(t.TempDir(), "rewind.db")
	env["REWIND_ADDR"] = "127.0.0.1:0"
	for k, v := range env {
		t.Setenv(k, v)
	}
	s := serveSettings()
	require.NoError(t, parse(s, nil, io.Discard))
	cfg, err := serveConfig(s)
	require.NoError(t, err)
	cfg.Password = cheapHash // logins below hash a password each
	srv, err := server.Start(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
	})
	return srv
}

var cheapHash = auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1}

// The settings that 0 turns off, end to end: through serve's settings, the
// server and the component. Each probe goes just past the default limit,
// once on a node with the defaults and once on one with the setting at 0.
func TestZeroTurnsSettingsOff(t *testing.T) {
	defaultServeConfig(t) // none set from outside
	offEnv := map[string]string{
		"REWIND_WS_RATE": "0", "REWIND_AUTH_RATE": "0", "REWIND_WS_MAX_SESSIONS": "0",
		"REWIND_WS_MAX_UNAUTHENTICATED_PER_IP": "0", "REWIND_MAX_CONNECTIONS": "0", "REWIND_TOKEN_TTL": "0",
	}

	t.Run("in the config", func(t *testing.T) {
		for k, v := range offEnv {
			t.Setenv(k, v)
		}
		s := serveSettings()
		require.NoError(t, parse(s, nil, io.Discard))
		cfg, err := serveConfig(s)
		require.NoError(t, err)
		g := cfg.Gateway
		for name, v := range map[string]int64{
			"REWIND_WS_RATE": int64(g.Rate), "REWIND_AUTH_RATE": int64(cfg.AuthRatePerMinute),
			"REWIND_WS_MAX_SESSIONS": int64(g.MaxSessions), "REWIND_WS_MAX_UNAUTHENTICATED_PER_IP": int64(g.MaxUnauthenticatedPerIP),
			"REWIND_MAX_CONNECTIONS": int64(g.MaxConnections), "REWIND_TOKEN_TTL": int64(cfg.TokenTTL),
		} {
			require.EqualValues(t, setting.Off, v, "%s=0 is setting.Off", name)
		}
	})

	on := startServe(t, map[string]string{"REWIND_TOKEN_TTL": "720h"})
	off := startServe(t, offEnv)
	for _, c := range []struct {
		name string
		srv  *server.Server
		off  bool
	}{{"defaults", on, false}, {"zero", off, true}} {
		t.Run(c.name, func(t *testing.T) {
			p := newProbe(t, c.srv)
			token, limited := p.logins(httpapi.DefaultAuthRatePerMinute + 1)
			require.Equal(t, !c.off, limited, "REWIND_AUTH_RATE")
			require.Equal(t, !c.off, p.expires(token), "REWIND_TOKEN_TTL")
			require.Equal(t, !c.off, p.rateLimited(session.DefaultBurst+20), "REWIND_WS_RATE")
			require.Equal(t, !c.off, p.sessionsCapped(token, directory.DefaultMaxSessions+1), "REWIND_WS_MAX_SESSIONS")
			require.Equal(t, !c.off, p.upgradesRefused(gateway.DefaultMaxUnauthenticatedPerIP+1), "REWIND_WS_MAX_UNAUTHENTICATED_PER_IP")
		})
	}
}

// probe pushes one node past the default limits.
type probe struct {
	t   *testing.T
	srv *server.Server
}

const probeEmail, probePassword = "probe@example.test", "probe password"

func newProbe(t *testing.T, srv *server.Server) *probe {
	maker, err := auth.NewUserMaker(0, cheapHash)
	require.NoError(t, err)
	u, err := maker.User("probe", probeEmail, probePassword)
	require.NoError(t, err)
	require.NoError(t, srv.Store().CreateUser(t.Context(), u))
	return &probe{t: t, srv: srv}
}

// logins logs in n times and returns the first token, and whether a login
// was refused 429.
func (p *probe) logins(n int) (token string, limited bool) {
	for range n {
		res, err := http.PostForm("http://"+p.srv.Addr()+"/api/v1/auth/login", url.Values{"email": {probeEmail}, "password": {probePassword}})
		require.NoError(p.t, err)
		var body struct {
			Payload struct{ Token string } `json:"payload"`
		}
		err = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		require.NoError(p.t, err)
		switch res.StatusCode {
		case http.StatusTooManyRequests:
			limited = true
		case http.StatusCreated:
			if token == "" {
				token = body.Payload.Token
			}
		default:
			p.t.Fatalf("login: %d", res.StatusCode)
		}
	}
	require.NotEmpty(p.t, token)
	return token, limited
}

// expires reports whether token has an expiry (exp).
func (p *probe) expires(token string) bool {
	parts := strings.Split(token, ".")
	require.Len(p.t, parts, 3)
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(p.t, err)
	var claims map[string]any
	require.NoError(p.t, json.Unmarshal(raw, &claims))
	_, ok := claims["exp"]
	return ok
}

func (p *probe) dial() *client.Client {
	ctx, cancel := context.WithTimeout(p.t.Context(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+p.srv.Addr()+"/ws?v=2")
	require.NoError(p.t, err)
	p.t.Cleanup(func() { c.Close() })
	return c
}

// call sends a request and returns its answer.
func (p *probe) call(c *client.Client, typ string, payload any) client.Frame {
	ctx, cancel := context.WithTimeout(p.t.Context(), 5*time.Second)
	defer cancel()
	f, err := c.Call(ctx, typ, payload)
	require.NoError(p.t, err)
	return f
}

// rateLimited sends n heartbeats at once and reports whether one was
// refused 4029.
func (p *probe) rateLimited(n int) bool {
	c := p.dial()
	for i := range n {
		require.NoError(p.t, c.Send("heartbeat", i, "h"+strconv.Itoa(i)))
	}
	ctx, cancel := context.WithTimeout(p.t.Context(), 5*time.Second)
	defer cancel()
	limited := false
	for answered := 0; answered < n; {
		f, err := c.Next(ctx)
		require.NoError(p.t, err)
		if !strings.HasPrefix(f.Nonce, "h") {
			continue
		}
		answered++
		if e, ok := f.AsError(); ok {
			require.Equal(p.t, 4029, e.Code, e.Reason)
			limited = true
		}
	}
	return limited
}

// sessionsCapped authenticates n sessions of token's user, one after the
// other, and reports whether one was refused 4029.
func (p *probe) sessionsCapped(token string, n int) bool {
	for range n {
		c := p.dial()
		p.call(c, "heartbeat", 1)
		f := p.call(c, "auth", map[string]string{"auth": token})
		if e, ok := f.AsError(); ok {
			require.Equal(p.t, 4029, e.Code, e.Reason)
			return true
		}
		require.Equal(p.t, "auth", f.Type)
	}
	return false
}

// upgradesRefused opens n WebSockets that do not authenticate and reports
// whether an upgrade was refused 429.
func (p *probe) upgradesRefused(n int) bool {
	for range n {
		ctx, cancel := context.WithTimeout(p.t.Context(), 5*time.Second)
		conn, _, _, err := ws.Dial(ctx, "ws://"+p.srv.Addr()+"/ws?v=2")
		cancel()
		if err != nil {
			var status ws.StatusError
			require.ErrorAs(p.t, err, &status)
			require.EqualValues(p.t, http.StatusTooManyRequests, status)
			return true
		}
		p.t.Cleanup(func() { conn.Close() })
	}
	return false
}
