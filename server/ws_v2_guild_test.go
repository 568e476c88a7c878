package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/server"
)

// The guilds of protocol.md §3 (v2), over real WebSockets, both stores.

type wireGuild struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	Name        string `json:"name"`
	OwnerID     string `json:"owner_id"`
	CreatedAt   string `json:"created_at"`
	MemberCount int    `json:"member_count"`
	Channels    []struct {
		ID      string `json:"id"`
		GuildID string `json:"guild_id"`
		Name    string `json:"name"`
		Seq     int64  `json:"seq"`
	} `json:"channels"`
}

// guildCall sends a guild request and returns its answer.
func guildCall(t *testing.T, c *client.Client, p map[string]any) client.Frame {
	t.Helper()
	return call(t, c, "guild", p)
}

func asGuild(t *testing.T, f client.Frame) wireGuild {
	t.Helper()
	require.Equal(t, "guild", f.Type, string(f.Payload))
	var g wireGuild
	require.NoError(t, json.Unmarshal(f.Payload, &g))
	return g
}

// nextGuildEvent skips frames until a guild event of typ.
func nextGuildEvent(t *testing.T, c *client.Client, typ string) map[string]any {
	t.Helper()
	for {
		f := next(t, c)
		if f.Type != "guild" {
			continue
		}
		p := payloadOf(t, f.Payload)
		if p["type"] == typ {
			return p
		}
	}
}

func createGuild(t *testing.T, c *client.Client, name string) wireGuild {
	t.Helper()
	g := asGuild(t, guildCall(t, c, map[string]any{"type": "create", "name": name}))
	require.Len(t, g.Channels, 1)
	return g
}

func inviteCode(t *testing.T, c *client.Client, guildID string, maxUses int) string {
	t.Helper()
	f := guildCall(t, c, map[string]any{"type": "invite", "guild_id": guildID, "max_uses": maxUses})
	p := payloadOf(t, f.Payload)
	require.Equal(t, "invite", p["type"], string(f.Payload))
	require.Equal(t, guildID, p["guild_id"])
	code := p["code"].(string)
	require.GreaterOrEqual(t, len(code), 11, "at least 64 bits")
	require.NotContains(t, code, "+")
	require.NotContains(t, code, "/")
	return code
}

func channelSend(t *testing.T, c *client.Client, chatID, content string) client.Frame {
	t.Helper()
	return call(t, c, "chat", map[string]any{"type": "send", "chat_id": chatID, "content": content})
}

func TestV2GuildRowsAndErrors(t *testing.T) {
	stores(t, func(t *testing.T, databaseURL string) {
		n := startNode(t, databaseURL)
		owner, bob, carol := n.newAccount("gowner"), n.newAccount("gbob"), n.newAccount("gcarol")
		co, _ := n.connect(owner, 2)
		cb, _ := n.connect(bob, 2)
		cc, _ := n.connect(carol, 2)

		// create, names.
		g := createGuild(t, co, "  My guild  ")
		require.Equal(t, "My guild", g.Name, "trimmed")
		require.Equal(t, owner.IDString(), g.OwnerID)
		require.Equal(t, 1, g.MemberCount)
		require.Equal(t, "general", g.Channels[0].Name)
		require.Equal(t, g.ID, g.Channels[0].GuildID)
		require.NotEmpty(t, g.CreatedAt)
		general := g.Channels[0].ID
		for _, bad := range []any{"", "   ", strings.Repeat("x", 101), nil} {
			p := map[string]any{"type": "create"}
			if bad != nil {
				p["name"] = bad
			}
			requireError(t, guildCall(t, co, p), 4000, "name must be 1 to 100 characters.")
		}
		require.Equal(t, strings.Repeat("é", 100), createGuild(t, co, strings.Repeat("é", 100)).Name)
		requireError(t, guildCall(t, co, map[string]any{"type": "nope"}), 4000, "Unknown guild type.")

		// invite, join.
		requireError(t, guildCall(t, cb, map[string]any{"type": "invite", "guild_id": g.ID}), 4004, "Guild not exist.")
		requireError(t, guildCall(t, co, map[string]any{"type": "invite", "guild_id": "12345"}), 4004, "Guild not exist.")
		requireError(t, guildCall(t, co, map[string]any{"type": "invite", "guild_id": g.ID, "expires_in": 604801}), 4000, "Invalid expires_in.")
		code := inviteCode(t, co, g.ID, 0)
		requireError(t, guildCall(t, cb, map[string]any{"type": "join", "code": "nonsense"}), 4004, "Invite not exist.")
		requireError(t, guildCall(t, cb, map[string]any{"type": "join", "code": code[:len(code)-2] + "AA"}), 4004, "Invite not exist.")
		joined := asGuild(t, guildCall(t, cb, map[string]any{"type": "join", "code": code}))
		require.Equal(t, g.ID, joined.ID)
		require.Equal(t, 2, joined.MemberCount)
		ev := nextGuildEvent(t, co, "member_join")
		require.Equal(t, g.ID, ev["guild_id"])
		require.Equal(t, bob.IDString(), ev["user"].(map[string]any)["id"])
		again := asGuild(t, guildCall(t, cb, map[string]any{"type": "join", "code": code}))
		require.Equal(t, 2, again.MemberCount, "an idempotent join")
		asGuild(t, guildCall(t, cc, map[string]any{"type": "join", "code": code}))
		nextGuildEvent(t, co, "member_join")
		nextGuildEvent(t, cb, "member_join")

		// members.
		f := guildCall(t, cb, map[string]any{"type": "members", "guild_id": g.ID, "count": 2})
		p := payloadOf(t, f.Payload)
		require.Equal(t, "members", p["type"])
		users := p["users"].([]any)
		require.Len(t, users, 2)
		first := users[0].(map[string]any)["id"].(string)
		second := users[1].(map[string]any)["id"].(string)
		require.Less(t, first, second, "ordered by user id (same length)")
		p = payloadOf(t, guildCall(t, cb, map[string]any{"type": "members", "guild_id": g.ID, "after": second}).Payload)
		require.Len(t, p["users"].([]any), 1)
		requireError(t, guildCall(t, cb, map[string]any{"type": "members", "guild_id": g.ID, "count": 0}), 4000, "Invalid count.")

		// owner-only rows.
		requireError(t, guildCall(t, cb, map[string]any{"type": "rename", "guild_id": g.ID, "name": "x"}), 4005, "Not the owner.")
		requireError(t, guildCall(t, cb, map[string]any{"type": "kick", "guild_id": g.ID, "user_id": carol.IDString()}), 4005, "Not the owner.")
		requireError(t, guildCall(t, cb, map[string]any{"type": "delete", "guild_id": g.ID}), 4005, "Not the owner.")
		requireError(t, guildCall(t, cb, map[string]any{"type": "channel_create", "guild_id": g.ID, "name": "x"}), 4005, "Not the owner.")
		requireError(t, guildCall(t, cb, map[string]any{"type": "channel_delete", "channel_id": general}), 4005, "Not the owner.")
		requireError(t, guildCall(t, co, map[string]any{"type": "leave", "guild_id": g.ID}), 4005, "Owner cannot leave.")

		renamed := asGuild(t, guildCall(t, co, map[string]any{"type": "rename", "guild_id": g.ID, "name": "Renamed"}))
		require.Equal(t, "Renamed", renamed.Name)
		ev = nextGuildEvent(t, cb, "update")
		require.Equal(t, "Renamed", ev["guild"].(map[string]any)["name"])

		f = guildCall(t, co, map[string]any{"type": "channel_create", "guild_id": g.ID, "name": "random"})
		ch := payloadOf(t, f.Payload)
		require.Equal(t, "random", ch["name"], string(f.Payload))
		require.Equal(t, g.ID, ch["guild_id"])
		random := ch["id"].(string)
		ev = nextGuildEvent(t, cb, "channel_create")
		require.Equal(t, random, ev["channel"].(map[string]any)["id"])

		// chat in channels: members only.
		echo := channelSend(t, cb, random, "hello channel")
		require.Equal(t, "chat", echo.Type, string(echo.Payload))
		require.EqualValues(t, 1, payloadOf(t, echo.Payload)["seq"])
		for _, c := range []*client.Client{co, cc} {
			for {
				f := next(t, c)
				if f.Type == "chat" {
					require.Equal(t, "hello channel", payloadOf(t, f.Payload)["content"])
					break
				}
			}
		}
		stranger := n.newAccount("gstranger")
		cs, _ := n.connect(stranger, 2)
		requireError(t, channelSend(t, cs, random, "let me in"), 4004, "Channel not exist.")
		requireError(t, call(t, cs, "load", map[string]any{"type": "chat", "load_id": random}), 4004, "Channel not exist.")
		requireError(t, call(t, cs, "load", map[string]any{"type": "changes", "load_id": random, "since": 0}), 4004, "Channel not exist.")
		requireError(t, call(t, cs, "read", map[string]any{"chat_id": random, "seq": 1}), 4004, "Channel not exist.")
		hist, err := co.Collect(ctxWait(t), "load", map[string]any{"type": "chat", "load_id": random}, func(f client.Frame) bool { return f.Type == "load" })
		require.NoError(t, err)
		require.Len(t, hist, 2)
		require.Equal(t, "hello channel", payloadOf(t, hist[0].Payload)["content"])
		// read in a channel: ok, no receipt to anybody else.
		require.Equal(t, "ok", call(t, cc, "read", map[string]any{"chat_id": random, "seq": 1}).Type)

		// channel_delete.
		requireError(t, guildCall(t, co, map[string]any{"type": "channel_delete", "channel_id": "999"}), 4004, "Channel not exist.")
		require.Equal(t, "ok", guildCall(t, co, map[string]any{"type": "channel_delete", "channel_id": random}).Type)
		ev = nextGuildEvent(t, cb, "channel_delete")
		require.Equal(t, random, ev["channel"].(map[string]any)["id"])
		// A deleted channel is no chat: 4004 (the session forgot it, and a
		// chat_id that is neither a channel nor a DM answers as a DM).
		e, ok := channelSend(t, cb, random, "gone?").AsError()
		require.True(t, ok)
		require.Equal(t, 4004, e.Code)
		requireError(t, guildCall(t, co, map[string]any{"type": "channel_delete", "channel_id": general}), 4000, "Cannot delete the last channel.")

		// leave.
		require.Equal(t, "ok", guildCall(t, cc, map[string]any{"type": "leave", "guild_id": g.ID}).Type)
		ev = nextGuildEvent(t, co, "member_leave")
		require.Equal(t, carol.IDString(), ev["user"].(map[string]any)["id"])
		requireError(t, channelSend(t, cc, general, "still here?"), 4004, "Channel not exist.")
		requireError(t, guildCall(t, cc, map[string]any{"type": "leave", "guild_id": g.ID}), 4004, "Guild not exist.")

		// kick: the member loses access at once.
		require.Equal(t, "chat", channelSend(t, cb, general, "before").Type)
		require.Equal(t, "ok", guildCall(t, co, map[string]any{"type": "kick", "guild_id": g.ID, "user_id": bob.IDString()}).Type)
		requireError(t, channelSend(t, cb, general, "after the kick"), 4004, "Channel not exist.")
		nextGuildEvent(t, cb, "removed")
		require.Equal(t, "chat", channelSend(t, co, general, "bob cannot see this").Type)
		quietOf(t, cb, "chat", 300*time.Millisecond)
		requireError(t, call(t, cb, "load", map[string]any{"type": "chat", "load_id": general}), 4004, "Channel not exist.")

		// the auth answer lists the guilds, chats the channels.
		_, auth := n.connect(owner, 2)
		var a struct {
			Guilds []wireGuild `json:"guilds"`
			Chats  []struct {
				ChatID string `json:"chat_id"`
				Kind   string `json:"kind"`
			} `json:"chats"`
		}
		require.NoError(t, json.Unmarshal(auth, &a))
		require.Len(t, a.Guilds, 2)
		kinds := map[string]string{}
		for _, c := range a.Chats {
			kinds[c.ChatID] = c.Kind
		}
		require.Equal(t, "channel", kinds[general])

		// delete ends the channels.
		require.Equal(t, "ok", guildCall(t, co, map[string]any{"type": "delete", "guild_id": g.ID}).Type)
		e, ok = channelSend(t, co, general, "after delete").AsError()
		require.True(t, ok)
		require.Equal(t, 4004, e.Code)
		requireError(t, guildCall(t, co, map[string]any{"type": "rename", "guild_id": g.ID, "name": "x"}), 4004, "Guild not exist.")
		requireError(t, guildCall(t, co, map[string]any{"type": "join", "code": code}), 4004, "Invite not exist.")
	})
}

// quietOf requires that c receives no frame of typ for d.
func quietOf(t *testing.T, c *client.Client, typ string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		f, err := c.Next(ctx)
		if err != nil {
			return
		}
		require.NotEqual(t, typ, f.Type, "unexpected %s", f.Payload)
	}
}

// A guild's event reaches its owner's other device; v1 sees none of it.
func TestV2GuildV1SeesNothing(t *testing.T) {
	stores(t, func(t *testing.T, databaseURL string) {
		n := startNode(t, databaseURL)
		owner, bob := n.newAccount("vowner"), n.newAccount("vbob")
		co, _ := n.connect(owner, 2)
		v1, auth := n.connect(owner, 1)
		require.NotContains(t, string(auth), "guilds")
		requireError(t, call(t, v1, "guild", map[string]any{"type": "create", "name": "x"}), 4000, "Unknown type.")
		g := createGuild(t, co, "v1 test")
		cb, _ := n.connect(bob, 2)
		asGuild(t, guildCall(t, cb, map[string]any{"type": "join", "code": inviteCode(t, co, g.ID, 0)}))
		require.Equal(t, "chat", channelSend(t, cb, g.Channels[0].ID, "to v2 only").Type)
		nextGuildEvent(t, co, "member_join")
		requireError(t, channelSend(t, v1, g.Channels[0].ID, "v1 send"), 4004, "User not exist.")
		quiet(t, v1, 500*time.Millisecond)
	})
}

// 50 concurrent joins on an invite with max_uses 10: exactly 10 join;
// and a guild at its member limit refuses the next join.
func TestV2GuildJoinLimits(t *testing.T) {
	stores(t, func(t *testing.T, databaseURL string) {
		n := startNode(t, databaseURL, func(c *server.Config) { c.Gateway.GuildMaxMembers = 60 })
		owner := n.newAccount("jowner")
		co, _ := n.connect(owner, 2)
		g := createGuild(t, co, "joins")
		code := inviteCode(t, co, g.ID, 10)
		var wg sync.WaitGroup
		var mu sync.Mutex
		outcomes := map[string]int{}
		for i := range 50 {
			u := n.newAccount(fmt.Sprintf("joiner%d", i))
			c, _ := n.connect(u, 2)
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := c.Call(ctxWait(t), "guild", map[string]any{"type": "join", "code": code})
				if err != nil {
					mu.Lock()
					outcomes["err"]++
					mu.Unlock()
					return
				}
				key := f.Type
				if e, ok := f.AsError(); ok {
					key = e.Reason
				}
				mu.Lock()
				outcomes[key]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		require.Equal(t, map[string]int{"guild": 10, "Invite not exist.": 40}, outcomes)
	})
}

func TestV2GuildMemberLimit(t *testing.T) {
	stores(t, func(t *testing.T, databaseURL string) {
		n := startNode(t, databaseURL, func(c *server.Config) { c.Gateway.GuildMaxMembers = 2 })
		owner, b, c := n.newAccount("lowner"), n.newAccount("lb"), n.newAccount("lc")
		co, _ := n.connect(owner, 2)
		cb, _ := n.connect(b, 2)
		cc, _ := n.connect(c, 2)
		g := createGuild(t, co, "small")
		code := inviteCode(t, co, g.ID, 0)
		asGuild(t, guildCall(t, cb, map[string]any{"type": "join", "code": code}))
		requireError(t, guildCall(t, cc, map[string]any{"type": "join", "code": code}), 4000, "Guild is full.")
	})
}

// A channel message reaches every online member's sessions exactly once,
// in seq order, with several senders at once; guilds, channels, members
// and history survive a restart.
func TestV2ChannelFanOutAndRestart(t *testing.T) {
	stores(t, func(t *testing.T, databaseURL string) {
		n := startNode(t, databaseURL)
		const members, perSender = 4, 15
		accts := make([]account, members)
		var sessions [][]*client.Client
		for i := range accts {
			accts[i] = n.newAccount(fmt.Sprintf("fan%d", i))
			c1, _ := n.connect(accts[i], 2)
			c2, _ := n.connect(accts[i], 2)
			sessions = append(sessions, []*client.Client{c1, c2})
		}
		g := createGuild(t, sessions[0][0], "fan")
		ch := g.Channels[0].ID
		code := inviteCode(t, sessions[0][0], g.ID, 0)
		for i := 1; i < members; i++ {
			asGuild(t, guildCall(t, sessions[i][0], map[string]any{"type": "join", "code": code}))
		}
		senders := 3
		var wg sync.WaitGroup
		for s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range perSender {
					f, err := sessions[s][0].Call(ctxWait(t), "chat", map[string]any{"type": "send", "chat_id": ch, "content": fmt.Sprintf("s%d-%d", s, k)})
					if err != nil || f.Type != "chat" {
						t.Errorf("send: %v %s", err, f.Payload)
						return
					}
				}
			}()
		}
		wg.Wait()
		total := senders * perSender
		for i, ss := range sessions {
			for j, c := range ss {
				seen := map[float64]bool{}
				last := 0.0
				// The sending session got its own as echoes (read by Call).
				want := total
				if j == 0 && i < senders {
					want -= perSender
				}
				for len(seen) < want {
					f := next(t, c)
					if f.Type != "chat" {
						continue
					}
					seq := payloadOf(t, f.Payload)["seq"].(float64)
					require.False(t, seen[seq], "session %d/%d: seq %v twice", i, j, seq)
					require.Greater(t, seq, last, "in seq order")
					seen[seq], last = true, seq
				}
				quietOf(t, c, "chat", 50*time.Millisecond)
			}
		}

		n.restart()
		c, auth := n.connect(accts[1], 2)
		var a struct {
			Guilds []wireGuild `json:"guilds"`
		}
		require.NoError(t, json.Unmarshal(auth, &a))
		require.Len(t, a.Guilds, 1)
		require.Equal(t, members, a.Guilds[0].MemberCount)
		require.EqualValues(t, total, a.Guilds[0].Channels[0].Seq)
		p := payloadOf(t, guildCall(t, c, map[string]any{"type": "members", "guild_id": g.ID}).Payload)
		require.Len(t, p["users"].([]any), members)
		hist, err := c.Collect(ctxWait(t), "load", map[string]any{"type": "chat", "load_id": ch, "count": 100}, func(f client.Frame) bool { return f.Type == "load" })
		require.NoError(t, err)
		require.Len(t, hist, total+1)
		require.Equal(t, "chat", channelSend(t, c, ch, "after restart").Type)
	})
}
