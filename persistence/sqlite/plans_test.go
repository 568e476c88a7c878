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
	return s
}

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
