package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rewind-chat/rewind/persistence"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// kindDM is rooms.kind of a direct-message room.
const kindDM = 1

func (s *Store) EnsureDMRoom(ctx context.Context, a, b, newID int64) (int64, error) {
	if a == b {
		return 0, fmt.Errorf("sqlite: DM room of user %d with itself", a)
	}
	// Most rooms exist already: look on a reader before queueing for the writer.
	id, err := s.FindDMRoom(ctx, a, b)
	if !errors.Is(err, persistence.ErrNotFound) {
		return id, err
	}
	if _, err := s.write.ExecContext(ctx, `INSERT INTO rooms (id, kind, member_low, member_high, created_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, member_low, member_high) DO NOTHING`,
		newID, kindDM, min(a, b), max(a, b), micros(time.Now())); err != nil {
		return 0, translate(err)
	}
	// Ours or a concurrent caller's: both are committed now.
	return s.FindDMRoom(ctx, a, b)
}

// dmState is the state of the DM of users ?1 < ?2 for OpenDMs.
const dmState = `SELECT
	(SELECT count(*) FROM users WHERE id IN (?1, ?2)) = 2,
	EXISTS (SELECT 1 FROM friendships WHERE user_id = ?1 AND friend_id = ?2),
	coalesce((SELECT id FROM rooms WHERE kind = ?3 AND member_low = ?1 AND member_high = ?2), 0),
	coalesce((SELECT seq FROM rooms WHERE kind = ?3 AND member_low = ?1 AND member_high = ?2), 0)`

// OpenDMs reads every state in one transaction on a reader. Only when some
// friends have no room does it take the writer, and there it reads their
// state again before creating the room: meanwhile another caller (or
// process) may have created it, or the same pair came earlier in dms.
func (s *Store) OpenDMs(ctx context.Context, dms []persistence.DMOpen) ([]persistence.DMState, error) {
	for _, dm := range dms {
		if dm.Low >= dm.High {
			return nil, fmt.Errorf("sqlite: DM of users %d and %d: low is not below high", dm.Low, dm.High)
		}
	}
	states := make([]persistence.DMState, len(dms))
	// missing: friends without a room.
	missing := func(st persistence.DMState) bool { return st.RoomID == 0 && st.Members && st.Friends }
	var create bool
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, dmState)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i, dm := range dms {
			st, err := scanDMState(stmt.QueryRowContext(ctx, dm.Low, dm.High, kindDM))
			if err != nil {
				return err
			}
			states[i], create = st, create || missing(st)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !create {
		return states, nil
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		for i, dm := range dms {
			if !missing(states[i]) {
				continue
			}
			st, err := scanDMState(tx.QueryRowContext(ctx, dmState, dm.Low, dm.High, kindDM))
			if err != nil {
				return err
			}
			if missing(st) {
				if _, err := tx.ExecContext(ctx, `INSERT INTO rooms (id, kind, member_low, member_high, created_at)
					VALUES (?, ?, ?, ?, ?)`, dm.NewID, kindDM, dm.Low, dm.High, micros(time.Now())); err != nil {
					return translate(err)
				}
				st.RoomID = dm.NewID
			}
			states[i] = st
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return states, nil
}

func scanDMState(row scanner) (st persistence.DMState, err error) {
	err = row.Scan(&st.Members, &st.Friends, &st.RoomID, &st.Seq)
	return st, err
}

func (s *Store) FindDMRoom(ctx context.Context, a, b int64) (int64, error) {
	var id int64
	err := s.read.QueryRowContext(ctx,
		`SELECT id FROM rooms WHERE kind = ? AND member_low = ? AND member_high = ?`,
		kindDM, min(a, b), max(a, b)).Scan(&id)
	return id, translate(err)
}

const messageColumns = `id, room_id, author_id, content, coalesce(nonce, ''), created_at, edited_at, deleted_at,
	seq, coalesce(edit_seq, 0)`

// The statements of WriteMessages. The single write transaction at a time
// is the room lock of the persistence package comment: a batch reads a
// room's counter once (roomCounter), numbers the room's changes from it in
// Go, a number only for an op that changed a row, and writes the counter
// back once per room at the end (bumpRoom), all in that transaction.
const (
	roomCounter = `SELECT seq FROM rooms WHERE id = ?`
	// A nonce that the author used before in the room makes the insert do
	// nothing (migrations/0004_nonce_per_room.sql).
	insertMessage = `INSERT INTO messages (id, room_id, author_id, content, nonce, created_at, seq)
		VALUES (?, ?, ?, ?, nullif(?, ''), ?, ?)
		ON CONFLICT (author_id, room_id, nonce) WHERE nonce IS NOT NULL DO NOTHING`
	// An author, when given (?5 <> 0), must have written the message.
	editMessage = `UPDATE messages SET content = ?1, edited_at = ?2, deleted_at = CASE WHEN ?1 = '' THEN ?2 END, edit_seq = ?6
		WHERE id = ?3 AND room_id = ?4 AND deleted_at IS NULL AND (?5 = 0 OR author_id = ?5)
		RETURNING ` + messageColumns
	// bumpRoom records change ?2, at ?3, as room ?1's latest.
	bumpRoom = `UPDATE rooms SET seq = ?2, activity_at = ?3 WHERE id = ?1`
	// editable tells an edit by someone else, which changed nothing, from
	// one of a message that is not there or is deleted.
	editable       = `SELECT EXISTS (SELECT 1 FROM messages WHERE id = ? AND room_id = ? AND deleted_at IS NULL)`
	messageByNonce = `SELECT ` + messageColumns + ` FROM messages WHERE author_id = ? AND room_id = ? AND nonce = ?`
)

// counter is a room's counter during a batch: its last number, the time of
// that change, and whether the batch changed it.
type counter struct {
	seq     int64
	at      int64
	changed bool
}

// errBadText is the refusal of a string that PostgreSQL could not store
// either (protocol.md §2.3: stored strings are valid UTF-8 without U+0000).
var errBadText = fmt.Errorf("%w: sqlite: text that is not valid UTF-8 or holds U+0000", persistence.ErrRefused)

// storable reports whether s is valid UTF-8 without U+0000.
func storable(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// refusal reports whether err is SQLite refusing one statement's values (a
// constraint, a string too big): SQLite rolls back that statement only,
// and the transaction goes on.
func refusal(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	code := se.Code() & 0xff
	return code == sqlite3.SQLITE_CONSTRAINT || code == sqlite3.SQLITE_TOOBIG
}

// refused is the result of an op that SQLite refused with err.
func refused(err error) persistence.MessageResult {
	return persistence.MessageResult{Err: fmt.Errorf("%w: %w", persistence.ErrRefused, err)}
}

// WriteMessages runs one statement per op, prepared once per batch, in a
// single write transaction: SQLite has no network round trip to save, and
// the commit (one fsync) is what a batch shares. A statement that SQLite
// refuses is rolled back alone, so its op fails alone and takes no number;
// strings that the PostgreSQL store could not hold are refused before
// they reach SQLite.
func (s *Store) WriteMessages(ctx context.Context, ops []persistence.MessageOp) ([]persistence.MessageResult, error) {
	results := make([]persistence.MessageResult, len(ops))
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var stmts [4]*sql.Stmt
		for i, q := range []string{insertMessage, editMessage, roomCounter, bumpRoom} {
			st, err := tx.PrepareContext(ctx, q)
			if err != nil {
				return err
			}
			defer st.Close()
			stmts[i] = st
		}
		insert, edit, read, bump := stmts[0], stmts[1], stmts[2], stmts[3]
		counters := make(map[int64]*counter)
		// next is the number that room's next change takes.
		next := func(room int64) (*counter, error) {
			c := counters[room]
			if c == nil {
				c = new(counter)
				// No room: the op fails on the foreign key (a send) or
				// finds no message (an edit).
				if err := read.QueryRowContext(ctx, room).Scan(&c.seq); err != nil && !errors.Is(err, sql.ErrNoRows) {
					return nil, err
				}
				counters[room] = c
			}
			return c, nil
		}

		for i, op := range ops {
			m, r := op.Message, &results[i]
			switch op.Kind {
			case persistence.OpSend:
				if !storable(m.Content) || !storable(m.Nonce) {
					r.Err = errBadText
					continue
				}
				c, err := next(m.RoomID)
				if err != nil {
					return err
				}
				res, err := insert.ExecContext(ctx, m.ID, m.RoomID, m.AuthorID, m.Content, m.Nonce, micros(m.CreatedAt), c.seq+1)
				if refusal(err) {
					*r = refused(translate(err))
					continue
				}
				n, err := changed(res, err)
				if err != nil {
					return err
				}
				if r.Duplicate = n == 0; !r.Duplicate {
					c.seq, c.at, c.changed = c.seq+1, micros(m.CreatedAt), true
					r.Message = sent(m, c.seq)
				}
			case persistence.OpEdit:
				if m.EditedAt == nil {
					return fmt.Errorf("sqlite: edit of message %d without EditedAt", m.ID)
				}
				if !storable(m.Content) {
					r.Err = errBadText
					continue
				}
				c, err := next(m.RoomID)
				if err != nil {
					return err
				}
				r.Message, r.Err = scanMessage(edit.QueryRowContext(ctx, m.Content, micros(*m.EditedAt), m.ID, m.RoomID, m.AuthorID, c.seq+1))
				if refusal(r.Err) {
					*r = refused(r.Err)
					continue
				}
				if r.Err == nil {
					c.seq, c.at, c.changed = c.seq+1, micros(*m.EditedAt), true
					continue
				}
				if !errors.Is(r.Err, persistence.ErrNotFound) {
					return r.Err
				}
				if m.AuthorID != 0 {
					var ok bool
					if err := tx.QueryRowContext(ctx, editable, m.ID, m.RoomID).Scan(&ok); err != nil {
						return err
					}
					if ok {
						r.Err = persistence.ErrNotAuthor
					}
				}
			default:
				return fmt.Errorf("sqlite: message op of unknown kind %d", op.Kind)
			}
		}
		for room, c := range counters {
			if c.changed {
				if _, err := bump.ExecContext(ctx, room, c.seq, c.at); err != nil {
					return err
				}
			}
		}
		// Looked up last, so that a duplicate shows the edits of the batch.
		for i := range results {
			if r := &results[i]; r.Duplicate {
				m := ops[i].Message
				var err error
				if r.Message, err = scanMessage(tx.QueryRowContext(ctx, messageByNonce, m.AuthorID, m.RoomID, m.Nonce)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// sent is the row that OpSend stores from m as change seq.
func sent(m persistence.Message, seq int64) persistence.Message {
	return persistence.Message{
		ID:        m.ID,
		RoomID:    m.RoomID,
		AuthorID:  m.AuthorID,
		Content:   m.Content,
		Nonce:     m.Nonce,
		CreatedAt: fromMicros(micros(m.CreatedAt)),
		Seq:       seq,
	}
}

func (s *Store) MessageByID(ctx context.Context, roomID, id int64) (persistence.Message, error) {
	return scanMessage(s.read.QueryRowContext(ctx,
		`SELECT `+messageColumns+` FROM messages WHERE id = ? AND room_id = ?`, id, roomID))
}

// historyQuery reads messages_room_created_idx from the cursor on, the
// row-value comparison being a range of it (TestHistoryPlan).
const historyQuery = `SELECT ` + messageColumns + ` FROM messages
	WHERE room_id = ? AND (created_at, id) < (?, ?) AND deleted_at IS NULL
	ORDER BY created_at DESC, id DESC LIMIT ?`

func (s *Store) History(ctx context.Context, roomID int64, before persistence.Cursor, limit int) ([]persistence.Message, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("sqlite: history limit %d", limit)
	}
	bound, id := before.Bound()
	rows, err := s.read.QueryContext(ctx, historyQuery, roomID, micros(bound), id, limit)
	if err != nil {
		return nil, err
	}
	return scanMessages(rows)
}

// scanMessages scans and closes rows of messageColumns; nil when there is
// none.
func scanMessages(rows *sql.Rows) ([]persistence.Message, error) {
	defer rows.Close()
	var ms []persistence.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, rows.Err()
}

// changesQuery reads messages_room_change_key from since on, in the order
// of the messages' latest changes: a page costs its size (and the messages
// created after since and deleted, which it skips), not the room's
// (TestChatPlans).
const changesQuery = `SELECT ` + messageColumns + ` FROM messages
	WHERE room_id = ?1 AND coalesce(edit_seq, seq) > ?2 AND (seq <= ?2 OR deleted_at IS NULL)
	ORDER BY coalesce(edit_seq, seq) LIMIT ?3`

// roomSeq is the counter of a room, 0 when there is no such room.
const roomSeq = `SELECT coalesce((SELECT seq FROM rooms WHERE id = ?), 0)`

// Changes reads the counter and the page in one read transaction, one
// snapshot.
func (s *Store) Changes(ctx context.Context, roomID, since int64, limit int) ([]persistence.Message, int64, error) {
	if limit <= 0 {
		return nil, 0, fmt.Errorf("sqlite: changes limit %d", limit)
	}
	var current int64
	var ms []persistence.Message
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, roomSeq, roomID).Scan(&current); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, changesQuery, roomID, since, limit)
		if err != nil {
			return err
		}
		ms, err = scanMessages(rows)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return ms, current, nil
}

// kindDMText is kindDM in SQL text: a partial index serves a query only
// when the query names its condition's value, not a parameter.
const kindDMText = "1"

// chatsQuery is one page of Chats (?1 the user, ?2 and ?3 the cursor's
// activity_at and id, ?4 the limit, ?5 persistence.UnreadCap). The user's
// DM rooms are two ranges, by member_low and member_high, each read in
// order from the cursor on through rooms_low_activity_idx and
// rooms_high_activity_idx. The user's channels are a range per guild:
// guild_members_user_idx gives the user's guilds (at most the guild
// limit; CROSS JOIN makes SQLite start there), and
// rooms_channel_activity_idx each guild's channels from the
// cursor on (at most the channel limit); that branch alone is sorted, a
// sort of at most guilds × channels rows that the limits bound, not the
// tables (no index orders the channels of several guilds together short
// of a row per member and channel, written at every send). The merge of
// the three, which stops at ?4 rows, is the page. For each room of the
// page, read_states gives the read position by its key; the unread count
// reads messages_room_live_seq_idx from it, at most ?5 entries that are
// not the user's; the last message is that index's last entry
// (TestChatPlans).
const chatsQuery = `SELECT p.id, p.kind, coalesce(p.guild_id, 0), coalesce(p.member_low, 0), coalesce(p.member_high, 0),
		p.seq, coalesce(rs.read_seq, 0),
		(SELECT count(*) FROM (
			SELECT 1 FROM messages
			WHERE room_id = p.id AND seq > coalesce(rs.read_seq, 0) AND deleted_at IS NULL AND author_id <> ?1
			LIMIT ?5)),
		p.activity_at,
		l.id, l.room_id, l.author_id, l.content, coalesce(l.nonce, ''), l.created_at, l.edited_at, l.deleted_at,
		l.seq, coalesce(l.edit_seq, 0)
	FROM (
		SELECT id, kind, guild_id, member_low, member_high, seq, activity_at FROM rooms
		WHERE member_low = ?1 AND kind = ` + kindDMText + ` AND seq > 0 AND (activity_at, id) < (?2, ?3)
		UNION ALL
		SELECT id, kind, guild_id, member_low, member_high, seq, activity_at FROM rooms
		WHERE member_high = ?1 AND kind = ` + kindDMText + ` AND seq > 0 AND (activity_at, id) < (?2, ?3)
		UNION ALL
		SELECT * FROM (
			SELECT r.id, r.kind, r.guild_id, r.member_low, r.member_high, r.seq, r.activity_at
			FROM guild_members gm CROSS JOIN rooms r
			WHERE gm.user_id = ?1 AND r.guild_id = gm.guild_id AND r.kind = ` + kindChannelText + ` AND r.seq > 0 AND (r.activity_at, r.id) < (?2, ?3)
			ORDER BY r.activity_at DESC, r.id DESC LIMIT ?4)
		ORDER BY activity_at DESC, id DESC LIMIT ?4
	) AS p
	LEFT JOIN read_states rs ON rs.user_id = ?1 AND rs.room_id = p.id
	LEFT JOIN messages l ON l.id = (
		SELECT id FROM messages WHERE room_id = p.id AND deleted_at IS NULL ORDER BY seq DESC LIMIT 1)
	ORDER BY p.activity_at DESC, p.id DESC`

// kindChannelText is persistence.KindChannel in SQL text, as kindDMText.
const kindChannelText = "2"

// Chats reads the cursor and the page in one read transaction.
func (s *Store) Chats(ctx context.Context, userID, before int64, limit int) ([]persistence.ChatSummary, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("sqlite: chats limit %d", limit)
	}
	var chats []persistence.ChatSummary
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		at, id := int64(math.MaxInt64), int64(math.MaxInt64)
		if before != 0 {
			var activity sql.NullInt64
			err := tx.QueryRowContext(ctx, memberRoom, before, userID).Scan(&activity, new(int64))
			if err != nil {
				return translate(err)
			}
			if !activity.Valid { // a room without a change: listed nowhere, nothing after it
				return nil
			}
			at, id = activity.Int64, before
		}
		rows, err := tx.QueryContext(ctx, chatsQuery, userID, at, id, limit, persistence.UnreadCap)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c persistence.ChatSummary
			var activity int64
			var l struct {
				id, room, author, created, seq, editSeq sql.NullInt64
				content, nonce                          sql.NullString
				edited, deleted                         sql.NullInt64
			}
			if err := rows.Scan(&c.RoomID, &c.Kind, &c.GuildID, &c.Low, &c.High, &c.Seq, &c.ReadSeq, &c.Unread, &activity,
				&l.id, &l.room, &l.author, &l.content, &l.nonce, &l.created, &l.edited, &l.deleted, &l.seq, &l.editSeq); err != nil {
				return err
			}
			c.Activity = fromMicros(activity)
			if l.id.Valid {
				c.LastMessage = &persistence.Message{
					ID: l.id.Int64, RoomID: l.room.Int64, AuthorID: l.author.Int64, Content: l.content.String, Nonce: l.nonce.String,
					CreatedAt: fromMicros(l.created.Int64), EditedAt: fromNullMicros(l.edited), DeletedAt: fromNullMicros(l.deleted),
					Seq: l.seq.Int64, EditSeq: l.editSeq.Int64,
				}
			}
			chats = append(chats, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return chats, nil
}

// The statements of Chats and MarkRead besides chatsQuery.
const (
	// memberRoom is the activity and counter of room ?1 if user ?2 is a
	// member: of the DM, or of the channel's guild.
	memberRoom = `SELECT activity_at, seq FROM rooms WHERE id = ?1 AND CASE kind
		WHEN ` + kindDMText + ` THEN ?2 IN (member_low, member_high)
		WHEN ` + kindChannelText + ` THEN EXISTS (SELECT 1 FROM guild_members WHERE guild_id = rooms.guild_id AND user_id = ?2)
		ELSE 0 END`
	// moveRead moves user ?1's read position in room ?2 forward to ?3 and
	// returns it; no row when it was there already or beyond.
	moveRead = `INSERT INTO read_states (user_id, room_id, read_seq) VALUES (?1, ?2, ?3)
		ON CONFLICT (user_id, room_id) DO UPDATE SET read_seq = excluded.read_seq WHERE read_seq < excluded.read_seq
		RETURNING read_seq`
	readSeq = `SELECT coalesce((SELECT read_seq FROM read_states WHERE user_id = ? AND room_id = ?), 0)`
)

// MarkRead runs on the writer, whose one transaction at a time orders
// concurrent calls.
func (s *Store) MarkRead(ctx context.Context, userID, roomID, seq int64) (int64, bool, error) {
	var read int64
	var moved bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var current int64
		err := tx.QueryRowContext(ctx, memberRoom, roomID, userID).Scan(new(sql.NullInt64), &current)
		if err != nil {
			return translate(err)
		}
		if seq > current {
			return persistence.ErrSeqAhead
		}
		if seq > 0 {
			err := tx.QueryRowContext(ctx, moveRead, userID, roomID, seq).Scan(&read)
			if err == nil {
				moved = true
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		return tx.QueryRowContext(ctx, readSeq, userID, roomID).Scan(&read)
	})
	if err != nil {
		return 0, false, err
	}
	return read, moved, nil
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

func scanMessage(row scanner) (persistence.Message, error) {
	var m persistence.Message
	var created int64
	var edited, deleted sql.NullInt64
	if err := row.Scan(&m.ID, &m.RoomID, &m.AuthorID, &m.Content, &m.Nonce, &created, &edited, &deleted,
		&m.Seq, &m.EditSeq); err != nil {
		return persistence.Message{}, translate(err)
	}
	m.CreatedAt = fromMicros(created)
	m.EditedAt, m.DeletedAt = fromNullMicros(edited), fromNullMicros(deleted)
	return m, nil
}

func fromNullMicros(us sql.NullInt64) *time.Time {
	if !us.Valid {
		return nil
	}
	t := fromMicros(us.Int64)
	return &t
}

// The lists of FriendLists, each a SELECT of (list, uid, since) for lists.
const (
	incomingPart = `SELECT 0 AS list, from_id AS uid, created_at AS since FROM friend_requests WHERE to_id = ?1`
	outgoingPart = `SELECT 1 AS list, to_id AS uid, created_at AS since FROM friend_requests WHERE from_id = ?1`
	friendsPart  = `SELECT 2 AS list, friend_id AS uid, created_at AS since FROM friendships WHERE user_id = ?1`
)

func (s *Store) FriendLists(ctx context.Context, userID int64) (incoming, outgoing, friends []persistence.User, err error) {
	// One statement, so that the three lists are one snapshot.
	l, err := s.lists(ctx, userID, incomingPart+` UNION ALL `+outgoingPart+` UNION ALL `+friendsPart)
	return l[0], l[1], l[2], err
}

func (s *Store) Friends(ctx context.Context, userID int64) ([]persistence.User, error) {
	l, err := s.lists(ctx, userID, friendsPart)
	return l[2], err
}

// lists returns the users that parts select for userID by list, each list
// oldest first.
func (s *Store) lists(ctx context.Context, userID int64, parts string) (lists [3][]persistence.User, err error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+userColumns+`, l.list FROM (`+parts+`) AS l
		JOIN users ON users.id = l.uid ORDER BY l.list, l.since, users.id`, userID)
	if err != nil {
		return lists, err
	}
	defer rows.Close()
	for rows.Next() {
		var list int
		u, err := scanUser(rows, &list)
		if err != nil {
			return lists, err
		}
		lists[list] = append(lists[list], u)
	}
	return lists, rows.Err()
}

func (s *Store) AreFriends(ctx context.Context, a, b int64) (bool, error) {
	return areFriends(ctx, s.read, a, b)
}

func areFriends(ctx context.Context, db querier, a, b int64) (bool, error) {
	var ok bool
	err := db.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM friendships WHERE user_id = ? AND friend_id = ?)`, a, b).Scan(&ok)
	return ok, err
}

func (s *Store) RequestFriend(ctx context.Context, from, to int64, now time.Time) (persistence.FriendResult, error) {
	if from == to {
		return 0, fmt.Errorf("sqlite: friend request of user %d to itself", from)
	}
	var result persistence.FriendResult
	err := s.friendTx(ctx, from, to, func(tx *sql.Tx) error {
		friends, err := areFriends(ctx, tx, from, to)
		if err != nil {
			return err
		}
		if friends {
			return persistence.ErrAlreadyFriends
		}
		// If to asked first, that request makes them friends.
		err = befriend(ctx, tx, to, from, now)
		if !errors.Is(err, persistence.ErrNotFound) {
			result = persistence.FriendAccepted
			return err
		}
		n, err := changed(tx.ExecContext(ctx, `INSERT INTO friend_requests (from_id, to_id, created_at) VALUES (?, ?, ?)
			ON CONFLICT DO NOTHING`, from, to, micros(now)))
		result = persistence.FriendRequested
		if n == 0 {
			result = persistence.FriendRequestRepeated
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	return result, nil
}

func (s *Store) AcceptFriend(ctx context.Context, me, from int64, now time.Time) error {
	return s.friendTx(ctx, me, from, func(tx *sql.Tx) error { return befriend(ctx, tx, from, me, now) })
}

// friendTx runs fn in a write transaction, after checking that users a and
// b exist (ErrNotFound otherwise). The single writer serializes friend
// changes, so two users asking each other at once meet in one friendship.
func (s *Store) friendTx(ctx context.Context, a, b int64, fn func(*sql.Tx) error) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE id IN (?, ?)`, a, b).Scan(&n); err != nil {
			return err
		}
		if n < 2 {
			return persistence.ErrNotFound
		}
		return fn(tx)
	})
}

// befriend turns from's request to to into a friendship; ErrNotFound when
// there is no such request.
func befriend(ctx context.Context, tx *sql.Tx, from, to int64, now time.Time) error {
	err := mustChange(changed(tx.ExecContext(ctx, `DELETE FROM friend_requests WHERE from_id = ? AND to_id = ?`, from, to)))
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO friendships (user_id, friend_id, created_at) VALUES (?1, ?2, ?3), (?2, ?1, ?3)`,
		from, to, micros(now))
	return err
}

func (s *Store) RemoveFriendRequest(ctx context.Context, me, other int64) error {
	// One statement for either direction: RequestFriend never lets both
	// exist (a crossing request makes a friendship).
	return mustChange(changed(s.write.ExecContext(ctx, `DELETE FROM friend_requests
		WHERE (from_id = ?1 AND to_id = ?2) OR (from_id = ?2 AND to_id = ?1)`, other, me)))
}

func (s *Store) DeleteFriend(ctx context.Context, a, b int64) error {
	return mustChange(changed(s.write.ExecContext(ctx, `DELETE FROM friendships
		WHERE (user_id = ?1 AND friend_id = ?2) OR (user_id = ?2 AND friend_id = ?1)`, a, b)))
}

func (s *Store) SetProfile(ctx context.Context, userID int64, profile *string) (persistence.User, error) {
	return scanUser(s.write.QueryRowContext(ctx,
		`UPDATE users SET profile = ? WHERE id = ? RETURNING `+userColumns, profile, userID))
}

// changed returns how many rows the statement that answered res and err
// changed.
func changed(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, translate(err)
	}
	return res.RowsAffected()
}

// mustChange turns "no row changed" into ErrNotFound.
func mustChange(n int64, err error) error {
	if err == nil && n == 0 {
		return persistence.ErrNotFound
	}
	return err
}
