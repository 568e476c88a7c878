package storetest

import (
	"context"
	"sync"
	"time"

	"github.com/rewind-chat/rewind/persistence"
)

// Gate wraps a real Store so that a test can hold the calls of chosen
// methods: while a method is held, its calls wait (until it is released or
// their context ends) and are counted, so a test can tell that one
// operation is stuck in the store while it checks that others go on.
type Gate struct {
	persistence.Store

	mu      sync.Mutex
	held    map[string]chan struct{} // closed on release
	waiting map[string]int
}

// NewGate wraps s with every method released.
func NewGate(s persistence.Store) *Gate {
	return &Gate{Store: s, held: map[string]chan struct{}{}, waiting: map[string]int{}}
}

// Hold makes the calls of method (e.g. "OpenDMs") wait from now on.
func (g *Gate) Hold(method string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held[method] == nil {
		g.held[method] = make(chan struct{})
	}
}

// Release lets the waiting and future calls of method through.
func (g *Gate) Release(method string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.held[method]; c != nil {
		close(c)
		delete(g.held, method)
	}
}

// Waiting counts the calls of method waiting now.
func (g *Gate) Waiting(method string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting[method]
}

// AwaitWaiting waits until n calls of method wait, or timeout; it reports
// whether they did.
func (g *Gate) AwaitWaiting(method string, n int, timeout time.Duration) bool {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if g.Waiting(method) >= n {
			return true
		}
	}
	return false
}

func (g *Gate) pass(ctx context.Context, method string) error {
	g.mu.Lock()
	c := g.held[method]
	if c == nil {
		g.mu.Unlock()
		return nil
	}
	g.waiting[method]++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.waiting[method]--
		g.mu.Unlock()
	}()
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// The methods a gate can hold: those behind the gateway's actors.

func (g *Gate) OpenDMs(ctx context.Context, dms []persistence.DMOpen) ([]persistence.DMState, error) {
	if err := g.pass(ctx, "OpenDMs"); err != nil {
		return nil, err
	}
	return g.Store.OpenDMs(ctx, dms)
}

func (g *Gate) WriteMessages(ctx context.Context, ops []persistence.MessageOp) ([]persistence.MessageResult, error) {
	if err := g.pass(ctx, "WriteMessages"); err != nil {
		return nil, err
	}
	return g.Store.WriteMessages(ctx, ops)
}

func (g *Gate) History(ctx context.Context, roomID int64, before persistence.Cursor, limit int) ([]persistence.Message, error) {
	if err := g.pass(ctx, "History"); err != nil {
		return nil, err
	}
	return g.Store.History(ctx, roomID, before, limit)
}

func (g *Gate) FriendLists(ctx context.Context, userID int64) (incoming, outgoing, friends []persistence.User, err error) {
	if err := g.pass(ctx, "FriendLists"); err != nil {
		return nil, nil, nil, err
	}
	return g.Store.FriendLists(ctx, userID)
}

func (g *Gate) RequestFriend(ctx context.Context, from, to int64, now time.Time) (persistence.FriendResult, error) {
	if err := g.pass(ctx, "RequestFriend"); err != nil {
		return 0, err
	}
	return g.Store.RequestFriend(ctx, from, to, now)
}

func (g *Gate) SetProfile(ctx context.Context, userID int64, profile *string) (persistence.User, error) {
	if err := g.pass(ctx, "SetProfile"); err != nil {
		return persistence.User{}, err
	}
	return g.Store.SetProfile(ctx, userID, profile)
}

func (g *Gate) Changes(ctx context.Context, roomID, since int64, limit int) ([]persistence.Message, int64, error) {
	if err := g.pass(ctx, "Changes"); err != nil {
		return nil, 0, err
	}
	return g.Store.Changes(ctx, roomID, since, limit)
}

func (g *Gate) Chats(ctx context.Context, userID, before int64, limit int) ([]persistence.ChatSummary, error) {
	if err := g.pass(ctx, "Chats"); err != nil {
		return nil, err
	}
	return g.Store.Chats(ctx, userID, before, limit)
}

func (g *Gate) MarkRead(ctx context.Context, userID, roomID, seq int64) (int64, bool, error) {
	if err := g.pass(ctx, "MarkRead"); err != nil {
		return 0, false, err
	}
	return g.Store.MarkRead(ctx, userID, roomID, seq)
}

func (g *Gate) CreateGuild(ctx context.Context, guild persistence.Guild, channelID int64, maxGuilds int) (persistence.Guild, error) {
	if err := g.pass(ctx, "CreateGuild"); err != nil {
		return persistence.Guild{}, err
	}
	return g.Store.CreateGuild(ctx, guild, channelID, maxGuilds)
}

func (g *Gate) Guild(ctx context.Context, guildID int64) (persistence.Guild, error) {
	if err := g.pass(ctx, "Guild"); err != nil {
		return persistence.Guild{}, err
	}
	return g.Store.Guild(ctx, guildID)
}

func (g *Gate) GuildsOf(ctx context.Context, userID int64) ([]persistence.Guild, error) {
	if err := g.pass(ctx, "GuildsOf"); err != nil {
		return nil, err
	}
	return g.Store.GuildsOf(ctx, userID)
}

func (g *Gate) GuildMemberIDs(ctx context.Context, guildID int64) ([]int64, error) {
	if err := g.pass(ctx, "GuildMemberIDs"); err != nil {
		return nil, err
	}
	return g.Store.GuildMemberIDs(ctx, guildID)
}

func (g *Gate) JoinGuild(ctx context.Context, code string, userID int64, now time.Time, maxMembers, maxGuilds int) (persistence.Guild, bool, error) {
	if err := g.pass(ctx, "JoinGuild"); err != nil {
		return persistence.Guild{}, false, err
	}
	return g.Store.JoinGuild(ctx, code, userID, now, maxMembers, maxGuilds)
}

func (g *Gate) ChannelByID(ctx context.Context, channelID int64) (persistence.Channel, error) {
	if err := g.pass(ctx, "ChannelByID"); err != nil {
		return persistence.Channel{}, err
	}
	return g.Store.ChannelByID(ctx, channelID)
}
