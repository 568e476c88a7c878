package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// fuzzMaxFrame and fuzzMaxMessage are small, so that generated inputs
// cross them.
const (
	fuzzMaxFrame   = 64
	fuzzMaxMessage = 256
)

// fuzzPeer checks what the read loop hands it, and echoes texts to exercise
// the writer.
type fuzzPeer struct {
	t      *testing.T
	conn   *Conn
	closed int
	pings  int
}

func (p *fuzzPeer) Text(data []byte) {
	p.delivered()
	if len(data) > fuzzMaxFrame {
		p.t.Errorf("a message of %d bytes passed MaxFrame %d", len(data), fuzzMaxFrame)
	}
	if !utf8.Valid(data) {
		p.t.Errorf("a text message that is not UTF-8 passed: %q", data)
	}
	p.conn.Send(data)
}

func (p *fuzzPeer) Binary() { p.delivered() }

func (p *fuzzPeer) TooLarge() { p.delivered() }

// Ping refuses every other ping, to exercise both ways.
func (p *fuzzPeer) Ping() bool {
	p.delivered()
	p.pings++
	return p.pings%2 == 0
}

func (p *fuzzPeer) Closed(reason error) {
	p.closed++
	var d *Disconnect
	if !errors.As(reason, &d) || d.Cause == "" {
		p.t.Errorf("Closed(%v): not a Disconnect with a cause", reason)
	}
}

func (p *fuzzPeer) delivered() {
	if p.closed > 0 {
		p.t.Error("a message after Closed")
	}
}

// FuzzReadMessage feeds arbitrary bytes, as the client's side of a
// connection, to the read loop: it must not panic, hand over a message
// larger than MaxFrame or one that is not UTF-8, allocate for what the
// input only declares or for a message past MaxFrame, or call Closed other
// than once, last.
func FuzzReadMessage(f *testing.F) {
	past := bytes.Repeat([]byte("한"), fuzzMaxFrame/3+1) // past MaxFrame, runes across pieces
	for _, seed := range [][]byte{
		masked(ws.NewTextFrame([]byte("κόσμε \xf4\x90\x80\x80"))), // not UTF-8
		append(masked(ws.NewFrame(ws.OpText, false, []byte("a\xe2\x82"))), // a rune across fragments
			masked(ws.NewFrame(ws.OpContinuation, true, []byte("\xac")))...),
		{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, // a length with the top bit set
		append(masked(ws.NewPingFrame([]byte("a"))), masked(ws.NewPingFrame([]byte("b")))...),
		bytes.Join([][]byte{ // past MaxFrame in fragments, a ping among them, then a text
			masked(ws.NewFrame(ws.OpText, false, past[:40])), masked(ws.NewPingFrame([]byte("p"))),
			masked(ws.NewFrame(ws.OpContinuation, true, past[40:])), masked(ws.NewTextFrame([]byte("after"))),
		}, nil),
		masked(ws.NewTextFrame(append(past, 0xff))),                          // past MaxFrame, not UTF-8
		masked(ws.NewTextFrame(bytes.Repeat([]byte("a"), fuzzMaxMessage+1))), // past MaxMessage
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Messages are at most MaxFrame each and cannot outnumber the
		// input's bytes; the rest is a connection's fixed cost (a few KiB)
		// and what the process allocates meanwhile: the fuzzing engine
		// (up to ~100 KiB seen) and the runtime growing its own tables
		// (the timer heap, which the connections' deadlines fill: 100 KiB
		// and more at a time, seen). That growth is amortized and does not
		// recur at once, so an input over the bound is run again before it
		// fails. Allocating for declared lengths costs far more, every
		// time.
		limit := 256<<10 + fuzzMaxFrame*uint64(len(data))
		if alloc := readFuzz(t, data); alloc > limit {
			if alloc = readFuzz(t, data); alloc > limit {
				t.Fatalf("%d bytes allocated for %d bytes of input", alloc, len(data))
			}
		}
	})
}

// readFuzz runs one connection whose client sends data and hangs up, and
// returns the bytes the process allocated while the connection was read.
func readFuzz(t *testing.T, data []byte) uint64 {
	t.Helper()
	p := &fuzzPeer{t: t}
	h := New(Config{MaxFrame: fuzzMaxFrame, MaxMessage: fuzzMaxMessage, SendQueue: 4}, func(c *Conn, _ int) Peer {
		p.conn = c
		return p
	})
	h.closeWait = 10 * time.Millisecond
	server, client := net.Pipe()
	br := bufio.NewReader(server)
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(io.Discard, client) })
	wg.Go(func() {
		_, _ = client.Write(data)
		client.Close()
	})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	h.serve(server, br, 1, "fuzz")
	runtime.ReadMemStats(&after)
	wg.Wait()
	if p.closed != 1 {
		t.Fatalf("Closed called %d times", p.closed)
	}
	return after.TotalAlloc - before.TotalAlloc
}
