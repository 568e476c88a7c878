package gateway

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gobwas/ws"
)

// benchFrame is the size of a typical chat event.
var benchFrame = []byte(`{"type":"chat","payload":{"type":"send","id":"1234567890123456789","user_id":"987654321098765432","chat_id":"1111","content":"hello there","created_at":"2021-12-23 00:19:16.000880"}}`)

// countPeer counts text messages and closes done at the target.
type countPeer struct {
	n      atomic.Int64
	target int64
	done   chan struct{}
}

func (p *countPeer) Text([]byte) {
	if p.n.Add(1) == p.target {
		close(p.done)
	}
}
func (p *countPeer) Binary()      {}
func (p *countPeer) TooLarge()    {}
func (p *countPeer) Ping() bool   { return true }
func (p *countPeer) Closed(error) {}

// benchConn serves one real loopback connection with peer and returns the
// server's Conn and the client's socket and reader.
func benchConn(b *testing.B, peer Peer) (*Conn, net.Conn, io.Reader) {
	b.Helper()
	conns := make(chan *Conn, 1)
	h := New(Config{}, func(c *Conn, _ int) Peer {
		conns <- c
		return peer
	})
	srv := httptest.NewServer(h)
	nc, br, _, err := ws.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		nc.Close()
		if err := h.Shutdown(context.Background()); err != nil {
			b.Error(err)
		}
		srv.Close()
	})
	var r io.Reader = nc
	if br != nil {
		r = br
	}
	return <-conns, nc, r
}

// BenchmarkSend: one text frame through Send and the writer to the socket.
func BenchmarkSend(b *testing.B) {
	c, _, r := benchConn(b, &countPeer{})
	go func() { _, _ = io.Copy(io.Discard, r) }()
	b.SetBytes(int64(len(benchFrame)))
	b.ReportAllocs()
	for b.Loop() {
		for !c.Send(benchFrame) {
			runtime.Gosched() // the queue is full: let the writer drain it
		}
	}
}

// BenchmarkReadText: one masked text message from the socket to Peer.Text.
func BenchmarkReadText(b *testing.B) {
	p := &countPeer{target: int64(b.N), done: make(chan struct{})}
	_, nc, _ := benchConn(b, p)
	frame := ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame(benchFrame)))
	const batch = 64
	burst := bytes.Repeat(frame, batch)
	b.SetBytes(int64(len(benchFrame)))
	b.ReportAllocs()
	b.ResetTimer()
	for n := b.N; n > 0; n -= batch {
		if _, err := nc.Write(burst[:min(n, batch)*len(frame)]); err != nil {
			b.Fatal(err)
		}
	}
	<-p.done
}
