-- Chat sequence numbers (protocol.md §4.1, the persistence package
-- comment). rooms.seq is the number of the room's latest change, which
-- WriteMessages raises in the transaction of the change; activity_at is the
-- time of that change. messages.seq is the change that created the message
-- (a default is needed to add a NOT NULL column; WriteMessages always sets
-- it, and the unique index below refuses a second unedited 0), edit_seq its latest
-- edit or delete (NULL: never edited).
ALTER TABLE rooms ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN activity_at INTEGER;
ALTER TABLE messages ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN edit_seq INTEGER;

-- Existing messages, in one statement: the sends of each room in
-- (created_at, id) order, then the edited (and deleted) ones in
-- (edited_at, id) order after all of the room's sends, so that the room's
-- numbers run 1..n without a gap.
UPDATE messages SET seq = n.seq, edit_seq = n.edit_seq
FROM (
    SELECT id,
        row_number() OVER (PARTITION BY room_id ORDER BY created_at, id) AS seq,
        CASE WHEN edited_at IS NOT NULL THEN
            count(*) OVER (PARTITION BY room_id)
            + row_number() OVER (PARTITION BY room_id, edited_at IS NOT NULL ORDER BY edited_at, id)
        END AS edit_seq
    FROM messages
) AS n
WHERE messages.id = n.id;

-- Each room's counter is its highest number; its activity the time of that
-- change (the last edit if any, else the last send).
UPDATE rooms SET seq = n.seq, activity_at = n.activity_at
FROM (
    SELECT room_id, max(coalesce(edit_seq, seq)) AS seq, coalesce(max(edited_at), max(created_at)) AS activity_at
    FROM messages GROUP BY room_id
) AS n
WHERE rooms.id = n.room_id;

-- The database's guarantee that no number is taken twice: each message's
-- latest change (its send, or its last edit or delete) has a number of
-- its own in its room, so two writers that took one number (two sends, an
-- edit and a send, two edits) cannot both commit. (The number of a change
-- that a later edit replaced is no longer held; only a counter that went
-- back could take it again, which no writer does. A second index on seq
-- alone would cost every send another index entry for that.) It is also
-- the order of Changes.
CREATE UNIQUE INDEX messages_room_change_key ON messages (room_id, coalesce(edit_seq, seq));
-- The live messages of a room by number: the unread count of Chats reads a
-- range of it from the read position, at most persistence.UnreadCap
-- entries, and the last message is its last entry. author_id tells mine
-- apart and deleted_at (always NULL here) is there for SQLite to see that
-- the index covers those queries, which then never read the table.
CREATE INDEX messages_room_live_seq_idx ON messages (room_id, seq, author_id, deleted_at) WHERE deleted_at IS NULL;

-- Chats: a user's DM rooms by recent activity, one index per member
-- column, each read in order from the cursor on. Rooms without a change
-- are not listed, nor indexed.
CREATE INDEX rooms_low_activity_idx ON rooms (member_low, activity_at DESC, id DESC) WHERE kind = 1 AND seq > 0;
CREATE INDEX rooms_high_activity_idx ON rooms (member_high, activity_at DESC, id DESC) WHERE kind = 1 AND seq > 0;

-- protocol.md §4.2: a user's read position in a room, forward only.
CREATE TABLE read_states (
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id  INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    read_seq INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id)
) STRICT, WITHOUT ROWID;
