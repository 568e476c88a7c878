// Package client is a Go client of the REWIND WebSocket protocol
// (protocol.md §2): dial, heartbeats, auth, requests answered by nonce, and
// the stream of events. The protocol tests and the load harness use it.
package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Frame is one frame from the server.
type Frame struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
	Nonce   string          `json:"nonce,omitempty"`
}

// ErrorPayload is an error frame's payload.
type ErrorPayload struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// AsError returns the error payload of an error frame.
func (f Frame) AsError() (ErrorPayload, bool) {
	var e ErrorPayload
	if f.Type != "error" || json.Unmarshal(f.Payload, &e) != nil {
		return e, false
	}
	return e, true
}

// Decode unmarshals the payload into v.
func (f Frame) Decode(v any) error { return json.Unmarshal(f.Payload, v) }

// CloseError is how the server closed the connection.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string { return fmt.Sprintf("closed %d %q", e.Code, e.Reason) }

// Client is one connection. Next, Call and Collect must be used from one
// goroutine at a time; Send is safe for concurrent use.
type Client struct {
	conn  net.Conn
	wmu   sync.Mutex
	gone  chan struct{} // closed when the read loop ends
	err   error         // why it ended; read after gone is closed
	nonce atomic.Uint64

	// The read loop appends to inbox and never blocks, so a client that
	// reads slowly never holds back the socket; memory follows the backlog.
	mu     sync.Mutex
	inbox  []Frame
	signal chan struct{} // has a token while inbox may be non-empty
	// backlog keeps frames that Call or Collect read past while looking
	// for their answer, for Next.
	backlog []Frame
}

// Dial connects to url, e.g. ws://127.0.0.1:8080/ws?v=2.
func Dial(ctx context.Context, url string) (*Client, error) {
	conn, br, _, err := ws.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, gone: make(chan struct{}), signal: make(chan struct{}, 1)}
	var r io.Reader = conn
	if br != nil {
		r = br
	}
	go c.read(r)
	return c, nil
}

// locked serializes the writes of the read loop's control answers (pong,
// close) with ours.
type locked struct {
	io.Reader
	c *Client
}

func (l locked) Write(p []byte) (int, error) {
	l.c.wmu.Lock()
	defer l.c.wmu.Unlock()
	return l.c.conn.Write(p)
}

func (c *Client) read(r io.Reader) {
	defer close(c.gone)
	rw := locked{Reader: bufio.NewReader(r), c: c}
	for {
		data, op, err := wsutil.ReadServerData(rw)
		var closed wsutil.ClosedError
		switch {
		case errors.As(err, &closed):
			c.err = &CloseError{Code: int(closed.Code), Reason: closed.Reason}
			return
		case err != nil:
			c.err = err
			return
		case op != ws.OpText:
			continue
		}
		var f Frame
		if json.Unmarshal(data, &f) != nil {
			c.err = fmt.Errorf("client: server sent a frame that is not JSON: %q", data)
			return
		}
		c.mu.Lock()
		c.inbox = append(c.inbox, f)
		c.mu.Unlock()
		select {
		case c.signal <- struct{}{}:
		default:
		}
	}
}

// SendText sends data as one text frame.
func (c *Client) SendText(data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return wsutil.WriteClientMessage(c.conn, ws.OpText, data)
}

// SendBinary sends data as one binary frame.
func (c *Client) SendBinary(data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return wsutil.WriteClientMessage(c.conn, ws.OpBinary, data)
}

// Send sends {"type":typ,"payload":payload[,"nonce":nonce]}.
func (c *Client) Send(typ string, payload any, nonce string) error {
	b, err := json.Marshal(struct {
		Type    string `json:"type"`
		Payload any    `json:"payload"`
		Nonce   string `json:"nonce,omitempty"`
	}{typ, payload, nonce})
	if err != nil {
		return err
	}
	return c.SendText(b)
}

// NewNonce returns a nonce unique on this connection.
func (c *Client) NewNonce() string {
	return "n" + strconv.FormatUint(c.nonce.Add(1), 10)
}

// Next returns the next frame not yet returned. When the connection is
// gone, the error says how (a *CloseError for a close frame).
func (c *Client) Next(ctx context.Context) (Frame, error) {
	if len(c.backlog) > 0 {
		f := c.backlog[0]
		c.backlog = c.backlog[1:]
		return f, nil
	}
	return c.receive(ctx)
}

func (c *Client) receive(ctx context.Context) (Frame, error) {
	for {
		c.mu.Lock()
		if len(c.inbox) > 0 {
			f := c.inbox[0]
			c.inbox[0] = Frame{}
			c.inbox = c.inbox[1:]
			c.mu.Unlock()
			return f, nil
		}
		c.mu.Unlock()
		select {
		case <-c.signal:
		case <-c.gone:
			c.mu.Lock()
			empty := len(c.inbox) == 0
			c.mu.Unlock()
			if empty {
				return Frame{}, c.err
			}
		case <-ctx.Done():
			return Frame{}, ctx.Err()
		}
	}
}

// Call sends a request with a fresh nonce and returns the first frame that
// answers it; frames read meanwhile stay for Next.
func (c *Client) Call(ctx context.Context, typ string, payload any) (Frame, error) {
	frames, err := c.Collect(ctx, typ, payload, func(Frame) bool { return true })
	if err != nil {
		return Frame{}, err
	}
	return frames[0], nil
}

// Collect sends a request with a fresh nonce and returns the frames that
// answer it, up to and including the first for which last is true (or an
// error frame).
func (c *Client) Collect(ctx context.Context, typ string, payload any, last func(Frame) bool) ([]Frame, error) {
	nonce := c.NewNonce()
	if err := c.Send(typ, payload, nonce); err != nil {
		return nil, err
	}
	var out []Frame
	for {
		f, err := c.receive(ctx)
		if err != nil {
			return out, err
		}
		if f.Nonce != nonce {
			c.backlog = append(c.backlog, f)
			continue
		}
		out = append(out, f)
		if f.Type == "error" || last(f) {
			return out, nil
		}
	}
}

// Wait returns how the connection ended, waiting for it until ctx ends.
func (c *Client) Wait(ctx context.Context) error {
	select {
	case <-c.gone:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Heartbeats sends a heartbeat {"count":n} every interval until the
// returned stop is called; the answers arrive as frames like any other.
func (c *Client) Heartbeats(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for n := 1; ; n++ {
			select {
			case <-done:
				return
			case <-c.gone:
				return
			case <-t.C:
				if c.Send("heartbeat", map[string]int{"count": n}, "") != nil {
					return
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// Close sends a normal close frame and closes the connection.
func (c *Client) Close() error {
	c.wmu.Lock()
	_ = ws.WriteFrame(c.conn, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))))
	c.wmu.Unlock()
	return c.conn.Close()
}

// Conn is the underlying connection, for tests that misbehave on purpose.
func (c *Client) Conn() net.Conn { return c.conn }
