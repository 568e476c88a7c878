package postgres

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres/pgtest"
	"github.com/stretchr/testify/require"
)

// planStore is a store whose tables have rows enough that the planner
// prefers no index it does not need: 1,000 users; 1,397 DM rooms, of which
// user 1 has 400 (as low member); 20,000 messages, 5,000 of them in room
// 10001 (users 1 and 2), a tenth deleted, a seventh edited, written with
// version 4 and numbered by migration 5; a read state per member and room.
// All analyzed.
func planStore(t *testing.T) *Store {
	t.Helper()
	s := open(t, pgtest.NewSchemaURL(t))
	ctx := t.Context()
	require.NoError(t, s.migrate(ctx, 4))
	_, err := s.pool.Exec(ctx, `
		INSERT INTO users (id, name, name_folded, email, email_folded, password_hash, created_at)
			SELECT x, 'u' || x, 'u' || x, x || '@example.com', x || '@example.com', '', now() FROM generate_series(1, 1000) x;
		INSERT INTO rooms (id, kind, member_low, member_high, created_at)
			SELECT 10000 + x, 1, x, x + 1, now() FROM generate_series(1, 999) x
			UNION ALL SELECT 20000 + x, 1, 1, x, now() FROM generate_series(3, 400) x;
		INSERT INTO messages (id, room_id, author_id, content, nonce, created_at, edited_at, deleted_at)
			SELECT x, r.id, CASE WHEN x % 2 = 0 THEN r.member_low ELSE r.member_high END,
				CASE WHEN x % 10 = 0 THEN '' ELSE 'message ' || x END, 'n' || x,
				'2030-01-01'::timestamptz + x * interval '1 second',
				CASE WHEN x % 7 = 0 OR x % 10 = 0 THEN '2030-01-01'::timestamptz + (x + 3600) * interval '1 second' END,
				CASE WHEN x % 10 = 0 THEN '2030-01-01'::timestamptz + (x + 3600) * interval '1 second' END
			FROM generate_series(1, 20000) x
			JOIN rooms r ON r.id = CASE WHEN x <= 5000 THEN 10001 WHEN x % 1397 < 999 THEN 10001 + x % 1397
				ELSE 20003 + x % 1397 - 999 END`)
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	_, err = s.pool.Exec(ctx, `
		INSERT INTO read_states (user_id, room_id, read_seq)
			SELECT member_low, id, seq / 2 FROM rooms UNION ALL SELECT member_high, id, seq / 3 FROM rooms;
		ANALYZE users, rooms, messages, read_states`)
	require.NoError(t, err)
	_, err = s.pool.Exec(ctx, guildRows+`; ANALYZE guilds, guild_members, invites, rooms, messages, read_states`)
	require.NoError(t, err)
	return s
}

// guildRows gives planStore 5,000 guilds (50001..55000, owned by users
// 1..1000) of 10 members each, user 1 in 100 of them (50001..50100); 5
// channels each (60000 + 5·guild + 0..4), 4 of them with a change, and a
// message in each of those of user 1's guilds; a read state per member of
// guild 50001's channels; an invite per guild.
const guildRows = `
	INSERT INTO guilds (id, name, owner_id, member_count, created_at)
		SELECT 50000 + x, 'g' || x, (x - 1) % 1000 + 1, 10, now() FROM generate_series(1, 5000) x;
	INSERT INTO guild_members (guild_id, user_id, joined_at)
		SELECT 50000 + x, (x + 97 * y) % 1000 + 1, '2030-01-01'::timestamptz + y * interval '1 second'
		FROM generate_series(1, 5000) x, generate_series(0, 9) y
		UNION SELECT 50000 + x, 1, '2030-01-02' FROM generate_series(1, 100) x
		ON CONFLICT DO NOTHING;
	INSERT INTO invites (code, guild_id, created_by, max_uses, expires_at, created_at)
		SELECT 'i' || x, 50000 + x, (x - 1) % 1000 + 1, 0, '2031-01-01', now() FROM generate_series(1, 5000) x;
	INSERT INTO rooms (id, kind, guild_id, name, created_at, seq, activity_at)
		SELECT 60000 + 5 * x + c, 2, 50000 + x, 'c' || c, '2030-01-01'::timestamptz + c * interval '1 second',
			CASE WHEN c < 4 THEN 1 ELSE 0 END,
			CASE WHEN c < 4 THEN '2030-01-03'::timestamptz + (x * 4 + c) * interval '1 second' END
		FROM generate_series(1, 5000) x, generate_series(0, 4) c;
	INSERT INTO messages (id, room_id, author_id, content, created_at, seq)
		SELECT 100000 + r.id, r.id, (r.guild_id - 50001) % 1000 + 1, 'm', r.activity_at, 1 FROM rooms r WHERE r.kind = 2 AND r.seq > 0 AND r.guild_id <= 50100;
	INSERT INTO read_states (user_id, room_id, read_seq)
		SELECT m.user_id, r.id, 0 FROM guild_members m JOIN rooms r ON r.guild_id = m.guild_id WHERE m.guild_id = 50001`

// explain returns the plan of query with args in each plan_cache_mode,
// as PostgreSQL plans the prepared statement that pgx makes of it: for
// the values at hand (force_custom_plan), and generically, for any values
// (force_generic_plan), as it may after a few runs. (EXPLAIN of the query
// with parameters would plan it for those values in both modes.)
func explain(t *testing.T, s *Store, query string, args ...any) map[string]string {
	t.Helper()
	literals := make([]string, len(args))
	for i, a := range args {
		literals[i] = literal(a)
	}
	plans := map[string]string{}
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		conn, err := s.pool.Acquire(t.Context())
		require.NoError(t, err)
		_, err = conn.Exec(t.Context(), "SET plan_cache_mode = "+mode+"; PREPARE planned AS "+query)
		if err == nil {
			var rows pgx.Rows
			rows, err = conn.Query(t.Context(), "EXPLAIN EXECUTE planned ("+strings.Join(literals, ", ")+")", pgx.QueryExecModeSimpleProtocol)
			lines, cerr := pgx.CollectRows(rows, pgx.RowTo[string])
			plans[mode], err = strings.Join(lines, "\n"), errors.Join(err, cerr)
		}
		_, derr := conn.Exec(t.Context(), "DEALLOCATE ALL; RESET plan_cache_mode")
		conn.Release()
		require.NoError(t, errors.Join(err, derr))
	}
	return plans
}

// literal is a as an SQL literal, for explain.
func literal(a any) string {
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	array := func(n int, item func(i int) string, typ string) string {
		items := make([]string, n)
		for i := range items {
			items[i] = item(i)
		}
		return "ARRAY[" + strings.Join(items, ", ") + "]::" + typ + "[]"
	}
	switch a := a.(type) {
	case int:
		return strconv.Itoa(a)
	case int64:
		return strconv.FormatInt(a, 10)
	case string:
		return quote(a)
	case time.Time:
		return quote(a.Format(time.RFC3339Nano)) + "::timestamptz"
	case []int64:
		return array(len(a), func(i int) string { return strconv.FormatInt(a[i], 10) }, "bigint")
	case []string:
		return array(len(a), func(i int) string { return quote(a[i]) }, "text")
	case []time.Time:
		return array(len(a), func(i int) string { return quote(a[i].Format(time.RFC3339Nano)) }, "timestamptz")
	}
	panic(fmt.Sprintf("literal of %T", a))
}

// TestChatPlans guards that the queries of Changes, Chats, MarkRead and
// WriteMessages read indexes, never a whole table, in every plan, on
// tables with rows enough that PostgreSQL would scan them if that were
// cheaper: what a call costs is its page (and the unread cap, and its
// batch), not the size of a chat or of the messages table. A plan may
// read a range through a bitmap and sort it when it expects the range to
// fit the page; where a range is longer than the page (a long chat from
// its start), it must read the index in order and stop, with no sort.
func TestChatPlans(t *testing.T) {
	s := planStore(t)
	var last int64 // room 10001's counter
	require.NoError(t, s.pool.QueryRow(t.Context(), roomSeq, 10001).Scan(&last))
	// 100 sends into 20 rooms, half of them with a nonce stored already: a
	// batch of the size where PostgreSQL once hashed all of messages for
	// the duplicate check.
	var sends sendRun
	for i := range int64(100) {
		room := 10001 + i%20
		nonce := fmt.Sprint("new", i)
		if i%2 == 0 {
			nonce = fmt.Sprint("n", i+1) // message i+1's
		}
		sends.add(int(i), persistence.Message{ID: 30001 + i, RoomID: room, AuthorID: room - 10000, Content: "a",
			Nonce: nonce, CreatedAt: time.Now()})
	}
	// uses matches a scan through index, on its own or for a bitmap.
	uses := func(index string) string {
		return `(Index Scan|Index Only Scan|Index Scan Backward|Bitmap Index Scan) (using|on) ` + index + ` `
	}
	tests := []struct {
		name   string
		query  string
		args   []any
		want   []string // regular expressions that the plan must match
		noSort bool
	}{
		{
			name:   "Changes of a long chat from its start",
			query:  changesQuery,
			args:   []any{10001, 0, 500},
			want:   []string{`Limit .*\n\s*->  Index Scan using messages_room_change_key on messages .*\n\s*Index Cond: \(\(room_id = .*\) AND \(COALESCE\(edit_seq, seq\) > `},
			noSort: true,
		},
		{
			name:  "Changes near the end",
			query: changesQuery,
			args:  []any{10001, last - 300, 500},
			want:  []string{uses("messages_room_change_key") + `.*\n\s*Index Cond: \(\(room_id = .*\) AND \(COALESCE\(edit_seq, seq\) > `},
		},
		{
			name:  "Changes counter",
			query: roomSeq,
			args:  []any{10001},
			want:  []string{`Index Scan using rooms_pkey on rooms`},
		},
		{
			name:  "Chats",
			query: chatsQuery,
			args:  []any{1, 0, 200, persistence.UnreadCap},
			want: []string{
				// the user's rooms in activity order, from the cursor, by member column
				uses("rooms_low_activity_idx") + `.*\n\s*Index Cond: \(\(member_low = .*\) AND \(ROW\(activity_at, id\) < ROW\(`,
				uses("rooms_high_activity_idx") + `.*\n\s*Index Cond: \(\(member_high = .*\) AND \(ROW\(activity_at, id\) < ROW\(`,
				`Merge Append`,
				// the read position of each room of the page, by key
				`Index Scan using read_states_pkey on read_states .*\n\s*Index Cond: \(\(user_id = .*\) AND \(room_id = r\.id\)\)`,
				// the unread count: a range of the live index from the read position, bounded by the cap
				`Limit .*\n\s*->  Index Only Scan using messages_room_live_seq_idx on messages .*\n\s*Index Cond: \(\(room_id = p\.id\) AND \(seq > p\.read_seq\)\)`,
				// the last message: the live index's last entry
				`Limit .*\n\s*->  Index Scan Backward using messages_room_live_seq_idx on messages .*\n\s*Index Cond: \(room_id = p\.id\)`,
				// the channels: the user's guilds, then each guild's channels in activity order from the cursor
				uses("guild_members_user_idx") + `.*\n\s*Index Cond: \(user_id = `,
				uses("rooms_channel_activity_idx") + `.*\n\s*Index Cond: \(\(guild_id = gm\.guild_id\) AND \(ROW\(activity_at, id\) < ROW\(`,
			},
		},
		{
			name:  "Chats after a channel",
			query: chatsQuery,
			args:  []any{1, 60006, 200, persistence.UnreadCap},
			want: []string{
				`Index Scan using rooms_pkey on rooms .*\n\s*Index Cond: \(id = `,
				`Index Only Scan using guild_members_pkey on guild_members .*\n\s*Index Cond: \(\(guild_id = rooms\.guild_id\) AND \(user_id = `,
				uses("rooms_channel_activity_idx"),
			},
		},
		{
			name:  "MarkRead of a channel",
			query: markRead,
			args:  []any{1, 60006, 1},
			want: []string{`Index Scan using rooms_pkey on rooms`, `Index Only Scan using guild_members_pkey on guild_members`,
				`Conflict Arbiter Indexes: read_states_pkey`},
		},
		{
			name:  "Chats after a room",
			query: chatsQuery,
			args:  []any{1, 20100, 200, persistence.UnreadCap},
			want: []string{
				`Index Scan using rooms_pkey on rooms .*\n\s*Index Cond: \(id = `,
				uses("rooms_low_activity_idx"),
				uses("rooms_high_activity_idx"),
			},
		},
		{
			name:  "MarkRead",
			query: markRead,
			args:  []any{1, 10001, 10},
			want:  []string{`Index Scan using rooms_pkey on rooms`, `Conflict Arbiter Indexes: read_states_pkey`},
		},
		{
			name:  "WriteMessages: the room locks",
			query: lockRooms,
			args:  []any{[]int64{10001, 10002}},
			want:  []string{uses("rooms_pkey")},
		},
		{
			name:  "WriteMessages: sends",
			query: insertMessagesSeen,
			args:  sends.args(),
			want: []string{
				// the duplicate check and the lookup of duplicates
				`Index Only Scan using messages_author_room_nonce_key on messages x`,
				`Index Scan using messages_author_room_nonce_key on messages `,
				`Index Scan using rooms_pkey on rooms r `,               // the counters
				uses("rooms_pkey") + `.*\n\s*Index Cond: \(id = ANY \(`, // raising them
			},
		},
		{
			name:  "WriteMessages: edit",
			query: editMessage,
			args:  []any{"edited", time.Now(), 4001, 10001, 1},
			want: []string{`Index Scan using messages_pkey on messages`,
				`Update on rooms .*\n(.*\n)*?\s*->  Index Scan using rooms_pkey on rooms .*\n\s*Index Cond: \(id = `},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for mode, plan := range explain(t, s, tt.query, tt.args...) {
				require.NotContains(t, plan, "Seq Scan", "%s:\n%s", mode, plan)
				require.NotContains(t, plan, "hashed SubPlan", "%s:\n%s", mode, plan)
				require.NotContains(t, plan, "messages_room_created_idx", "%s:\n%s", mode, plan)
				for _, re := range tt.want {
					require.Regexp(t, re, plan, "%s:\n%s", mode, plan)
				}
				if tt.noSort {
					require.NotContains(t, plan, "Sort", "%s:\n%s", mode, plan)
				}
			}
		})
	}
}

// TestGuildPlans guards that the statements of GuildStore read indexes,
// never a whole table, in every plan: what a call costs is the guild's
// channels and members, or the user's guilds, which the limits bound.
func TestGuildPlans(t *testing.T) {
	s := planStore(t)
	uses := func(index string) string {
		return `(Index Scan|Index Only Scan|Index Scan Backward|Bitmap Index Scan) (using|on) ` + index + ` `
	}
	tests := []struct {
		name  string
		query string
		args  []any
		want  []string
	}{
		{"a guild", guildByID, []any{50001}, []string{uses("guilds_pkey")}},
		{"its channels", guildChannels, []any{50001}, []string{uses("rooms_guild_idx")}},
		{"a channel", channelByID, []any{60006}, []string{uses("rooms_pkey")}},
		{"a user's guilds", userGuilds, []any{1}, []string{uses("guild_members_user_idx"), uses("guilds_pkey")}},
		{"a user's channels", userChannels, []any{1}, []string{uses("guild_members_user_idx"),
			uses("rooms_guild_idx") + `.*\n\s*Index Cond: \(guild_id = ANY \(`}},
		{"membership", isMember, []any{50001, 1}, []string{uses("guild_members_pkey")}},
		{"the guild limit", guildCount, []any{1, 100}, []string{uses("guild_members_user_idx")}},
		{"the channel limit", channelCount, []any{50001, 50}, []string{uses("rooms_guild_idx")}},
		{"member ids", memberIDsQuery, []any{50001}, []string{uses("guild_members_pkey")}},
		{"a page of members", membersPage, []any{50001, 10, 100}, []string{uses("guild_members_pkey"),
			`Limit .*\n\s*->  Index Scan using users_pkey on users .*\n\s*Index Cond: \(id = `}},
		{"an invite", inviteByCode, []any{"i1"}, []string{uses("invites_pkey")}},
		{"a join", joinState, []any{50001, 1, "i1", time.Now()}, []string{uses("guild_members_pkey"), uses("invites_pkey")}},
		{"the guild lock", lockGuild, []any{50001}, []string{uses("guilds_pkey")}},
		{"the user lock", lockUser, []any{1}, []string{uses("users_pkey")}},
		{"leaving: read positions", forgetReads, []any{1, 50001}, []string{uses("rooms_guild_idx"), uses("read_states_pkey")}},
		{"deleting: the channel locks", lockChannels, []any{50001}, []string{uses("rooms_guild_idx")}},
		{"deleting: messages", deleteRoomsMessages, []any{[]int64{60005, 60006}}, []string{uses(`messages_room_\w+`) + `.*\n\s*Index Cond: \(room_id = ANY `}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for mode, plan := range explain(t, s, tt.query, tt.args...) {
				require.NotContains(t, plan, "Seq Scan", "%s:\n%s", mode, plan)
				require.NotContains(t, plan, "hashed SubPlan", "%s:\n%s", mode, plan)
				for _, re := range tt.want {
					require.Regexp(t, re, plan, "%s:\n%s", mode, plan)
				}
			}
		})
	}
}
