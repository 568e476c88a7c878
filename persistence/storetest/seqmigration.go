package storetest

import (
	"testing"
	"time"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/stretchr/testify/require"
)

// SeqMigrationBase is the time that SeqMigrationMessages count from.
var SeqMigrationBase = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// SeqMigrationMessage is a message that a store's TestMigrationNumbers
// writes with version 4's schema, which has no numbers, before it
// migrates: created Created seconds after SeqMigrationBase and, when
// Edited >= 0, edited Edited seconds after it; an empty Content is a
// delete, whose DeletedAt is its EditedAt, as WriteMessages stores it.
type SeqMigrationMessage struct {
	ID, Room, Author int64
	Content          string
	Created, Edited  int
}

// CreatedAt, EditedAt and DeletedAt are m's times as stored.
func (m SeqMigrationMessage) CreatedAt() time.Time {
	return SeqMigrationBase.Add(time.Duration(m.Created) * time.Second)
}

func (m SeqMigrationMessage) EditedAt() *time.Time {
	if m.Edited < 0 {
		return nil
	}
	t := SeqMigrationBase.Add(time.Duration(m.Edited) * time.Second)
	return &t
}

func (m SeqMigrationMessage) DeletedAt() *time.Time {
	if m.Content != "" {
		return nil
	}
	return m.EditedAt()
}

// SeqMigrationMessages are in rooms 100 (users 1 and 2) and 200 (1 and 3)
// of SeqMigrationSetup; room 300 (2 and 3) has none. In room 100, 5 and 7
// share a time (by id: 5 first), and so do the edit of 7 and the delete of
// 3 (by id: 3 first).
var SeqMigrationMessages = []SeqMigrationMessage{
	{ID: 10, Room: 100, Author: 1, Content: "ten edited", Created: 0, Edited: 5},  // 1, edit 7
	{ID: 7, Room: 100, Author: 1, Content: "seven edited", Created: 1, Edited: 4}, // 3, edit 6
	{ID: 5, Room: 100, Author: 2, Content: "five", Created: 1, Edited: -1},        // 2
	{ID: 3, Room: 100, Author: 2, Content: "", Created: 2, Edited: 4},             // 4, delete 5
	{ID: 20, Room: 200, Author: 3, Content: "twenty", Created: 3, Edited: -1},     // 1
}

// SeqMigrationSetup creates, in a store at version 4, the users and rooms
// of SeqMigrationMessages.
func SeqMigrationSetup(t *testing.T, s persistence.Store) {
	t.Helper()
	createUsers(t, s, 1, 2, 3)
	ensureDMRoom(t, s, 1, 2, 100)
	ensureDMRoom(t, s, 1, 3, 200)
	ensureDMRoom(t, s, 2, 3, 300)
}

// RequireSeqMigrated checks a store migrated from SeqMigrationMessages:
// each room's sends are numbered in (created_at, id) order, its edits
// after them in (edited_at, id) order, its counter and activity are those
// of its last change, and numbering goes on from there.
func RequireSeqMigrated(t *testing.T, s persistence.Store) {
	t.Helper()
	ctx := t.Context()
	want := map[int64][2]int64{10: {1, 7}, 5: {2, 0}, 7: {3, 6}, 3: {4, 5}, 20: {1, 0}}
	for _, m := range SeqMigrationMessages {
		got, err := s.MessageByID(ctx, m.Room, m.ID)
		require.NoError(t, err)
		require.Equal(t, persistence.Message{
			ID: m.ID, RoomID: m.Room, AuthorID: m.Author, Content: m.Content, CreatedAt: m.CreatedAt(),
			EditedAt: m.EditedAt(), DeletedAt: m.DeletedAt(), Seq: want[m.ID][0], EditSeq: want[m.ID][1],
		}, got)
	}
	for room, cur := range map[int64]int64{100: 7, 200: 1, 300: 0, 999: 0} {
		require.Equal(t, cur, current(t, s, room), "room %d", room)
	}
	got := chats(t, s, 1, 0, 10)
	require.Len(t, got, 2, "room 300 has no change and is not 1's")
	require.Equal(t, []int64{100, 200}, []int64{got[0].RoomID, got[1].RoomID})
	require.Equal(t, SeqMigrationBase.Add(5*time.Second), got[0].Activity, "the last edit")
	require.Equal(t, SeqMigrationBase.Add(3*time.Second), got[1].Activity, "the last send")
	require.Equal(t, 1, got[0].Unread, "5; 3 is deleted")
	require.EqualValues(t, 7, got[0].LastMessage.ID, "the newest not deleted: 3 is")
	got = chats(t, s, 3, 0, 10)
	require.Len(t, got, 1, "room 300 has no change")
	require.EqualValues(t, 200, got[0].RoomID)

	at := SeqMigrationBase.Add(time.Hour)
	results := write(t, s, send(100, 2, 11, "after", "", at), edit(100, 5, "five edited", at), send(300, 2, 30, "first", "", at))
	require.EqualValues(t, 8, results[0].Message.Seq)
	require.EqualValues(t, 9, results[1].Message.EditSeq)
	require.EqualValues(t, 1, results[2].Message.Seq)
	requireNumbers(t, s, 100, []int64{3, 5, 7, 10, 11}, true)
	msgs, cur, err := s.Changes(ctx, 100, 0, 10)
	require.NoError(t, err)
	require.EqualValues(t, 9, cur)
	var ids []int64
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	require.Equal(t, []int64{7, 10, 11, 5}, ids, "by latest change: 6, 7, 8, 9")
}

// SeqViolations counts, in SQL that both stores run, the rooms whose
// numbers are not as migration 5 leaves them: the sends and edits of a room
// use 1..rooms.seq once each, the sends in (created_at, id) order and
// before every edit, the edits in (edited_at, id) order. Each part is one
// pass (window functions, no self-join), so that it runs on many messages.
const SeqViolations = `SELECT
	(SELECT count(*) FROM (
		SELECT room_id, count(*) AS n, count(DISTINCT k) AS d, min(k) AS lo, max(k) AS hi,
			count(CASE WHEN edit THEN 1 END) AS edits, min(CASE WHEN edit THEN k END) AS first_edit
		FROM (
			SELECT room_id, seq AS k, false AS edit FROM messages
			UNION ALL
			SELECT room_id, edit_seq, true FROM messages WHERE edit_seq IS NOT NULL
		) AS x GROUP BY room_id
	) AS r JOIN rooms ON rooms.id = r.room_id
	WHERE n <> d OR lo <> 1 OR hi <> n OR rooms.seq <> n OR (edits > 0 AND first_edit <> n - edits + 1))
	+ (SELECT count(*) FROM (
		SELECT created_at, id, lag(created_at) OVER w AS prev_at, lag(id) OVER w AS prev_id
		FROM messages WINDOW w AS (PARTITION BY room_id ORDER BY seq)
	) AS x WHERE (prev_at, prev_id) > (created_at, id))
	+ (SELECT count(*) FROM (
		SELECT edited_at, id, lag(edited_at) OVER w AS prev_at, lag(id) OVER w AS prev_id
		FROM messages WHERE edit_seq IS NOT NULL WINDOW w AS (PARTITION BY room_id ORDER BY edit_seq)
	) AS x WHERE (prev_at, prev_id) > (edited_at, id))
	+ (SELECT count(*) FROM rooms WHERE seq = 0 AND EXISTS (SELECT 1 FROM messages WHERE room_id = rooms.id))`
