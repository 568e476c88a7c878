package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/actors/mailer"
	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/load"
	"github.com/rewind-chat/rewind/server"
	"github.com/rewind-chat/rewind/setting"
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
		AuthRatePerMinute: setting.Off,
		Password:          auth.PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1},
		Gateway:           server.GatewayConfig{HeartbeatInterval: heartbeat, Rate: setting.Off},
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
	return runHarness(s.t, append([]string{"--url", "ws://" + s.cfg.Addr, "--http", "http://" + s.cfg.Addr}, args...)...)
}

// runHarness runs the command line with args and returns its JSON results.
func runHarness(t *testing.T, args ...string) load.Result {
	t.Helper()
	out := filepath.Join(t.TempDir(), "result.json")
	args = append([]string{"--heartbeat", heartbeat.String(), "--json", out, "--progress", "500ms"}, args...)
	var stdout, stderr bytes.Buffer
	code := run(args, nil, &stdout, &stderr)
	t.Logf("rewind-load %v\n%s%s", args, stdout.String(), stderr.String())
	require.Equal(t, 0, code, "rewind-load failed")
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	var res load.Result
	require.NoError(t, json.Unmarshal(b, &res))
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
	// 3 s: the main phase spans at least two of the server's samples.
	res := s.harness("--scenario", "dm", "--pairs", "10", "--rate", "200", "--duration", "3s",
		"--workers", "2", "--database-url", s.db, "--warmup", "500ms", "--pg-cpu")
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
	requireWarmupSplit(t, res, 0.5)

	// Rooms: cold; the count is known once the server exports its counter.
	rm := res.Rooms
	require.NotNil(t, rm)
	require.Equal(t, 10, rm.Pairs)
	require.False(t, rm.Warmed)
	if rm.Activated != nil {
		require.LessOrEqual(t, *rm.Activated, int64(10))
	}

	// CPU per 1,000 delivered over the main phase, and PostgreSQL's beside
	// it (there may be no postgres process on this machine: then 0).
	sv := res.Server
	require.Positive(t, sv.PhaseSeconds)
	require.Positive(t, sv.PhaseDelivered)
	require.LessOrEqual(t, sv.PhaseDelivered, float64(m.Delivered))
	require.NotNil(t, sv.CPUPer1000)
	require.InDelta(t, 1000*sv.PhaseCPUSeconds/sv.PhaseDelivered, *sv.CPUPer1000, 1e-9)
	require.NotNil(t, sv.Postgres)
	require.NotNil(t, sv.Postgres.CPUPer1000)
	require.GreaterOrEqual(t, sv.Postgres.PhaseCPUSeconds, 0.0)
}

// requireWarmupSplit checks the three views of a dm run's latencies: the
// whole run is the warm-up (the first warmup seconds of sends) and the
// rest together.
func requireWarmupSplit(t *testing.T, res load.Result, warmup float64) {
	t.Helper()
	m := res.Messages
	require.Equal(t, warmup, res.Params.WarmupSeconds)
	require.Positive(t, m.WarmupSent)
	require.Less(t, m.WarmupSent, m.Sent)
	for _, name := range []string{"ack", "delivery"} {
		whole, warm, after := res.Latency[name], res.Latency[name+"_warmup"], res.Latency[name+"_after_warmup"]
		require.Positive(t, warm.Count, name)
		require.Positive(t, after.Count, name)
		require.Equal(t, whole.Count, warm.Count+after.Count, name)
		require.Equal(t, whole.Max, max(warm.Max, after.Max), name)
	}
	require.Equal(t, m.WarmupSent, res.Latency["delivery_warmup"].Count, "every warm-up message delivered")
}

// TestDMWarmRooms: with --warm-rooms each pair exchanges one unmeasured
// message before the run. The rooms counter comes from a stand-in /metrics
// (--http) that counts the ten rooms during the warming.
func TestDMWarmRooms(t *testing.T) {
	s := startServer(t)
	var reads atomic.Int64
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := 3 // before the run
		if reads.Add(1) > 1 {
			n = 13 // after the warming, and at the end
		}
		fmt.Fprintf(w, "# TYPE rewind_room_activations_total counter\nrewind_room_activations_total %d\n", n)
	}))
	defer metrics.Close()
	res := s.harness("--scenario", "dm", "--pairs", "10", "--rate", "200", "--duration", "2s",
		"--database-url", s.db, "--warm-rooms", "--http", metrics.URL, "--server-pid", strconv.Itoa(os.Getpid()))
	requireClean(t, res, 20)
	require.EqualValues(t, 10, res.Counts["warm_sent"])
	require.EqualValues(t, 10, res.Counts["warm_acked"])
	require.EqualValues(t, 10, res.Counts["warm_delivered"])
	m := res.Messages
	require.Equal(t, m.Sent, m.Delivered, "the warming messages are not in the dm's figures")
	require.Equal(t, m.Delivered, res.Latency["delivery"].Count)
	require.Zero(t, m.Duplicates)
	requireWarmupSplit(t, res, 1)
	rm := res.Rooms
	require.True(t, rm.Warmed)
	require.NotNil(t, rm.Activated)
	require.EqualValues(t, 10, *rm.Activated)
	require.EqualValues(t, 0, *rm.ActivatedMeasured)
	require.EqualValues(t, 3, reads.Load())
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
	res := s.harness("--scenario", "storm", "--pairs", "10", "--duration", "10s",
		"--workers", "2", "--database-url", s.db)
	requireClean(t, res, 20)
	requireFirstMessages(t, res, 10)
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
	res := s.harness("--scenario", "storm", "--after-restart", "--pairs", "10", "--duration", "20s",
		"--backoff", "100ms", "--backoff-max", "500ms", "--database-url", s.db)
	<-restarted
	requireFirstMessages(t, res, 10)
	st := res.Storm
	require.NotNil(t, st)
	require.True(t, st.Completed, "all sessions back after the restart")
	require.NotNil(t, st.TimeToAllReauthenticatedMs)
	require.EqualValues(t, 20, res.UnexpectedCloses["1001"], "closed 1001 by the shutdown")
	require.EqualValues(t, 20, res.Latency["reauth"].Count)
	require.EqualValues(t, 20, res.Sessions.FirstAuthenticated)
}

// TestDMTwoNodes lists one server twice as two "nodes": with --cross-node
// every pair has a side on each, and the figures say so per node and in
// the cross-node latencies.
func TestDMTwoNodes(t *testing.T) {
	s := startServer(t)
	base := "http://" + s.cfg.Addr
	res := runHarness(t, "--server", base+","+base, "--cross-node", "--scenario", "dm", "--pairs", "10", "--rate", "200",
		"--duration", "2s", "--warmup", "500ms", "--database-url", s.db)
	requireClean(t, res, 20)
	require.Equal(t, []string{"ws://" + s.cfg.Addr + "/ws", "ws://" + s.cfg.Addr + "/ws"}, res.Params.Nodes)
	require.True(t, res.Params.CrossNode)
	m := res.Messages
	require.Positive(t, m.Sent)
	require.Equal(t, m.Sent, m.SentCrossNode, "every pair across the nodes")
	require.Equal(t, m.Acked, m.Delivered)
	require.Equal(t, m.Delivered, res.Latency["delivery_cross_node"].Count)
	require.Zero(t, res.Latency["delivery_same_node"].Count)
	require.Equal(t, res.Latency["delivery_warmup"].Count, res.Latency["delivery_cross_node_warmup"].Count)
	require.Equal(t, m.Acked, res.Latency["ack_cross_node"].Count)
	require.Len(t, res.Nodes, 2)
	var sent, delivered int64
	for _, n := range res.Nodes {
		require.EqualValues(t, 10, n.Sessions)
		require.EqualValues(t, 10, n.Authenticated)
		require.EqualValues(t, 10, n.OpenAtEnd)
		require.False(t, n.WentAway)
		require.Positive(t, n.Probes)
		sent += n.Sent
		delivered += n.Delivered
	}
	require.Equal(t, m.Sent, sent)
	require.Equal(t, m.Delivered, delivered)
	require.NotNil(t, res.UnexpectedOnSurviving)
	require.Zero(t, *res.UnexpectedOnSurviving)
}

// TestDMReconnect restarts the server under a dm run with --reconnect on
// two "nodes" (the server listed twice): every session moves to the other
// node, authenticates again, catches up on history, and every
// acknowledged message is delivered.
func TestDMReconnect(t *testing.T) {
	s := startServer(t)
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		s.waitConnections(20, 15*time.Second)
		time.Sleep(1500 * time.Millisecond) // sending for a while
		s.stop()
		time.Sleep(1500 * time.Millisecond) // long enough for the probes to see it
		s.start()
	}()
	base := "http://" + s.cfg.Addr
	res := runHarness(t, "--server", base+","+base, "--scenario", "dm", "--pairs", "10", "--rate", "100",
		"--duration", "7s", "--reconnect", "--backoff", "100ms", "--backoff-max", "500ms", "--database-url", s.db)
	<-restarted
	require.EqualValues(t, 20, res.UnexpectedCloses["1001"], "closed 1001 by the shutdown")
	rc := res.Reconnect
	require.NotNil(t, rc)
	require.EqualValues(t, 20, rc.Lost)
	require.EqualValues(t, 20, rc.Reconnected)
	// To the other node first; a session whose attempt there failed (the
	// server is down for both) tries its own again next.
	require.Positive(t, rc.Moved)
	require.Zero(t, rc.StillDown)
	require.EqualValues(t, 20, rc.CatchUps+rc.CatchUpFailed)
	require.NotNil(t, rc.Missing)
	require.True(t, rc.AllDelivered, "acknowledged never delivered: %d", *rc.Missing)
	require.Positive(t, rc.CaughtUpAfter.Count)
	require.Positive(t, rc.FirstDelivery.Count)
	m := res.Messages
	require.Positive(t, m.Acked)
	// A message sent as the server went down may be stored and delivered
	// without its echo ever arriving: more received than acknowledged.
	require.LessOrEqual(t, m.Acked, m.Delivered+m.CaughtUp)
	var movedIn int64
	for _, n := range res.Nodes {
		movedIn += n.MovedIn
		require.True(t, n.WentAway, "node %d: the server was down %d of %d probes", n.Index, n.ProbeFailures, n.Probes)
	}
	require.Equal(t, rc.Moved, movedIn)
	require.EqualValues(t, 20, *res.UnexpectedOnLost)
	require.Zero(t, *res.UnexpectedOnSurviving)
}

// TestResume runs the resume scenario (protocol v2) against the server:
// the receiving sides of 4 of 10 pairs, spread over two workers, close
// while their peers send, edit and delete, come back, catch up with load
// changes since the highest seq they saw, and every message, edit and
// delete acknowledged to a peer reaches them; their views equal the DM's
// history loaded afresh.
func TestResume(t *testing.T) {
	s := startServer(t)
	res := s.harness("--scenario", "resume", "--pairs", "10", "--drop", "4", "--rate", "200", "--duration", "5s",
		"--drop-at", "1500ms", "--down", "1500ms", "--edit-every", "5", "--delete-every", "8",
		"--workers", "2", "--database-url", s.db)
	requireClean(t, res, 20)
	require.Equal(t, 2, res.Params.WSVersion)
	require.Equal(t, "ws://"+s.cfg.Addr+"/ws?v=2", res.Params.URL)
	rs := res.Resume
	require.NotNil(t, rs)
	require.Zero(t, rs.FramesWithoutSeq, "every chat frame carries seq")
	require.EqualValues(t, 4, rs.Dropped)
	require.EqualValues(t, 4, rs.Reconnected)
	require.Zero(t, rs.StillDown)
	require.EqualValues(t, 4, res.Closes["1000"]-20, "the drops closed 1000, then every session at the end")
	require.EqualValues(t, 4, rs.ChatsListed, "the auth answers list the DM")
	require.Positive(t, rs.ChatsBehind)
	require.EqualValues(t, 4, rs.CatchUps)
	require.Zero(t, rs.CatchUpFailed)
	require.EqualValues(t, 4, rs.ReconnectToCaughtUp.Count)
	require.GreaterOrEqual(t, rs.Pages, rs.CatchUps)

	require.Positive(t, rs.AckedWhileDown)
	require.Positive(t, rs.Recovered)
	require.Equal(t, rs.AckedWhileDown, rs.Recovered+rs.LiveAfterReconnect+rs.DeletedBeforeSeen)
	require.Positive(t, rs.EditsAckedWhileDown)
	require.Positive(t, rs.EditsAcked)
	require.Positive(t, rs.DeletesAcked)
	require.Positive(t, rs.EditsLive)
	require.NotNil(t, rs.Missing)
	require.Zero(t, *rs.Missing, "acknowledged to a peer, never seen by the dropped session")
	require.Zero(t, *rs.EditsMissing)
	require.Zero(t, *rs.MissingNotDropped)
	require.True(t, rs.AllSeen)
	require.EqualValues(t, 4, rs.ViewChecks)
	require.True(t, rs.ViewsMatch, "views equal to the history: %d of %d (absent %d, extra %d, stale %d)",
		rs.ViewsMatched, rs.ViewChecks, rs.ViewAbsent, rs.ViewExtra, rs.ViewStale)

	m := res.Messages
	require.NotNil(t, m)
	require.Equal(t, m.Sent, m.Acked, "every send acknowledged")
	require.Zero(t, m.Undelivered, "every acknowledged message delivered, caught up or deleted before it was seen")
	require.Positive(t, rs.DeliveryBeforeDrop.Count)
	require.Positive(t, rs.DeliveryWhileDown.Count)
	require.Positive(t, rs.DeliveryAfterReconnect.Count)
}

// TestGuild: 2 guilds of 5 members over 3 workers (a guild's members on
// two of them: the fan-out is timed across workers), v2. Every member
// joined; every channel send acknowledged and received once by each of
// its guild's other members, in channel order.
func TestGuild(t *testing.T) {
	s := startServer(t)
	res := s.harness("--scenario", "guild", "--guilds", "2", "--members", "5", "--rate", "100", "--duration", "3s",
		"--warmup", "500ms", "--workers", "3", "--database-url", s.db, "--server-pid", strconv.Itoa(os.Getpid()))
	requireClean(t, res, 10)
	require.Equal(t, 3, res.Workers)
	require.Equal(t, 2, res.Params.WSVersion)
	require.Equal(t, 2, res.Params.Guilds)
	require.Equal(t, 5, res.Params.Members)
	g := res.Guild
	require.NotNil(t, g)
	require.EqualValues(t, 2, g.Created)
	require.EqualValues(t, 10, g.Joined)
	require.True(t, g.AllJoined)
	require.Zero(t, g.CreateErrors+g.JoinErrors)
	require.Greater(t, g.Sent, int64(200))
	require.Equal(t, g.Sent, g.Acked, "every send acknowledged")
	require.Zero(t, g.Skipped)
	require.Equal(t, 4*g.Sent, g.Expected, "sent × (members − 1)")
	require.Equal(t, g.Expected, g.Delivered, "every send reached every other member")
	require.Zero(t, g.Missing)
	require.Zero(t, g.Duplicates)
	require.Zero(t, g.OutOfOrder)
	require.Zero(t, g.FramesWithoutSeq)
	require.True(t, g.AllDelivered)
	require.Equal(t, g.Delivered, g.Delivery.Count)
	require.Equal(t, g.Delivered, g.DeliveryWarmup.Count+g.DeliveryAfterWarmup.Count)
	require.Positive(t, g.DeliveryWarmup.Count)
	require.Positive(t, g.DeliveryAfterWarmup.Count)
	require.Positive(t, g.Delivery.P50)
	require.Less(t, g.Delivery.Max, int64(5*time.Second/time.Microsecond), "stamps read on another worker's clock")
	require.Positive(t, g.DeliveriesPerSecond)
	require.Positive(t, g.AfterWarmupDeliveriesSec)
	require.Equal(t, g.Delivery, res.Latency["delivery"])
	m := res.Messages
	require.NotNil(t, m)
	require.Equal(t, g.Delivered, m.Delivered)
	require.Zero(t, m.Undelivered)
	require.Positive(t, res.Server.PhaseDelivered)
}

// requireFirstMessages checks a storm's first messages: one per pair once
// every session was back, each acknowledged and delivered.
func requireFirstMessages(t *testing.T, res load.Result, pairs int) {
	t.Helper()
	require.Equal(t, pairs, res.Params.Pairs)
	f := res.First
	require.NotNil(t, f)
	require.Equal(t, pairs, f.Pairs)
	require.EqualValues(t, pairs, f.Sent)
	require.True(t, f.AllAcked, "acknowledged %d of %d", f.Acked, pairs)
	require.True(t, f.AllDelivered, "delivered %d of %d", f.Delivered, pairs)
	require.Zero(t, f.SendErrors)
	require.EqualValues(t, pairs, f.Ack.Count)
	require.EqualValues(t, pairs, f.Delivery.Count)
	require.Positive(t, f.Delivery.P99)
	require.Equal(t, f.Delivery, res.Latency["first_delivery"])
	require.Nil(t, res.Messages, "no dm figures in a storm")
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
		{"--server", "http://127.0.0.1:8081", "--url", "ws://127.0.0.1:8081", "--database-url", "sqlite:x"},
		{"--cross-node", "--database-url", "sqlite:x"},
		{"--scenario", "resume", "--ws-version", "1", "--database-url", "sqlite:x"},
		{"--scenario", "resume", "--pairs", "4", "--drop", "5", "--database-url", "sqlite:x"},
		{"--scenario", "resume", "--drop-at", "5s", "--down", "3s", "--duration", "8s", "--database-url", "sqlite:x"},
		{"--scenario", "resume", "--target", "centrifugo"},
		{"--scenario", "guild", "--members", "1", "--database-url", "sqlite:x"},
		{"--scenario", "guild", "--ws-version", "1", "--database-url", "sqlite:x"},
		{"--scenario", "guild", "--guilds", "2", "--members", "5", "--sessions", "4", "--database-url", "sqlite:x"},
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
	// The new figures: warm-up split, rooms, CPU per 1,000, first messages.
	g := filepath.Join(dir, "new.json")
	require.NoError(t, os.WriteFile(g, []byte(`{"scenario":"dm","params":{"target":"centrifugo","sessions":4},"sessions":{"authenticated":4,"connect_rate":100},
		"messages":{"sent":10,"acknowledged":10,"delivered":10,"sent_per_second":5},
		"latency_us":{"delivery":{"count":10,"p99_us":2600},"delivery_warmup":{"count":4,"p99_us":9000},"delivery_after_warmup":{"count":6,"p99_us":1200}},
		"rooms":{"pairs":2,"warmed":true,"activated_during_run":2,"activated_during_measured_run":0},
		"server":{"cpu_phase_percent":12,"cpu_seconds_per_1000_delivered":0.25,"postgres":{"cpu_phase_percent":7,"cpu_seconds_per_1000_delivered":0.125}}}`), 0o644))
	h := filepath.Join(dir, "storm.json")
	require.NoError(t, os.WriteFile(h, []byte(`{"scenario":"storm","params":{"sessions":4},"sessions":{"authenticated":4},
		"first_messages":{"pairs":2,"delivered":2,"ack_us":{"count":2,"p99_us":30000},"delivery_us":{"count":2,"p99_us":31000}},
		"rooms":null,"server":{}}`), 0o644))
	// resume: catch-up p99, missing messages/edits, views equal of checked.
	k := filepath.Join(dir, "resume.json")
	require.NoError(t, os.WriteFile(k, []byte(`{"scenario":"resume","params":{"sessions":4},"sessions":{"authenticated":4},
		"messages":{"sent":10,"acknowledged":10,"delivered":8,"sent_per_second":5},
		"resume":{"reconnect_to_caught_up_us":{"count":2,"p99_us":45000},"missing":0,"edits_missing":1,"view_checks":2,"views_matched":1},
		"server":{}}`), 0o644))
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"compare", f, g, h, k}, nil, &out, &errOut), errOut.String())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 5)
	require.Contains(t, lines[0], "dlv p99 warm-up ms")
	require.Contains(t, lines[0], "dlv p99 after warm-up ms")
	require.Contains(t, lines[0], "catch-up p99 ms")
	require.Equal(t, strings.Fields("dm.json dm 4 4 100 5 10 10 1.50 2.50 1.60 2.60 2.70 2.80 - - - 0 - 10.0 12 - - - - - - - - -"), strings.Fields(lines[1]), "an older results file")
	require.Equal(t, strings.Fields("new.json dm/centrifugo 4 4 100 5 10 10 - - 0.00 2.60 0.00 0.00 9.00 1.20 warm:2+0/2 0 - 0.0 12 0.250 7 0.125 - - - - - -"), strings.Fields(lines[2]))
	require.Equal(t, strings.Fields("storm.json storm 4 4 0 - - - - - - - - - - - - 0 - 0.0 0 - - - 30.00 31.00 2/2 - - -"), strings.Fields(lines[3]))
	require.Equal(t, strings.Fields("resume.json resume 4 4 0 5 10 8 - - - - - - - - - 0 - 0.0 0 - - - - - - 45.00 0/1 1/2"), strings.Fields(lines[4]))
	require.Equal(t, 2, run([]string{"compare"}, nil, &out, &errOut))
}
