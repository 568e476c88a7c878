package sqlite

import (
	"math"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/stretchr/testify/require"
)

// planStore is a store whose tables have rows enough that SQLite's
// planner, with their statistics, prefers no index it does not need: 1,000
// users; 1,397 DM rooms, of which user 1 has 400 (as low member); 20,000
// messages, 5,000 of them in room 10001 (users 1 and 2), a tenth deleted,
// a seventh edited, written with version 4 and numbered by migration 5; a
// read state per member and room. All analyzed.
func planStore(t *testing.T) *Store {
	t.Helper()
	s := open(t, filepath.Join(t.TempDir(), "rewind.db"))
	ctx := t.Context()
	require.NoError(t, s.migrate(ctx, 4))
	_, err := s.write.ExecContext(ctx, `
		WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 1000)
		INSERT INTO users (id, name, name_folded, email, email_folded, password_hash, created_at)
			SELECT x, 'u' || x, 'u' || x, x || '@example.com', x || '@example.com', '', 0 FROM g;
		WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 999)
		INSERT INTO rooms (id, kind, member_low, member_high, created_at)
			SELECT 10000 + x, 1, x, x + 1, 0 FROM g UNION ALL SELECT 20000 + x, 1, 1, x, 0 FROM g WHERE x BETWEEN 3 AND 400;
		WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 20000)
		INSERT INTO messages (id, room_id, author_id, content, nonce, created_at, edited_at, deleted_at)
			SELECT x, r.id, CASE WHEN x % 2 = 0 THEN r.member_low ELSE r.member_high END,
				CASE WHEN x % 10 = 0 THEN '' ELSE 'message ' || x END, 'n' || x, x * 1000000,
				CASE WHEN x % 7 = 0 OR x % 10 = 0 THEN (x + 3600) * 1000000 END,
				CASE WHEN x % 10 = 0 THEN (x + 3600) * 1000000 END
			FROM g JOIN rooms r ON r.id = CASE WHEN x <= 5000 THEN 10001 WHEN x % 1397 < 999 THEN 10001 + x % 1397
				ELSE 20003 + x % 1397 - 999 END`)
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	_, err = s.write.ExecContext(ctx, `
		INSERT INTO read_states (user_id, room_id, read_seq)
			SELECT member_low, id, seq / 2 FROM rooms UNION ALL SELECT member_high, id, seq / 3 FROM rooms;
		ANALYZE`)
	require.NoError(t, err)
	_, err = s.write.ExecContext(ctx, guildRows+`; ANALYZE`)
	require.NoError(t, err)
	return s
}

// guildRows gives planStore 5,000 guilds (50001..55000, owned by users
// 1..1000) of 10 members each, user 1 in 100 of them (50001..50100); 5
// channels each (60000 + 5·guild + 0..4), 4 of them with a change, and a
// message in each of those of user 1's guilds; a read state per member of
// guild 50001's channels; an invite per guild.
const guildRows = `
	WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 5000)
	INSERT INTO guilds (id, name, owner_id, member_count, created_at) SELECT 50000 + x, 'g' || x, (x - 1) % 1000 + 1, 10, 0 FROM g;
	WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 5000),
		m(y) AS (SELECT 0 UNION ALL SELECT y + 1 FROM m WHERE y < 9)
	INSERT OR IGNORE INTO guild_members (guild_id, user_id, joined_at)
		SELECT 50000 + x, (x + 97 * y) % 1000 + 1, y FROM g, m
		UNION ALL SELECT 50000 + x, 1, 100 FROM g WHERE x <= 100;
	WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 5000)
	INSERT INTO invites (code, guild_id, created_by, max_uses, expires_at, created_at)
		SELECT 'i' || x, 50000 + x, (x - 1) % 1000 + 1, 0, 1000000, 0 FROM g;
	WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < 5000),
		c(c) AS (SELECT 0 UNION ALL SELECT c + 1 FROM c WHERE c < 4)
	INSERT INTO rooms (id, kind, guild_id, name, created_at, seq, activity_at)
		SELECT 60000 + 5 * x + c, 2, 50000 + x, 'c' || c, c, CASE WHEN c < 4 THEN 1 ELSE 0 END,
			CASE WHEN c < 4 THEN 100000000 + x * 4 + c END
		FROM g, c;
	INSERT INTO messages (id, room_id, author_id, content, created_at, seq)
		SELECT 100000 + id, id, (guild_id - 50001) % 1000 + 1, 'm', activity_at, 1 FROM rooms
		WHERE kind = 2 AND seq > 0 AND guild_id <= 50100;
	INSERT INTO read_states (user_id, room_id, read_seq)
		SELECT m.user_id, r.id, 0 FROM guild_members m JOIN rooms r ON r.guild_id = m.guild_id WHERE m.guild_id = 50001`

// explain returns the plan of query with args, a line per step, each
// indented by its depth.
func explain(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.read.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	require.NoError(t, err)
	defer rows.Close()
	depth := map[int]int{}
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		require.NoError(t, rows.Scan(&id, &parent, &unused, &detail))
		depth[id] = depth[parent] + 1
		lines = append(lines, strings.Repeat("  ", depth[id]-1)+detail)
	}
	require.NoError(t, rows.Err())
	return strings.Join(lines, "\n")
}

// chatsChannels is the channel branch of Chats' plan: the user's guilds,
// in any order, and each guild's channels from the cursor on, in activity
// order, sorted into one page (at most the guild limit times the channel
// limit rows), which the merge with the DM branches sorts again (at most a
// page).
const chatsChannels = `RIGHT\n\s*CO-ROUTINE \(subquery-\d+\)\n` +
	`\s*SEARCH gm USING COVERING INDEX guild_members_user_idx \(user_id=\?\)\n` +
	`\s*SEARCH r USING INDEX rooms_channel_activity_idx \(guild_id=\? AND activity_at<\?\)\n` +
	`\s*USE TEMP B-TREE FOR ORDER BY\n` +
	`\s*SCAN \(subquery-\d+\)\n` +
	`\s*USE TEMP B-TREE FOR ORDER BY\n`

// TestChatPlans guards that the queries of Changes, Chats, MarkRead and
// WriteMessages read indexes in their order, never a whole table and with
// no sort, on tables with rows enough that SQLite would scan them if that
// were cheaper: what a call costs is its page (and the unread cap, and its
// batch), not the size of a chat or of the messages table.
func TestChatPlans(t *testing.T) {
	s := planStore(t)
	var last int64 // room 10001's counter
	require.NoError(t, s.read.QueryRowContext(t.Context(), roomSeq, 10001).Scan(&last))
	maxInt := int64(math.MaxInt64)
	tests := []struct {
		name  string
		query string
		args  []any
		want  []string // regular expressions that the plan must match
		// sorted matches the one part of the plan that may sort: Chats'
		// channel branch, whose rows the guild and channel limits bound.
		sorted string
	}{
		{"Changes of a long chat from its start", changesQuery, []any{10001, 0, 500},
			[]string{`^SEARCH messages USING INDEX messages_room_change_key \(room_id=\? AND <expr>>\?\)$`}, ""},
		{"Changes near the end", changesQuery, []any{10001, last - 300, 500},
			[]string{`^SEARCH messages USING INDEX messages_room_change_key \(room_id=\? AND <expr>>\?\)$`}, ""},
		{"Changes counter", roomSeq, []any{10001}, []string{`SEARCH rooms USING INTEGER PRIMARY KEY`}, ""},
		{"Chats", chatsQuery, []any{1, maxInt, maxInt, 200, persistence.UnreadCap}, []string{
			// the user's rooms in activity order, from the cursor, by member column, merged
			`MERGE \(UNION ALL\)\n\s*LEFT\n\s*SEARCH rooms USING INDEX rooms_low_activity_idx \(member_low=\? AND activity_at<\?\)\n` +
				`\s*RIGHT\n\s*SEARCH rooms USING INDEX rooms_high_activity_idx \(member_high=\? AND activity_at<\?\)`,
			// the read position of each room of the page, by key
			`SEARCH rs USING (PRIMARY KEY \(user_id=\? AND room_id=\?\)|INDEX read_states_room_idx \(room_id=\? AND user_id=\?\))`,
			// the unread count: a range of the live index from the read position, bounded by the cap
			`SEARCH messages USING COVERING INDEX messages_room_live_seq_idx \(room_id=\? AND seq>\?\)`,
			// the last message: the live index's last entry, then its row
			`SEARCH messages USING COVERING INDEX messages_room_live_seq_idx \(room_id=\?\)`,
			`SEARCH l USING INTEGER PRIMARY KEY`,
		}, chatsChannels},
		{"Chats' cursor and MarkRead's room", memberRoom, []any{20100, 1}, []string{`SEARCH rooms USING INTEGER PRIMARY KEY`}, ""},
		{"Chats' cursor and MarkRead's room: a channel", memberRoom, []any{60006, 1}, []string{`SEARCH rooms USING INTEGER PRIMARY KEY`,
			`SEARCH guild_members USING PRIMARY KEY \(guild_id=\? AND user_id=\?\)`}, ""},
		{"MarkRead's position", readSeq, []any{1, 10001}, []string{`SEARCH read_states USING PRIMARY KEY \(user_id=\? AND room_id=\?\)`}, ""},
		{"WriteMessages: a room's counter", roomCounter, []any{10001}, []string{`SEARCH rooms USING INTEGER PRIMARY KEY`}, ""},
		{"WriteMessages: edit", editMessage, []any{"e", 5, 4001, 10001, 1, 7}, []string{`SEARCH messages USING INTEGER PRIMARY KEY`}, ""},
		{"WriteMessages: counter", bumpRoom, []any{10001, 7, 5}, []string{`SEARCH rooms USING INTEGER PRIMARY KEY`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := explain(t, s, tt.query, tt.args...)
			require.NotRegexp(t, `(?m)^\s*SCAN (messages|rooms|read_states|users|guild_members|guilds)\b`, plan, "a whole table")
			unsorted := plan
			if tt.sorted != "" {
				require.Regexp(t, tt.sorted, plan)
				unsorted = regexp.MustCompile(tt.sorted).ReplaceAllString(plan, "")
			}
			require.NotContains(t, unsorted, "TEMP B-TREE", "a sort")
			require.NotContains(t, plan, "messages_room_created_idx", plan)
			for _, re := range tt.want {
				require.Regexp(t, "(?m)"+re, plan)
			}
		})
	}
}

// TestGuildPlans guards that the statements of GuildStore read indexes,
// never a whole table: what a call costs is the guild's channels and
// members, or the user's guilds, which the limits bound.
func TestGuildPlans(t *testing.T) {
	s := planStore(t)
	tests := []struct {
		name  string
		query string
		args  []any
		want  []string
	}{
		{"a guild", guildByID, []any{50001}, []string{`SEARCH guilds USING INTEGER PRIMARY KEY`}},
		{"its channels", guildChannels, []any{50001}, []string{`SEARCH rooms USING INDEX rooms_guild_idx \(guild_id=\?\)`}},
		{"a channel", channelByID, []any{60006}, []string{`SEARCH rooms USING INTEGER PRIMARY KEY`}},
		{"a user's guilds", userGuilds, []any{1}, []string{`SEARCH m USING COVERING INDEX guild_members_user_idx \(user_id=\?\)`,
			`SEARCH g USING INTEGER PRIMARY KEY`}},
		{"a user's channels", userChannels, []any{1}, []string{`SEARCH m USING COVERING INDEX guild_members_user_idx \(user_id=\?\)`,
			`SEARCH r USING INDEX rooms_guild_idx \(guild_id=\?\)`}},
		{"membership", isMember, []any{50001, 1}, []string{`SEARCH guild_members USING PRIMARY KEY \(guild_id=\? AND user_id=\?\)`}},
		{"the guild limit", guildCount, []any{1, 100}, []string{`SEARCH guild_members USING COVERING INDEX guild_members_user_idx \(user_id=\?\)`}},
		{"the channel limit", channelCount, []any{50001}, []string{`SEARCH rooms USING INDEX rooms_guild_idx \(guild_id=\?\)`}},
		{"member ids", memberIDsQuery, []any{50001}, []string{`SEARCH guild_members USING PRIMARY KEY \(guild_id=\?\)`}},
		{"a page of members", membersPage, []any{50001, 10, 100}, []string{`SEARCH m USING PRIMARY KEY \(guild_id=\? AND user_id>\?\)`,
			`SEARCH u USING INTEGER PRIMARY KEY`}},
		{"an invite", inviteByCode, []any{"i1"}, []string{`SEARCH invites USING INDEX sqlite_autoindex_invites_1 \(code=\?\)`}},
		{"leaving: read positions", forgetReads, []any{1, 50001}, []string{`SEARCH read_states USING (PRIMARY KEY \(user_id=\? AND room_id=\?\)|INDEX read_states_room_idx \(room_id=\? AND user_id=\?\))`,
			`SEARCH rooms USING (COVERING )?INDEX rooms_guild_idx \(guild_id=\?\)`}},
		{"deleting: messages", deleteChannelMessages, []any{50001}, []string{`SEARCH messages USING (COVERING )?INDEX messages_room_\w+ \(room_id=\?\)`,
			`SEARCH rooms USING (COVERING )?INDEX rooms_guild_idx \(guild_id=\?\)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := explain(t, s, tt.query, tt.args...)
			require.NotRegexp(t, `(?m)^\s*SCAN (messages|rooms|read_states|users|guild_members|guilds|invites)\b`, plan, "a whole table")
			for _, re := range tt.want {
				require.Regexp(t, "(?m)"+re, plan)
			}
		})
	}
}
