package load

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/protocol"
)

// A frame built by frameBuf is a valid masked client frame of any size.
func TestFrameBufFinish(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 70000} {
		fb := newFrameBuf(16)
		fb.reset()
		want := bytes.Repeat([]byte{'a'}, n)
		fb.b = append(fb.b, want...)
		frame := fb.finish(ws.OpText)
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(frame), io.Discard}
		got, op, err := wsutil.ReadClientData(rw)
		require.NoError(t, err, n)
		require.Equal(t, ws.OpText, op)
		require.Equal(t, want, got, n)
	}
}

// reader assembles fragments, answers pings and ends on a close frame.
func TestReader(t *testing.T) {
	var buf bytes.Buffer
	write := func(f ws.Frame) { require.NoError(t, ws.WriteFrame(&buf, f)) }
	write(ws.NewTextFrame([]byte(`{"type":"heartbeat","payload":{"count":0}}`)))
	write(ws.NewPingFrame([]byte("p")))
	write(ws.NewFrame(ws.OpText, false, []byte(`{"type":`)))
	write(ws.NewFrame(ws.OpContinuation, true, []byte(`"ok","payload":null}`)))
	write(ws.NewCloseFrame(ws.NewCloseFrameBody(1001, "server shutting down")))
	var control []ws.OpCode
	r := &reader{br: bufio.NewReader(&buf), control: func(op ws.OpCode, _ []byte) { control = append(control, op) }}
	_, p, err := r.next()
	require.NoError(t, err)
	require.Equal(t, "heartbeat", frameType(p))
	_, p, err = r.next()
	require.NoError(t, err)
	require.Equal(t, `{"type":"ok","payload":null}`, string(p))
	_, _, err = r.next()
	var ce *closeError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, 1001, ce.Code)
	require.Equal(t, "1001", ce.key())
	require.Equal(t, []ws.OpCode{ws.OpPong, ws.OpClose}, control) // a pong answers the ping
	_, _, err = r.next()
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "lost", ce.key())
}

// The fields a session reads by position, from frames as the server's own
// encoder writes them.
func TestFrameFields(t *testing.T) {
	loc := time.UTC
	chat := &protocol.Chat{ID: 11, AuthorID: 22, ChatID: 33, Content: "17.123456789xxxx", CreatedAt: time.Now()}
	echo := protocol.AppendChat(nil, "send", chat, loc, "17.123456789")
	event := protocol.AppendChat(nil, "send", chat, loc, "")

	require.Equal(t, "chat", frameType(echo))
	nonce, ok := frameNonce(echo)
	require.True(t, ok)
	require.Equal(t, "17.123456789", string(nonce))
	_, ok = frameNonce(event)
	require.False(t, ok)
	require.True(t, bytes.HasPrefix(event, chatSendKind))
	content, ok := stringAfter(event, len(chatSendKind), contentPrefix)
	require.True(t, ok)
	seq, nanos, ok := parseStamp(content)
	require.True(t, ok)
	require.Equal(t, uint64(17), seq)
	require.Equal(t, int64(123456789), nanos)

	e := protocol.ErrorFrame(protocol.ErrRateLimited, "5.6")
	require.Equal(t, "error", frameType(e))
	code, reason := errorCode(e)
	require.Equal(t, protocol.ErrRateLimited.Code, code)
	require.Equal(t, protocol.ErrRateLimited.Reason, reason)
	nonce, ok = frameNonce(e)
	require.True(t, ok)
	require.Equal(t, "5.6", string(nonce))

	id, ok := selfID([]byte(`{"type":"auth","payload":{"self_user":{"id":"1234","name":"a","profile":null},"mutual_requests":"[]"}}`))
	require.True(t, ok)
	require.Equal(t, int64(1234), id)

	// Frames not written by the server's encoder still get their type.
	require.Equal(t, "heartbeat", frameType([]byte(`{ "payload": 1, "type": "heartbeat" }`)))
	require.Equal(t, "", frameType([]byte(`nope`)))

	stamp := appendStamp(nil, 9, 42)
	require.Equal(t, "9.42", string(stamp))
	for _, bad := range []string{"", ".", "9.", ".4", "x.1"} {
		_, _, ok := parseStamp([]byte(bad))
		require.False(t, ok, bad)
	}
}

// Histograms travel encoded and merge into the same percentiles.
func TestHistMerge(t *testing.T) {
	a, b := newHist(), newHist()
	for i := 1; i <= 1000; i++ {
		a.record(time.Duration(i) * time.Microsecond)
		b.record(time.Duration(i+1000) * time.Microsecond)
	}
	ea, err := a.encode()
	require.NoError(t, err)
	eb, err := b.encode()
	require.NoError(t, err)
	merged := map[string]*hdr.Histogram{}
	require.NoError(t, mergeHists(merged, map[string]string{hAck: ea}))
	require.NoError(t, mergeHists(merged, map[string]string{hAck: eb}))
	l := summarize(merged[hAck])
	require.EqualValues(t, 2000, l.Count)
	require.InDelta(t, 1000, l.P50, 2)
	require.InDelta(t, 2000, l.Max, 2)
}

func TestParseMetrics(t *testing.T) {
	page := "# HELP process_cpu_seconds_total x\nprocess_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 1.2345e+07\n"
	rss, cpu, err := parseMetrics(strings.NewReader(page))
	require.NoError(t, err)
	require.Equal(t, int64(12345000), rss)
	require.Equal(t, 12.5, cpu)
	_, _, err = parseMetrics(io.LimitReader(strings.NewReader(page), 10))
	require.Error(t, err)
}

func TestConfigDefaults(t *testing.T) {
	c := &Config{Scenario: "idle", URL: "ws://127.0.0.1:8080", HTTP: "http://127.0.0.1:8080", Sessions: 19000,
		Duration: time.Minute, Heartbeat: 40 * time.Second, DialTimeout: time.Second, ConnectTimeout: time.Second,
		DatabaseURL: "sqlite:x", Tokens: "mint", WSVersion: 1, SourceBase: "127.0.0.2"}
	require.NoError(t, c.check())
	require.Equal(t, 3, c.Workers)   // ≤ 9,000 sockets each
	require.Equal(t, 2, c.SourceIPs) // ≤ 10,000 each
	require.Equal(t, []string{"127.0.0.2", "127.0.0.3"}, sourceAddrs(c.SourceBase, c.SourceIPs))
	require.Equal(t, []string{"127.0.0.255", "127.0.1.0"}, sourceAddrs("127.0.0.255", 2))
	require.Equal(t, "ws://127.0.0.1:8080/ws", c.wsURL())
	c.Workers = 1
	require.ErrorContains(t, c.check(), "open-files limit")
}

// The rooms counter, from a /metrics page as the server's Prometheus
// registry writes it: summed over label sets, absent when not exported.
func TestParseCounter(t *testing.T) {
	page := `# HELP rewind_room_activations_total Room actors started.
# TYPE rewind_room_activations_total counter
rewind_room_activations_total 42
rewind_room_activations_total_created 1.7e+09
rewind_room_activations_totals 7
process_cpu_seconds_total 3.5
`
	v, found, err := parseCounter(strings.NewReader(page), roomActivations)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, 42.0, v)

	labelled := "rewind_room_activations_total{kind=\"dm\"} 3\nrewind_room_activations_total{kind=\"guild\",x=\"}\"} 4 1700000000000\n"
	v, found, err = parseCounter(strings.NewReader(labelled), roomActivations)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, 7.0, v)

	_, found, err = parseCounter(strings.NewReader("process_cpu_seconds_total 3.5\n"), roomActivations)
	require.NoError(t, err)
	require.False(t, found, "a server without the counter: unknown")
}

func TestKindStamps(t *testing.T) {
	for _, kind := range []byte{kindDM, kindWarm, kindFirst} {
		for _, cross := range []bool{false, true} {
			b := appendKindStamp(nil, kind, cross, 12, 3456)
			k, c, seq, nanos, ok := parseKindStamp(append(b, "xxx"...))
			require.True(t, ok, "%s", b)
			require.Equal(t, kind, k)
			require.Equal(t, cross, c, "%s", b)
			require.EqualValues(t, 12, seq)
			require.EqualValues(t, 3456, nanos)
		}
	}
	require.Equal(t, "w0.5", string(appendKindStamp(nil, kindWarm, false, 0, 5)))
	require.Equal(t, "c7.5", string(appendKindStamp(nil, kindDM, true, 7, 5)))
	// The befriending and history nonces are no stamps.
	for _, nonce := range []string{"f1", "f2", "w", "f.1", "h1", "c", "cf1"} {
		_, _, _, _, ok := parseKindStamp([]byte(nonce))
		require.False(t, ok, nonce)
	}
	require.True(t, isHistory([]byte("h12")))
	require.False(t, isHistory(nil))
}

// Deliveries between two samples come from each worker's reports.
func TestInterpolate(t *testing.T) {
	pts := []countAt{{2000, 100}, {1000, 0}, {3000, 300}} // reports may arrive out of order
	require.Equal(t, 0.0, interpolate(nil, 5))
	require.Equal(t, 0.0, interpolate(pts, 500))
	require.Equal(t, 0.0, interpolate(pts, 1000))
	require.Equal(t, 50.0, interpolate(pts, 1500))
	require.Equal(t, 100.0, interpolate(pts, 2000))
	require.Equal(t, 200.0, interpolate(pts, 2500))
	require.Equal(t, 300.0, interpolate(pts, 9000))
}

// procGroup follows the processes of one name; here this test's own.
func TestProcGroup(t *testing.T) {
	comm, err := os.ReadFile("/proc/self/comm")
	require.NoError(t, err)
	g := newProcGroup(strings.TrimSpace(string(comm)))
	total, n := g.read()
	require.Zero(t, total, "the first reading is the baseline")
	require.GreaterOrEqual(t, n, 1)
	// Busy until the group has used 0.1 CPU-s: on a loaded machine 300 ms
	// of wall time can get less than that.
	for end := time.Now().Add(10 * time.Second); total <= 0.1 && time.Now().Before(end); total, _ = g.read() {
		for spin := time.Now().Add(20 * time.Millisecond); time.Now().Before(spin); {
		}
	}
	require.Greater(t, total, 0.1, "the busy loop's CPU")
	_, n = newProcGroup("no-such-process-name").read()
	require.Zero(t, n)
}

func TestConfigTargetsAndPairs(t *testing.T) {
	base := func() *Config {
		return &Config{URL: "ws://127.0.0.1:8080", HTTP: "http://127.0.0.1:8080", Sessions: 1000, Pairs: 100, Rate: 1000,
			Duration: time.Minute, Heartbeat: 40 * time.Second, DialTimeout: time.Second, ConnectTimeout: time.Second,
			Tokens: "mint", WSVersion: 1, SourceBase: "127.0.0.2"}
	}
	c := base()
	c.Scenario, c.Target = "dm", "centrifugo"
	require.NoError(t, c.check(), "no accounts needed")
	require.Equal(t, "ws://127.0.0.1:8000/connection/websocket", c.wsURL())
	require.Equal(t, "http://127.0.0.1:8000", c.HTTP)
	require.Equal(t, 200, c.Sessions)
	require.False(t, c.PGCPU)
	c = base()
	c.Scenario, c.Target = "idle", "centrifugo"
	require.ErrorContains(t, c.check(), "only the dm scenario")

	c = base()
	c.Scenario, c.DatabaseURL = "storm", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	require.NoError(t, c.check())
	require.Zero(t, c.Pairs, "storm without --pairs sends nothing")
	require.True(t, c.PGCPU, "a loopback PostgreSQL is sampled by default")
	c = base()
	c.Scenario, c.DatabaseURL, c.pairsSet = "storm", "sqlite:x", true
	require.NoError(t, c.check())
	require.Equal(t, 100, c.Pairs)
	require.Equal(t, 200, c.Sessions)
	require.False(t, c.PGCPU)

	for u, local := range map[string]bool{
		"postgres://u@127.0.0.1/db": true, "postgresql://u@localhost:5433/db": true, "postgres:///db?host=/run/postgresql": true,
		"postgres://u@[::1]/db": true, "postgres://u@10.0.0.5/db": false, "postgres://u@db.example/db": false, "sqlite:x.db": false,
	} {
		require.Equal(t, local, localPostgres(u), u)
	}
}
