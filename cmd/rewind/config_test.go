package main

import (
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/net/certs/certstest"
	"github.com/rewind-chat/rewind/net/gateway"
	"github.com/rewind-chat/rewind/setting"
)

// serveConfigOf parses args with the current environment.
func serveConfigOf(t *testing.T, args ...string) error {
	t.Helper()
	s := serveSettings()
	require.NoError(t, parse(s, args, io.Discard))
	_, err := serveConfig(s)
	return err
}

// requireRefused runs serve with env and requires exit code 2 with one
// line naming want.
func requireRefused(t *testing.T, env map[string]string, want string) {
	t.Helper()
	all := map[string]string{"REWIND_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "rewind.db"), "REWIND_ADDR": "127.0.0.1:0"}
	for k, v := range env {
		all[k] = v
	}
	code, _, stderr := runCmd(t, all)
	require.Equal(t, exitUsage, code, stderr)
	require.Contains(t, stderr, want)
	require.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
}

func TestTokenTTLSetting(t *testing.T) {
	s := serveSettings()
	require.NoError(t, parse(s, nil, io.Discard))
	cfg, err := serveConfig(s)
	require.NoError(t, err)
	require.EqualValues(t, setting.Off, cfg.TokenTTL, "tokens do not expire by default (protocol.md §1)")

	s = serveSettings()
	require.NoError(t, parse(s, []string{"--token-ttl", "720h"}, io.Discard))
	cfg, err = serveConfig(s)
	require.NoError(t, err)
	require.Equal(t, 720*time.Hour, cfg.TokenTTL)

	t.Setenv("REWIND_TOKEN_TTL", "0s")
	require.NoError(t, serveConfigOf(t))

	for _, bad := range []string{"-1h", "a month"} {
		t.Run(bad, func(t *testing.T) {
			requireRefused(t, map[string]string{"REWIND_TOKEN_TTL": bad}, "invalid REWIND_TOKEN_TTL (--token-ttl)")
		})
	}
}

func TestTLSSettings(t *testing.T) {
	pair := certstest.New(t)
	certFile, keyFile := pair.Files(t)
	_, otherKey := certstest.New(t).Files(t)

	t.Setenv("REWIND_TLS_CERT", certFile)
	s := serveSettings()
	require.NoError(t, parse(s, []string{"--tls-key", keyFile}, io.Discard))
	cfg, err := serveConfig(s)
	require.NoError(t, err)
	require.Equal(t, certFile, cfg.TLSCert)
	require.Equal(t, keyFile, cfg.TLSKey)

	for _, c := range []struct {
		name      string
		cert, key string
		want      string
	}{
		{"certificate alone", certFile, "", "invalid REWIND_TLS_KEY (--tls-key)"},
		{"key alone", "", keyFile, "invalid REWIND_TLS_CERT (--tls-cert)"},
		{"missing certificate", certFile + ".none", keyFile, "no such file"},
		{"key of another certificate", certFile, otherKey, "private key does not match public key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			requireRefused(t, map[string]string{"REWIND_TLS_CERT": c.cert, "REWIND_TLS_KEY": c.key}, c.want)
		})
	}
}

func TestMaxFrameSetting(t *testing.T) {
	s := serveSettings()
	require.NoError(t, parse(s, nil, io.Discard))
	cfg, err := serveConfig(s)
	require.NoError(t, err)
	require.Equal(t, 64<<10, cfg.Gateway.MaxFrame, "protocol.md §2.1: a 4,000-character chat, JSON-escaped, fits")

	s = serveSettings()
	require.NoError(t, parse(s, []string{"--ws-max-frame", strconv.Itoa(gateway.DefaultMaxMessage)}, io.Discard))
	cfg, err = serveConfig(s)
	require.NoError(t, err)
	require.Equal(t, 1<<20, cfg.Gateway.MaxFrame, "up to the gateway's cap")

	requireRefused(t, map[string]string{"REWIND_WS_MAX_FRAME": strconv.Itoa(1<<20 + 1)}, "invalid REWIND_WS_MAX_FRAME (--ws-max-frame) \"1048577\": must be at most 1048576 (1 MiB)")
}
