package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/cluster/etcdtest"
	"github.com/rewind-chat/rewind/net/client"
)

// TestClusterGuild: a guild whose members are on three nodes. The guild
// grain, the channel's room grain and the members' user grains are
// placed by the cluster, wherever the requests come from: joins from
// nodes 2 and 3, a channel message from each node reaching every other
// member's session once and in seq order, and a kick made from node 3
// taking effect at once for the member on node 2 (refused, and nothing
// more reaches it).
func TestClusterGuild(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
	nodes := startCluster(t, 3)
	owner, m2, m3 := nodes[0].newAccount("gowner"), nodes[0].newAccount("gmember2"), nodes[0].newAccount("gmember3")
	c1, _ := nodes[0].connect(owner, 2)
	c2, _ := nodes[1].connect(m2, 2)
	c3, _ := nodes[2].connect(m3, 2)

	g := createGuild(t, c1, "across nodes")
	ch := g.Channels[0].ID
	code := inviteCode(t, c1, g.ID, 0)
	asGuild(t, guildCall(t, c2, map[string]any{"type": "join", "code": code}))
	require.Equal(t, m2.IDString(), nextGuildEvent(t, c1, "member_join")["user"].(map[string]any)["id"])
	j := asGuild(t, guildCall(t, c3, map[string]any{"type": "join", "code": code}))
	require.Equal(t, 3, j.MemberCount)
	for _, c := range []*client.Client{c1, c2} {
		for nextGuildEvent(t, c, "member_join")["user"].(map[string]any)["id"] != m3.IDString() {
		}
	}

	// One message from each node; each member gets the other two, once, in
	// seq order.
	clients := []*client.Client{c1, c2, c3}
	for i, c := range clients {
		require.Equal(t, "chat", channelSend(t, c, ch, fmt.Sprintf("from node %d", i+1)).Type)
	}
	for i, c := range clients {
		last := 0.0
		for got := 0; got < 2; {
			f := next(t, c)
			if f.Type != "chat" {
				continue
			}
			p := payloadOf(t, f.Payload)
			require.Equal(t, ch, p["chat_id"])
			require.NotEqual(t, fmt.Sprintf("from node %d", i+1), p["content"], "its own message came back")
			require.Greater(t, p["seq"].(float64), last, "in seq order")
			last = p["seq"].(float64)
			got++
		}
		quietOf(t, c, "chat", 100*time.Millisecond)
	}

	// The owner, on node 1, kicks the member on node 2: its next send is
	// refused, and a message after the kick does not reach it.
	require.Equal(t, "ok", guildCall(t, c1, map[string]any{"type": "kick", "guild_id": g.ID, "user_id": m2.IDString()}).Type)
	requireError(t, channelSend(t, c2, ch, "after the kick"), 4004, "Channel not exist.")
	require.Equal(t, "chat", channelSend(t, c3, ch, "to the two left").Type)
	for {
		f := next(t, c1)
		if f.Type == "chat" {
			require.Equal(t, "to the two left", payloadOf(t, f.Payload)["content"])
			break
		}
	}
	quietOf(t, c2, "chat", 300*time.Millisecond)
}
