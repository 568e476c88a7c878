package clustertest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/persistence"
)

// Account is a verified user of the cluster's database and a token for it.
type Account struct {
	persistence.User
	Token string
}

// ChatID is the DM id of a and b (protocol.md §2.3).
func ChatID(a, b Account) int64 { return a.ID ^ b.ID }

// NewAccounts creates n users named prefix0, prefix1, … directly in the
// database (registration is tested elsewhere) and issues each a token
// with the cluster's secret.
func (c *Cluster) NewAccounts(prefix string, n int) []Account {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tokens := auth.NewTokens([]byte(c.Secret), 0, c.Store, nil)
	out := make([]Account, n)
	for i := range out {
		c.mu.Lock()
		c.ids++
		id := 1_000_000 + c.ids
		c.mu.Unlock()
		u := persistence.User{ID: id, Name: fmt.Sprintf("%s%d", prefix, i), Email: fmt.Sprintf("%s%d-%d@example.test", prefix, i, id),
			PasswordHash: "$argon2id$unused", CreatedAt: time.Now()}
		if err := c.Store.CreateUser(ctx, u); err != nil {
			c.t.Fatalf("clustertest: create user %s: %v", u.Name, err)
		}
		token, err := tokens.Issue(u)
		if err != nil {
			c.t.Fatalf("clustertest: token of %s: %v", u.Name, err)
		}
		out[i] = Account{User: u, Token: token}
	}
	return out
}

// Befriend makes a and b friends in the database.
func (c *Cluster) Befriend(a, b Account) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := time.Now()
	if _, err := c.Store.RequestFriend(ctx, a.ID, b.ID, now); err != nil {
		c.t.Fatalf("clustertest: %s asks %s: %v", a.Name, b.Name, err)
	}
	if err := c.Store.AcceptFriend(ctx, b.ID, a.ID, now); err != nil {
		c.t.Fatalf("clustertest: %s accepts %s: %v", b.Name, a.Name, err)
	}
}

// Stored returns every message of the DM of a and b in the database,
// newest first; none when the DM has no room.
func (c *Cluster) Stored(ctx context.Context, a, b int64) ([]persistence.Message, error) {
	room, err := c.Store.FindDMRoom(ctx, a, b)
	if errors.Is(err, persistence.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var all []persistence.Message
	cursor := persistence.Cursor{Time: time.Unix(math.MaxInt32, 0)}
	for {
		page, err := c.Store.History(ctx, room, cursor, 500)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < 500 {
			return all, nil
		}
		last := page[len(page)-1]
		cursor = persistence.Cursor{Time: last.CreatedAt, ID: last.ID}
	}
}

// Chat is a chat object as the wire carries it (echo, event, history).
type Chat struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	UserID    string `json:"user_id"`
	ChatID    string `json:"chat_id"`
	Content   string `json:"content"`
	CreatedAt string `json:"created_at"`
}

// MessageID is the chat's id as a number.
func (ch Chat) MessageID() int64 { n, _ := strconv.ParseInt(ch.ID, 10, 64); return n }

// AuthorID is the chat's author as a number.
func (ch Chat) AuthorID() int64 { n, _ := strconv.ParseInt(ch.UserID, 10, 64); return n }

// ErrorFrame is an error answer of the server (protocol.md §2.1).
type ErrorFrame struct {
	client.ErrorPayload
}

func (e *ErrorFrame) Error() string { return fmt.Sprintf("error %d %q", e.Code, e.Reason) }

// ErrGone: the session's connection ended before the answer came;
// Session.Err says how.
var ErrGone = errors.New("connection gone")

// Session is one authenticated WebSocket of an account on a node. One
// goroutine reads every frame: an answer (a frame with a nonce) goes to
// the request that sent that nonce, a chat event (no nonce) is counted
// by message id. Requests may be made from one goroutine at a time.
type Session struct {
	Account Account
	Node    *Node
	// Opened is when the session was authenticated.
	Opened time.Time

	c      *client.Client
	stopHB func()
	gone   chan struct{} // closed when the read loop ends
	err    error         // how the connection ended; read after gone
	closed atomic.Bool   // Close was called
	byUs   bool          // it ended after Close was called; read after gone

	mu      sync.Mutex
	answers map[string]chan client.Frame
	seen    map[int64]int // chat frames (echoes and events) by message id
	events  []Event
	nonces  atomic.Uint64
}

// Event is a chat event a session received, and when.
type Event struct {
	Chat
	At time.Time
}

// Connect dials node's /ws (version 1 or 2), heartbeats, authenticates as
// a and returns the session, which heartbeats every 5 s from then on.
func Connect(ctx context.Context, node *Node, a Account, version int) (*Session, error) {
	c, err := client.Dial(ctx, node.WebSocketURL(version))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", node, err)
	}
	s := &Session{Account: a, Node: node, c: c, gone: make(chan struct{}),
		answers: map[string]chan client.Frame{}, seen: map[int64]int{}}
	go s.read()
	if _, err := s.request(ctx, "heartbeat", map[string]int{"count": 0}, nil); err != nil {
		s.Close()
		return nil, fmt.Errorf("heartbeat on %s: %w", node, err)
	}
	f, err := s.request(ctx, "auth", map[string]string{"auth": a.Token}, nil)
	if err == nil && f[0].Type != "auth" {
		err = fmt.Errorf("answered %s %s", f[0].Type, f[0].Payload)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("auth as %s on %s: %w", a.Name, node, err)
	}
	s.Opened = time.Now()
	s.stopHB = c.Heartbeats(5 * time.Second)
	return s, nil
}

func (s *Session) read() {
	defer close(s.gone)
	for {
		f, err := s.c.Next(context.Background())
		if err != nil {
			s.err, s.byUs = err, s.closed.Load()
			return
		}
		if f.Nonce != "" {
			s.mu.Lock()
			ch := s.answers[f.Nonce]
			s.mu.Unlock()
			select {
			case ch <- f: // a nil ch (nobody waits any more) is never ready
			default:
			}
		}
		if f.Type != "chat" {
			continue
		}
		var ch Chat
		if f.Decode(&ch) != nil || (ch.Type != "send" && ch.Type != "edit") {
			continue // history items are "load"
		}
		s.mu.Lock()
		s.seen[ch.MessageID()]++
		if f.Nonce == "" {
			s.events = append(s.events, Event{Chat: ch, At: time.Now()})
		}
		s.mu.Unlock()
	}
}

// request sends a request with a fresh nonce and returns the frames that
// answer it, up to the first for which last is true (nil: the first), or
// an error frame as *ErrorFrame. The nonce is "r<n>", which no chat send
// of the tests uses.
func (s *Session) request(ctx context.Context, typ string, payload any, last func(client.Frame) bool) ([]client.Frame, error) {
	return s.requestNonce(ctx, "r"+strconv.FormatUint(s.nonces.Add(1), 10), typ, payload, last)
}

func (s *Session) requestNonce(ctx context.Context, nonce, typ string, payload any, last func(client.Frame) bool) ([]client.Frame, error) {
	ch := make(chan client.Frame, 256)
	s.mu.Lock()
	s.answers[nonce] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.answers, nonce)
		s.mu.Unlock()
	}()
	if err := s.c.Send(typ, payload, nonce); err != nil {
		return nil, fmt.Errorf("%w: send: %v", ErrGone, err)
	}
	var out []client.Frame
	for {
		select {
		case f := <-ch:
			if e, ok := f.AsError(); ok {
				return out, &ErrorFrame{e}
			}
			out = append(out, f)
			if last == nil || last(f) {
				return out, nil
			}
		case <-s.gone:
			return out, fmt.Errorf("%w: %v", ErrGone, s.err)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

// Send sends content to the DM chatID with nonce and returns the echo.
func (s *Session) Send(ctx context.Context, chatID int64, content, nonce string) (Chat, error) {
	f, err := s.requestNonce(ctx, nonce, "chat", map[string]string{
		"type": "send", "chat_id": strconv.FormatInt(chatID, 10), "content": content,
	}, nil)
	if err != nil {
		return Chat{}, err
	}
	var ch Chat
	if f[0].Type != "chat" || f[0].Decode(&ch) != nil || ch.ID == "" {
		return Chat{}, fmt.Errorf("send answered %s %s", f[0].Type, f[0].Payload)
	}
	return ch, nil
}

// History loads the whole DM chatID with `load chat`, page by page
// (100 a page, by the before cursor), newest first.
func (s *Session) History(ctx context.Context, chatID int64) ([]Chat, error) {
	var all []Chat
	var before string
	for {
		p := map[string]any{"type": "chat", "load_id": strconv.FormatInt(chatID, 10), "count": 100}
		if before != "" {
			p["before"] = before
		}
		frames, err := s.request(ctx, "load", p, func(f client.Frame) bool { return f.Type == "load" })
		if err != nil {
			return nil, err
		}
		page := frames[:len(frames)-1] // oldest first, then the end marker
		for i := len(page) - 1; i >= 0; i-- {
			var ch Chat
			if err := page[i].Decode(&ch); err != nil {
				return nil, err
			}
			all = append(all, ch)
		}
		if len(page) < 100 {
			return all, nil
		}
		before = all[len(all)-1].ID
	}
}

// Seen is how many chat frames (echo or event) with message id the
// session received.
func (s *Session) Seen(id int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[id]
}

// EventAt is when the session received message id as an event, if it did.
func (s *Session) EventAt(id int64) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.MessageID() == id {
			return e.At, true
		}
	}
	return time.Time{}, false
}

// Duplicates returns the message ids the session received more than once.
func (s *Session) Duplicates() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []int64
	for id, n := range s.seen {
		if n > 1 {
			ids = append(ids, id)
		}
	}
	return ids
}

// Events returns the chat events received so far.
func (s *Session) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Gone is closed when the connection has ended.
func (s *Session) Gone() <-chan struct{} { return s.gone }

// Err is how the connection ended (a *client.CloseError for a close
// frame), nil while it lasts.
func (s *Session) Err() error {
	select {
	case <-s.gone:
		return s.err
	default:
		return nil
	}
}

// CloseCode is the code of the server's close frame, 0 when there was
// none (yet).
func (s *Session) CloseCode() int {
	var ce *client.CloseError
	if errors.As(s.Err(), &ce) {
		return ce.Code
	}
	return 0
}

// ClosedByServer reports whether the connection ended before Close was
// called: a close frame of the server, or the connection dropped.
func (s *Session) ClosedByServer() bool { return s.Err() != nil && !s.byUs }

// Close closes the connection (with 1000) and waits for the read loop.
func (s *Session) Close() {
	if s.closed.Swap(true) {
		return
	}
	if s.stopHB != nil {
		s.stopHB()
	}
	s.c.Close()
	<-s.gone
}
