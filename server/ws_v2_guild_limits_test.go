package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestV2GuildUserAndChannelLimits: the limits of protocol.md §3 that the
// other guild tests leave out. A user in 100 guilds can neither create
// nor join a 101st (4000 Too many guilds.); a guild of 50 channels takes
// no 51st (4000 Too many channels.), and deleting one makes room again;
// an invite past its expires_in is 4004 Invite not exist.
func TestV2GuildUserAndChannelLimits(t *testing.T) {
	stores(t, func(t *testing.T, databaseURL string) {
		n := startNode(t, databaseURL, noRateLimit)
		many, other := n.newAccount("many"), n.newAccount("other")
		cm, _ := n.connect(many, 2)
		co, _ := n.connect(other, 2)

		for i := range 100 {
			createGuild(t, cm, fmt.Sprintf("guild %d", i))
		}
		requireError(t, guildCall(t, cm, map[string]any{"type": "create", "name": "one too many"}), 4000, "Too many guilds.")
		g := createGuild(t, co, "elsewhere")
		code := inviteCode(t, co, g.ID, 0)
		requireError(t, guildCall(t, cm, map[string]any{"type": "join", "code": code}), 4000, "Too many guilds.")

		// 49 more channels beside general, then none.
		var last string
		for i := range 49 {
			p := payloadOf(t, guildCall(t, co, map[string]any{"type": "channel_create", "guild_id": g.ID, "name": fmt.Sprintf("c%d", i)}).Payload)
			require.Equal(t, g.ID, p["guild_id"], "a channel object")
			last = p["id"].(string)
		}
		requireError(t, guildCall(t, co, map[string]any{"type": "channel_create", "guild_id": g.ID, "name": "c50"}), 4000, "Too many channels.")
		require.Equal(t, "ok", guildCall(t, co, map[string]any{"type": "channel_delete", "channel_id": last}).Type)
		p := payloadOf(t, guildCall(t, co, map[string]any{"type": "channel_create", "guild_id": g.ID, "name": "c50"}).Payload)
		require.Equal(t, "c50", p["name"])

		// An invite that expires in 1 s.
		f := guildCall(t, co, map[string]any{"type": "invite", "guild_id": g.ID, "expires_in": 1})
		short := payloadOf(t, f.Payload)["code"].(string)
		third := n.newAccount("third")
		ct, _ := n.connect(third, 2)
		time.Sleep(1100 * time.Millisecond)
		requireError(t, guildCall(t, ct, map[string]any{"type": "join", "code": short}), 4004, "Invite not exist.")
	})
}
