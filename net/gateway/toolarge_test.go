package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
)

// recordPeer records what the read loop tells it, in order. It is called
// from one goroutine at a time; the mutex makes that visible to the race
// detector.
type recordPeer struct {
	mu     sync.Mutex
	events []string
}

func (p *recordPeer) add(e string) {
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
}

func (p *recordPeer) Text(data []byte) { p.add("text " + string(data)) }
func (p *recordPeer) Binary()          { p.add("binary") }
func (p *recordPeer) TooLarge()        { p.add("too large") }
func (p *recordPeer) Ping() bool       { p.add("ping"); return true }
func (p *recordPeer) Closed(error)     { p.add("closed") }

// TestTooLargeNotBuffered: messages of 900 KiB past a MaxFrame of 1 KiB,
// in one frame and in fragments with a ping among them, pass through the
// read loop without a buffer of their size: they are reported by TooLarge
// in their places, and the whole connection allocates a fraction of one of
// them. The text is Korean, 3 bytes a rune, so that the reader's pieces and
// the fragments cut runes: valid UTF-8 all the same.
func TestTooLargeNotBuffered(t *testing.T) {
	const maxFrame, size = 1 << 10, 900 << 10
	big := bytes.Repeat([]byte("한"), size/len("한"))
	require.Len(t, big, size)
	var input []byte
	add := func(op ws.OpCode, fin bool, p []byte) { input = append(input, masked(ws.NewFrame(op, fin, p))...) }
	add(ws.OpText, true, []byte("before"))
	add(ws.OpText, true, big)
	for i := 0; i < size; i += 100 << 10 {
		op := ws.OpContinuation
		if i == 0 {
			op = ws.OpText
		}
		add(op, i+100<<10 >= size, big[i:min(i+100<<10, size)])
		if i == 0 {
			add(ws.OpPing, true, []byte("between"))
		}
	}
	add(ws.OpBinary, true, big)
	add(ws.OpText, true, []byte("after"))
	add(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))

	p := &recordPeer{}
	h := New(Config{MaxFrame: maxFrame}, func(*Conn, int) Peer { return p })
	h.closeWait = 10 * time.Millisecond
	server, client := net.Pipe() // not polled: serve reads it to the end
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = io.Copy(io.Discard, client) })
	wg.Go(func() {
		_, _ = client.Write(input)
		client.Close()
	})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	h.serve(server, bufio.NewReader(server), 1, "test")
	runtime.ReadMemStats(&after)
	wg.Wait()
	require.Equal(t, []string{"text before", "too large", "ping", "too large", "binary", "text after", "closed"}, p.events)
	// A connection's fixed cost is a few KiB (its Conn, the pooled reader
	// and writer if the pools are empty); one 900 KiB buffer is far past
	// the bound.
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(size/4))
}

// TestTooLargeInvalidUTF8Closes1007: a text message past MaxFrame is not
// kept, but it is still checked as UTF-8 as its bytes arrive, across the
// point where it passes MaxFrame too, and fails the connection with 1007
// as soon as it cannot be valid (RFC 6455 §8.1): where a case's message is
// not complete, the rest is never sent.
func TestTooLargeInvalidUTF8Closes1007(t *testing.T) {
	const maxFrame = 1024
	a := func(n int) string { return strings.Repeat("a", n) }
	for _, tc := range []struct {
		name  string
		parts [][]byte // raw writes
	}{
		{name: "one frame", parts: [][]byte{masked(ws.NewTextFrame([]byte(a(1500) + "\xff" + a(500))))}},
		{name: "before the rest is sent", parts: func() [][]byte {
			f := masked(ws.NewTextFrame([]byte(a(1500) + "\xed\xa0\x80" + a(500))))
			cut := len(f) - len(a(500)) - 1 // up to the surrogate's second byte, \xa0
			return [][]byte{f[:cut]}
		}()},
		{name: "a rune across the fragment that passes MaxFrame", parts: [][]byte{
			masked(ws.NewFrame(ws.OpText, false, []byte(a(1000)+"\xf4"))),
			masked(ws.NewFrame(ws.OpContinuation, false, []byte("\x90\x80\x80"+a(100)))),
		}},
		{name: "a rune across fragments past MaxFrame", parts: [][]byte{
			masked(ws.NewFrame(ws.OpText, false, []byte(a(2000)+"\xe2\x82"))),
			masked(ws.NewFrame(ws.OpContinuation, false, []byte("\xff"))),
		}},
		{name: "ends inside a rune", parts: [][]byte{masked(ws.NewTextFrame([]byte(a(2000) + "\xe2\x82")))}},
		{name: "the last fragment ends inside a rune", parts: [][]byte{
			masked(ws.NewFrame(ws.OpText, false, []byte(a(2000)))),
			masked(ws.NewFrame(ws.OpContinuation, true, []byte("\xc3"))),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{MaxFrame: maxFrame})
			c := dial(t, s.url)
			p := s.peer(t)
			for _, part := range tc.parts {
				_, err := c.nc.Write(part)
				require.NoError(t, err)
			}
			d := c.readFail(p, ws.StatusInvalidFramePayloadData, invalidUTF8Reason, CauseInvalidUTF8)
			require.ErrorIs(t, d, ErrInvalidUTF8)
			require.Zero(t, p.tooLarge.Load())
			require.Zero(t, p.texts.Load())
		})
	}
	t.Run("valid runes across the fragment that passes MaxFrame", func(t *testing.T) {
		s := startServer(t, Config{MaxFrame: maxFrame})
		c := dial(t, s.url)
		p := s.peer(t)
		c.write(ws.OpText, false, []byte(a(1000)+"\xed")) // kept: the start of 한
		c.write(ws.OpContinuation, false, []byte("\x95\x9c"+a(100)))
		c.write(ws.OpContinuation, false, []byte("\xed\x95"))
		c.write(ws.OpContinuation, true, []byte("\x9c"))
		require.Equal(t, tooLargeAnswer, c.readText())
		require.Equal(t, int32(1), p.tooLarge.Load())
	})
}
