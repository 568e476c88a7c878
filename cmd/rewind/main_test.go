package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/setting"
)

func runCmd(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBadSettingsStopStartUpWithExitCode2(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	db := "sqlite:" + filepath.Join(t.TempDir(), "rewind.db")
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unparsable duration", map[string]string{"REWIND_HEARTBEAT_INTERVAL": "soon"}, nil, "invalid REWIND_HEARTBEAT_INTERVAL (--heartbeat-interval)"},
		{"unparsable duration flag", nil, []string{"serve", "--heartbeat-grace", "5 parsecs"}, "invalid REWIND_HEARTBEAT_GRACE"},
		{"unknown database scheme", map[string]string{"REWIND_DATABASE_URL": "mysql://localhost/rewind"}, nil, "unknown scheme"},
		{"port in use", map[string]string{"REWIND_ADDR": busy.Addr().String()}, nil, "address already in use"},
		{"bad timezone", map[string]string{"REWIND_TIMEZONE": "Mars/Olympus"}, nil, "invalid REWIND_TIMEZONE"},
		{"bad smtp tls", map[string]string{"REWIND_SMTP_TLS": "maybe"}, nil, "invalid REWIND_SMTP_TLS"},
		{"node id out of range", map[string]string{"REWIND_NODE_ID": "1024"}, nil, "invalid REWIND_NODE_ID"},
		{"no write transactions", map[string]string{"REWIND_WRITE_TRANSACTIONS": "0"}, nil, "invalid REWIND_WRITE_TRANSACTIONS"},
		{"short token secret", map[string]string{"REWIND_TOKEN_SECRET": "short"}, nil, "invalid REWIND_TOKEN_SECRET"},
		{"bad log format", map[string]string{"REWIND_LOG_FORMAT": "xml"}, nil, "invalid REWIND_LOG_FORMAT"},
		{"bad auth timeout", map[string]string{"REWIND_WS_AUTH_TIMEOUT": "soon"}, nil, "invalid REWIND_WS_AUTH_TIMEOUT (--ws-auth-timeout)"},
		{"send bytes too small", map[string]string{"REWIND_WS_SEND_BYTES": "10"}, nil, "invalid REWIND_WS_SEND_BYTES"},
		{"negative unauthenticated limit", map[string]string{"REWIND_WS_MAX_UNAUTHENTICATED_PER_IP": "-1"}, nil, "invalid REWIND_WS_MAX_UNAUTHENTICATED_PER_IP"},
		{"bad max connections", map[string]string{"REWIND_MAX_CONNECTIONS": "many"}, nil, "invalid REWIND_MAX_CONNECTIONS (--max-connections)"},
		{"unknown flag", nil, []string{"serve", "--no-such-flag"}, "flag provided but not defined"},
		{"unknown command", nil, []string{"dance"}, `unknown command "dance"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{"REWIND_DATABASE_URL": db, "REWIND_ADDR": "127.0.0.1:0"}
			for k, v := range c.env {
				env[k] = v
			}
			code, _, stderr := runCmd(t, env, c.args...)
			require.Equal(t, exitUsage, code, stderr)
			require.Contains(t, stderr, c.want)
			require.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
		})
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runCmd(t, nil, "version")
	require.Equal(t, 0, code)
	require.True(t, strings.HasPrefix(stdout, "rewind "), stdout)
}

func TestMigrateAndUserCreate(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "rewind.db")
	env := map[string]string{"REWIND_DATABASE_URL": db}
	code, stdout, stderr := runCmd(t, env, "migrate")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "migrations applied")

	code, stdout, stderr = runCmd(t, env, "user", "create", "--name", "loadtest1", "--email", "lt1@example.test", "--password", "password1")
	require.Equal(t, 0, code, stderr)
	id, err := strconv.ParseInt(strings.TrimSpace(stdout), 10, 64)
	require.NoError(t, err)
	require.Positive(t, id)

	code, _, stderr = runCmd(t, env, "user", "create", "--name", "LOADTEST1", "--email", "lt2@example.test", "--password", "password1")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "name is already exist.")

	code, _, stderr = runCmd(t, env, "user", "create", "--name", "x", "--email", "lt3@example.test", "--password", "password1")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "name must be 2 to 32")
}

func TestSettingsFromEnvironmentAndFlags(t *testing.T) {
	t.Setenv("MAIL_ADDRESS", "legacy@example.test") // the original backend's names
	t.Setenv("MAIL_PASSWD", "legacy-secret")
	t.Setenv("REWIND_HEARTBEAT_INTERVAL", "30s")
	t.Setenv("REWIND_WS_RATE", "0")
	s := serveSettings()
	require.NoError(t, parse(s, []string{"--heartbeat-interval", "20s", "--smtp-tls", "starttls"}, io.Discard))
	cfg, err := serveConfig(s)
	require.NoError(t, err)
	require.Equal(t, "legacy@example.test", cfg.Mail.Username)
	require.Equal(t, "legacy-secret", cfg.Mail.Password)
	require.Equal(t, 20*time.Second, cfg.Gateway.HeartbeatInterval, "the flag wins over the environment")
	require.Equal(t, 5*time.Second, cfg.Gateway.HeartbeatGrace)
	require.EqualValues(t, setting.Off, cfg.Gateway.Rate, "0 turns the limit off")
	require.EqualValues(t, "starttls", cfg.Mail.TLS)
	require.Equal(t, "Asia/Seoul", cfg.Gateway.Timezone.String())

	t.Setenv("REWIND_SMTP_USERNAME", "new@example.test")
	s = serveSettings()
	require.NoError(t, parse(s, nil, io.Discard))
	cfg, err = serveConfig(s)
	require.NoError(t, err)
	require.Equal(t, "new@example.test", cfg.Mail.Username, "REWIND_SMTP_USERNAME wins over MAIL_ADDRESS")
}

func TestMaxSessionsSetting(t *testing.T) {
	s := serveSettings()
	require.NoError(t, parse(s, nil, io.Discard))
	cfg, err := serveConfig(s)
	require.NoError(t, err)
	require.Equal(t, 64, cfg.Gateway.MaxSessions, "the default of protocol.md §2.7")

	t.Setenv("REWIND_WS_MAX_SESSIONS", "0")
	s = serveSettings()
	require.NoError(t, parse(s, []string{"--ws-max-sessions", "3"}, io.Discard))
	cfg, err = serveConfig(s)
	require.NoError(t, err)
	require.Equal(t, 3, cfg.Gateway.MaxSessions, "the flag wins over the environment")

	s = serveSettings()
	require.NoError(t, parse(s, nil, io.Discard))
	cfg, err = serveConfig(s)
	require.NoError(t, err)
	require.Equal(t, setting.Off, cfg.Gateway.MaxSessions, "0 turns the limit off")
}

func TestTokenSecretFileAndTrustedProxiesSettings(t *testing.T) {
	dir := t.TempDir()
	secret := strings.Repeat("s", 24) + "-from-a-file-secret"
	good := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(good, []byte(secret+"\n"), 0o600))
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("tiny-file-secret\n"), 0o600))

	t.Setenv("REWIND_TOKEN_SECRET_FILE", good)
	t.Setenv("REWIND_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.0.1")
	s := serveSettings()
	require.NoError(t, parse(s, nil, io.Discard))
	cfg, err := serveConfig(s)
	require.NoError(t, err)
	require.Equal(t, secret, cfg.TokenSecret, "read from the file, without its line break")
	require.Equal(t, "[10.0.0.0/8 192.168.0.1/32]", fmt.Sprint(cfg.TrustedProxies))

	db := "sqlite:" + filepath.Join(dir, "rewind.db")
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"missing secret file", map[string]string{"REWIND_TOKEN_SECRET_FILE": filepath.Join(dir, "none")}, "invalid REWIND_TOKEN_SECRET_FILE"},
		{"short secret file", map[string]string{"REWIND_TOKEN_SECRET_FILE": short}, "at least 32 bytes"},
		{"secret and secret file", map[string]string{"REWIND_TOKEN_SECRET": strings.Repeat("e", 32)}, "not both"},
		{"bad trusted proxies", map[string]string{"REWIND_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"}, "invalid REWIND_TRUSTED_PROXIES"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{"REWIND_DATABASE_URL": db, "REWIND_ADDR": "127.0.0.1:0", "REWIND_TRUSTED_PROXIES": ""}
			for k, v := range c.env {
				env[k] = v
			}
			code, _, stderr := runCmd(t, env)
			require.Equal(t, exitUsage, code, stderr)
			require.Contains(t, stderr, c.want)
			require.NotContains(t, stderr, "tiny-file-secret")
			require.NotContains(t, stderr, secret)
			require.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
		})
	}
}

func TestWebSocketLimitSettings(t *testing.T) {
	s := serveSettings()
	require.NoError(t, parse(s, nil, io.Discard))
	cfg, err := serveConfig(s)
	require.NoError(t, err)
	require.Equal(t, 1<<20, cfg.Gateway.SendBytes)
	require.Equal(t, 30*time.Second, cfg.Gateway.AuthTimeout)
	require.Equal(t, 64, cfg.Gateway.MaxUnauthenticatedPerIP)
	require.Zero(t, cfg.Gateway.MaxConnections, "unset: the server's default, the open-files limit less 512")

	t.Setenv("REWIND_WS_MAX_UNAUTHENTICATED_PER_IP", "0")
	t.Setenv("REWIND_MAX_CONNECTIONS", "0")
	s = serveSettings()
	require.NoError(t, parse(s, []string{"--ws-send-bytes", "65536", "--ws-auth-timeout", "5s"}, io.Discard))
	cfg, err = serveConfig(s)
	require.NoError(t, err)
	require.Equal(t, 65536, cfg.Gateway.SendBytes)
	require.Equal(t, 5*time.Second, cfg.Gateway.AuthTimeout)
	require.Equal(t, setting.Off, cfg.Gateway.MaxUnauthenticatedPerIP, "0 turns the limit off")
	require.Equal(t, setting.Off, cfg.Gateway.MaxConnections, "0 turns the limit off")

	s = serveSettings()
	require.NoError(t, parse(s, []string{"--max-connections", "1000", "--ws-max-unauthenticated-per-ip", "8"}, io.Discard))
	cfg, err = serveConfig(s)
	require.NoError(t, err)
	require.Equal(t, 1000, cfg.Gateway.MaxConnections)
	require.Equal(t, 8, cfg.Gateway.MaxUnauthenticatedPerIP)
}
