//go:build linux

package gateway

import (
	"bytes"
	"flag"
	"net"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/setting"
)

var idleProfile = flag.String("idleprofile", "", "BenchmarkIdleConnections writes a heap profile of the held connections to this file")

// echoPeer answers every text message with itself, as a session answers a
// heartbeat.
type echoPeer struct{ c *Conn }

func (p echoPeer) Text(data []byte) { p.c.Send(data) }
func (echoPeer) Binary()            {}
func (echoPeer) TooLarge()          {}
func (echoPeer) Ping() bool         { return true }
func (echoPeer) Closed(error)       {}

// sessionPeer is an echoPeer whose first message authenticates it, as an
// idle session has.
type sessionPeer struct {
	echoPeer
	authed bool
}

func (p *sessionPeer) Text(data []byte) {
	if !p.authed {
		p.authed = true
		p.c.Authenticated()
	}
	p.c.Send(data)
}

// BenchmarkIdleConnections measures what an idle connection holds on the
// server side: it opens idleConns connections, exchanges one message on each
// (an idle session still heartbeats), lets them idle, and reports the heap,
// stack and RSS held per connection, and goroutines per connection. The
// clients are raw blocking sockets outside the Go runtime, so that only the
// server's side is counted. One op holds idleConns connections: run it with
// -benchtime=1x; -idleprofile=FILE writes the heap profile taken while they
// are held.
func BenchmarkIdleConnections(b *testing.B) {
	const idleConns = 2000
	// One address holds them all, handshakes in a row: no limits.
	h := New(Config{MaxUnauthenticatedPerIP: setting.Off, MaxConnections: setting.Off}, func(c *Conn, _ int) Peer { return &sessionPeer{echoPeer: echoPeer{c}} })
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := srv.Listener.Addr().(*net.TCPAddr)
	frame := ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame([]byte(`{"type":"heartbeat","payload":{"count":1}}`))))
	if *idleProfile != "" {
		// Every allocation sampled: a connection's are too small for the
		// default rate of one per 512 KiB.
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	echo := make([]byte, len(frame))
	for b.Loop() {
		settle()
		before, rssBefore, gBefore := memStats(), rss(b), runtime.NumGoroutine()
		fds := make([]int, 0, idleConns)
		for range idleConns {
			fd := rawDial(b, addr)
			fds = append(fds, fd)
			rawExchange(b, fd, frame, echo)
		}
		deadline := time.Now().Add(wait)
		for h.Open() != idleConns && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		settle()
		after, rssAfter, gAfter := memStats(), rss(b), runtime.NumGoroutine()
		if *idleProfile != "" {
			writeHeapProfile(b, *idleProfile)
		}
		heap := float64(after.HeapInuse) - float64(before.HeapInuse)
		stack := float64(after.StackInuse) - float64(before.StackInuse)
		b.ReportMetric(heap/idleConns, "heap-B/conn")
		b.ReportMetric(stack/idleConns, "stack-B/conn")
		b.ReportMetric((heap+stack)/idleConns, "B/conn")
		b.ReportMetric(float64(rssAfter-rssBefore)/idleConns, "rss-B/conn")
		b.ReportMetric(float64(gAfter-gBefore)/idleConns, "goroutines/conn")
		for _, fd := range fds {
			syscall.Close(fd)
		}
		deadline = time.Now().Add(wait)
		for h.Open() != 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
}

// settle collects garbage until the heap is steady, and returns freed
// memory to the OS so that RSS counts what is held.
func settle() {
	for range 3 {
		runtime.GC()
	}
	debug.FreeOSMemory()
}

func memStats() runtime.MemStats {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// rss returns the process's resident set size in bytes.
func rss(b *testing.B) int64 {
	b.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc: ", err)
	}
	for line := range strings.Lines(string(status)) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

func writeHeapProfile(b *testing.B, path string) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// rawDial opens a WebSocket connection on a blocking socket of its own,
// which the Go runtime neither polls nor allocates for.
func rawDial(b *testing.B, addr *net.TCPAddr) int {
	b.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	sa := &syscall.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	if err := syscall.Connect(fd, sa); err != nil {
		b.Fatal(err)
	}
	rawWrite(b, fd, []byte("GET /ws HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	var resp []byte
	buf := make([]byte, 512)
	for !bytes.HasSuffix(resp, []byte("\r\n\r\n")) {
		n, err := syscall.Read(fd, buf)
		if err != nil || n == 0 {
			b.Fatalf("handshake: %d bytes, %v", n, err)
		}
		resp = append(resp, buf[:n]...)
	}
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101 ")) {
		b.Fatalf("handshake refused: %q", resp)
	}
	return fd
}

// rawExchange sends frame, masked, and reads the server's echo into buf:
// the same frame, unmasked, so 4 bytes shorter.
func rawExchange(b *testing.B, fd int, frame, buf []byte) {
	b.Helper()
	rawWrite(b, fd, frame)
	want := len(frame) - 4
	buf = buf[:want]
	for got := 0; got < want; {
		n, err := syscall.Read(fd, buf[got:])
		if err != nil || n == 0 {
			b.Fatalf("echo: %d bytes, %v", n, err)
		}
		got += n
	}
}

func rawWrite(b *testing.B, fd int, p []byte) {
	b.Helper()
	for len(p) > 0 {
		n, err := syscall.Write(fd, p)
		if err != nil {
			b.Fatal(err)
		}
		p = p[n:]
	}
}

// TestIdleHoldsNoGoroutine: once their messages are answered, connections
// hold no goroutine (only the poller runs), a message past MaxFrame
// before included, and still work.
func TestIdleHoldsNoGoroutine(t *testing.T) {
	s := startServer(t, Config{MaxFrame: 1024})
	const n = 20
	before := runtime.NumGoroutine()
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, s.url)
		s.peer(t)
		clients[i].text("hello")
		require.Equal(t, "hello", clients[i].readText())
		clients[i].write(ws.OpText, false, make([]byte, 1000))
		clients[i].write(ws.OpContinuation, true, make([]byte, 1000))
		require.Equal(t, tooLargeAnswer, clients[i].readText())
	}
	// Counted here: require.Eventually would count its own goroutine.
	for deadline := time.Now().Add(wait); runtime.NumGoroutine() > before+1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the connections; want the poller's only:\n%s",
				runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
	for _, c := range clients {
		c.text("again")
		require.Equal(t, "again", c.readText())
	}
}

// BenchmarkEcho: one message to an idle connection and its answer, as a
// heartbeat goes: the connection wakes a reader, which parks again, and a
// writer. cpu-ns/op is the process's CPU time (client side included).
func BenchmarkEcho(b *testing.B) {
	h := New(Config{}, func(c *Conn, _ int) Peer { return echoPeer{c} })
	srv := httptest.NewServer(h)
	defer srv.Close()
	fd := rawDial(b, srv.Listener.Addr().(*net.TCPAddr))
	defer syscall.Close(fd)
	frame := ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame(benchFrame)))
	var before, after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &before); err != nil {
		b.Fatal(err)
	}
	echo := make([]byte, len(frame))
	b.ReportAllocs()
	for b.Loop() {
		rawExchange(b, fd, frame, echo)
	}
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &after); err != nil {
		b.Fatal(err)
	}
	cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}
