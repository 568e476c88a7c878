package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/actors/mailer"
	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/load"
	"github.com/rewind-chat/rewind/server"
)

// The harness's workers are this test binary again: started with the
// worker environment, it runs the worker instead of the tests, exactly as
// the rewind-load binary does.
func TestMain(m *testing.M) {
	if load.IsWorker() {
		os.Exit(load.WorkerMain(os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// heartbeat is the server's heartbeat interval in these tests, and the
// harness's.
const heartbeat = 500 * time.Millisecond

// testServer is a REWIND node on a loopback port over a fresh SQLite file.
type testServer struct {
	t   *testing.T
	cfg server.Config
	srv *server.Server
	db  string
}

func startServer(t *testing.T, edit ...func(*server.Config)) *testServer {
	t.Helper()
	db := "sqlite:" + filepath.Join(t.TempDir(), "rewind.db")
	s := &testServer{t: t, db: db, cfg: server.Config{
		Addr:              "127.0.0.1:0",
		DatabaseURL:       db,
		AuthRatePerMinute: -1,
		Password:          auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1},
		Gateway:           server.GatewayConfig{HeartbeatInterval: heartbeat, Rate: -1},
	}}
	for _, e := range edit {
		e(&s.cfg)
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) start() {
	s.t.Helper()
	srv, err := server.Start(context.Background(), s.cfg)
	require.NoError(s.t, err)
	s.srv = srv
	s.cfg.Addr = srv.Addr() // a restart comes back on the same port
}

func (s *testServer) stop() {
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(s.t, s.srv.Shutdown(ctx))
	s.srv = nil
}

// waitConnections waits until the server holds n WebSocket connections.
func (s *testServer) waitConnections(n int, timeout time.Duration) {
	want := fmt.Sprintf("rewind_ws_connections %d\n", n)
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + s.cfg.Addr + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), want) {
			return
		}
	}
}

// harness runs the command line against s with args and returns its JSON
// results.
func (s *testServer) harness(args ...string) load.Result {
	s.t.Helper()
	out := filepath.Join(s.t.TempDir(), "result.json")
	args = append([]string{
		"--url", "ws://" + s.cfg.Addr, "--http", "http://" + s.cfg.Addr,
		"--heartbeat", heartbeat.String(), "--json", out, "--progress", "500ms",
	}, args...)
	var stdout, stderr bytes.Buffer
	code := run(args, nil, &stdout, &stderr)
	s.t.Logf("rewind-load %v\n%s%s", args, stdout.String(), stderr.String())
	require.Equal(s.t, 0, code, "rewind-load failed")
	b, err := os.ReadFile(out)
	require.NoError(s.t, err)
	var res load.Result
	require.NoError(s.t, json.Unmarshal(b, &res))
	return res
}

// requireClean checks what every scenario must show: every session
// authenticated, no error frame, no close the harness did not cause.
func requireClean(t *testing.T, res load.Result, sessions int) {
	t.Helper()
	require.False(t, res.Interrupted)
	require.EqualValues(t, sessions, res.Sessions.Target)
	if res.Scenario != "churn" {
		require.EqualValues(t, sessions, res.Sessions.FirstAuthenticated)
		require.True(t, res.Sessions.AllAuthenticated)
		require.NotNil(t, res.Sessions.TimeToAllAuthenticatedMs)
	}
	require.Zero(t, res.UnexpectedTotal, "unexpected closes: %v", res.UnexpectedCloses)
	require.Empty(t, res.Errors, "error frames: %v", res.ErrorReasons)
	for _, k := range []string{"connect_failed", "auth_failed", "setup_failed"} {
		require.Zero(t, res.Counts[k], k)
	}
	require.Positive(t, res.Latency["connect"].Count)
	require.NotEmpty(t, res.Server.Samples, "server samples: %s", res.Server.LastSampleError)
}

func TestIdleTwoWorkers(t *testing.T) {
	// A grace short enough that a session whose heartbeats stopped would
	// be closed 4003 within the run.
	s := startServer(t, func(c *server.Config) { c.Gateway.HeartbeatGrace = 1500 * time.Millisecond })
	res := s.harness("--scenario", "idle", "--sessions", "20", "--duration", "3s",
		"--workers", "2", "--source-ips", "2", "--database-url", s.db, "--server-pid", strconv.Itoa(os.Getpid()))
	requireClean(t, res, 20)
	require.Equal(t, 2, res.Workers)
	require.Equal(t, []string{"127.0.0.2", "127.0.0.3"}, res.SourceIPs)
	require.Equal(t, "proc:"+strconv.Itoa(os.Getpid()), res.Server.Source)
	// Sessions outlived interval + grace: their heartbeats kept them.
	require.GreaterOrEqual(t, res.Counts["heartbeats_sent"], int64(20*4))
	require.GreaterOrEqual(t, res.Counts["heartbeats_answered"], res.Counts["heartbeats_sent"])
	require.EqualValues(t, 20, res.Closes["1000"], "every session left with a normal close")
	require.Positive(t, res.Server.RSSPerSession)
}

func TestDM(t *testing.T) {
	s := startServer(t)
	res := s.harness("--scenario", "dm", "--pairs", "10", "--rate", "200", "--duration", "2s",
		"--workers", "2", "--database-url", s.db)
	requireClean(t, res, 20)
	require.Equal(t, "metrics:http://"+s.cfg.Addr+"/metrics", res.Server.Source)
	m := res.Messages
	require.NotNil(t, m)
	require.Greater(t, m.Sent, int64(300))
	require.Equal(t, m.Sent, m.Acked, "every send acknowledged")
	require.Equal(t, m.Acked, m.Delivered, "every acknowledged message delivered")
	require.Zero(t, m.Duplicates)
	require.Zero(t, m.Skipped)
	require.Equal(t, m.Acked, res.Latency["ack"].Count)
	require.Equal(t, m.Delivered, res.Latency["delivery"].Count)
	require.Positive(t, res.Latency["delivery"].P99)
}

func TestChurn(t *testing.T) {
	s := startServer(t)
	res := s.harness("--scenario", "churn", "--sessions", "10", "--churn", "20", "--hold", "200ms",
		"--duration", "2s", "--database-url", s.db)
	requireClean(t, res, 10)
	ch := res.Churn
	require.NotNil(t, ch)
	require.GreaterOrEqual(t, ch.Started, int64(35))
	require.Equal(t, ch.Started, ch.Completed+ch.Cut, "every churn session authenticated and left cleanly (or was still connecting at the end)")
	require.LessOrEqual(t, ch.Cut, int64(2))
	require.Equal(t, ch.Completed, res.Counts["authenticated"])
}

func TestStorm(t *testing.T) {
	s := startServer(t)
	res := s.harness("--scenario", "storm", "--sessions", "20", "--duration", "10s",
		"--workers", "2", "--database-url", s.db)
	requireClean(t, res, 20)
	st := res.Storm
	require.NotNil(t, st)
	require.True(t, st.Completed)
	require.NotNil(t, st.TimeToAllReauthenticatedMs)
	require.EqualValues(t, 20, res.Counts["reconnects"])
	require.EqualValues(t, 40, res.Counts["authenticated"])
	require.EqualValues(t, 20, res.Latency["reauth"].Count)
}

// TestStormAfterRestart restarts the server under the harness: every
// session is closed 1001, reconnects with backoff, and the harness
// measures until all are back.
func TestStormAfterRestart(t *testing.T) {
	s := startServer(t)
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		// Restart once the sessions are in (and a moment for their auths).
		s.waitConnections(20, 15*time.Second)
		time.Sleep(500 * time.Millisecond)
		s.stop()
		time.Sleep(200 * time.Millisecond)
		s.start()
	}()
	res := s.harness("--scenario", "storm", "--after-restart", "--sessions", "20", "--duration", "20s",
		"--backoff", "100ms", "--backoff-max", "500ms", "--database-url", s.db)
	<-restarted
	st := res.Storm
	require.NotNil(t, st)
	require.True(t, st.Completed, "all sessions back after the restart")
	require.NotNil(t, st.TimeToAllReauthenticatedMs)
	require.EqualValues(t, 20, res.UnexpectedCloses["1001"], "closed 1001 by the shutdown")
	require.EqualValues(t, 20, res.Latency["reauth"].Count)
	require.EqualValues(t, 20, res.Sessions.FirstAuthenticated)
}

// TestViaHTTP makes the accounts through register → SMTP → verify → login
// and befriends the pairs over the gateway.
func TestViaHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	smtpAddr := ln.Addr().String()
	require.NoError(t, ln.Close())
	host, port, _ := net.SplitHostPort(smtpAddr)
	p, _ := strconv.Atoi(port)
	s := startServer(t, func(c *server.Config) {
		c.Mail = mailer.Config{Host: host, Port: p, TLS: mailer.TLSNone, From: "rewind@example.test", BaseBackoff: 10 * time.Millisecond}
	})
	res := s.harness("--scenario", "dm", "--pairs", "2", "--rate", "40", "--duration", "1s",
		"--via-http", "--smtp-listen", smtpAddr, "--database-url", "")
	requireClean(t, res, 4)
	require.Equal(t, "http", res.Accounts.Method)
	require.EqualValues(t, 2, res.Counts["befriended"])
	m := res.Messages
	require.Positive(t, m.Sent)
	require.Equal(t, m.Sent, m.Acked)
	require.Equal(t, m.Acked, m.Delivered)
}

func TestUsage(t *testing.T) {
	t.Setenv("REWIND_DATABASE_URL", "")
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"-h"}, nil, &stdout, &stderr))
	require.Contains(t, stderr.String(), "-scenario")
	for _, args := range [][]string{
		{"--scenario", "nope", "--database-url", "sqlite:x"},
		{"--url", "ws://10.0.0.1:8080", "--database-url", "sqlite:x"},
		{"--scenario", "idle"}, // no way to make accounts
		{"--scenario", "dm", "--pairs", "5", "--sessions", "4", "--database-url", "sqlite:x"},
	} {
		stderr.Reset()
		require.Equal(t, 2, run(args, nil, &stdout, &stderr), "%v", args)
		require.Contains(t, stderr.String(), "rewind-load:")
	}
}

func TestCompare(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "dm.json")
	require.NoError(t, os.WriteFile(f, []byte(`{"scenario":"dm","params":{"sessions":4},"sessions":{"authenticated":4,"connect_rate":100},
		"messages":{"sent":10,"acknowledged":10,"delivered":10,"sent_per_second":5},
		"latency_us":{"ack":{"count":10,"p50_us":1500,"p99_us":2500},"delivery":{"count":10,"p50_us":1600,"p99_us":2600,"p99_9_us":2700,"max_us":2800}},
		"server":{"rss_per_session_bytes":10240,"cpu_phase_percent":12}}`), 0o644))
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"compare", f}, nil, &out, &errOut), errOut.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 2)
	require.Equal(t, strings.Fields("dm.json dm 4 4 100 5 10 10 1.50 2.50 1.60 2.60 2.70 2.80 0 - 10.0 12"), strings.Fields(lines[1]))
	require.Equal(t, 2, run([]string{"compare"}, nil, &out, &errOut))
}
