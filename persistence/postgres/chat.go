package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rewind-chat/rewind/persistence"
)

// kindDM is rooms.kind of a direct-message room.
const kindDM = 1

func (s *Store) EnsureDMRoom(ctx context.Context, a, b, newID int64) (int64, error) {
	if a == b {
		return 0, fmt.Errorf("postgres: DM room of user %d with itself", a)
	}
	// Most rooms exist already: a read is cheaper than an insert that conflicts.
	id, err := s.FindDMRoom(ctx, a, b)
	if !errors.Is(err, persistence.ErrNotFound) {
		return id, err
	}
	// A concurrent insert of the same pair makes this one wait for its
	// commit and do nothing; the SELECT after it, a new snapshot, sees it.
	// (One statement could not: its snapshot predates the other commit.)
	if _, err := s.pool.Exec(ctx, `INSERT INTO rooms (id, kind, member_low, member_high, created_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, member_low, member_high) DO NOTHING`,
		newID, kindDM, min(a, b), max(a, b), ts(time.Now())); err != nil {
		return 0, translate(err)
	}
	return s.FindDMRoom(ctx, a, b)
}

func (s *Store) FindDMRoom(ctx context.Context, a, b int64) (int64, error) {
	var id int64
	err := s.pool.QueryRow(ctx,
		`SELECT id FROM rooms WHERE kind = $1 AND member_low = $2 AND member_high = $3`,
		kindDM, min(a, b), max(a, b)).Scan(&id)
	return id, translate(err)
}

const messageColumns = `id, room_id, author_id, content, coalesce(nonce, ''), created_at, edited_at, deleted_at`

const (
	// insertMessages inserts a run of sends from one array per column; a
	// nonce that the author used before skips its row. Its text does not
	// depend on the number of rows, so it stays one prepared statement.
	insertMessages = `INSERT INTO messages (id, room_id, author_id, content, nonce, created_at)
		SELECT id, room_id, author_id, content, nullif(nonce, ''), created_at
		FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[])
			AS m (id, room_id, author_id, content, nonce, created_at)
		ON CONFLICT (author_id, nonce) WHERE nonce IS NOT NULL DO NOTHING
		RETURNING id`
	editMessage = `UPDATE messages
		SET content = $1, edited_at = $2, deleted_at = CASE WHEN $1 = '' THEN $2::timestamptz END
		WHERE id = $3 AND room_id = $4 AND deleted_at IS NULL
		RETURNING ` + messageColumns
	messageByNonce = `SELECT ` + messageColumns + ` FROM messages WHERE author_id = $1 AND nonce = $2`
)

// WriteMessages sends BEGIN and all ops in one pipelined batch, one round
// trip: each run of consecutive sends is one multi-row insert (nearly twice
// as fast as a statement per row), each edit one UPDATE, so that the ops
// apply in order. COMMIT is the second round trip. Sends that inserted
// nothing are looked up before it, in a round trip that only duplicates
// cost; in the same transaction, so that an error there applies nothing.
func (s *Store) WriteMessages(ctx context.Context, ops []persistence.MessageOp) ([]persistence.MessageResult, error) {
	results := make([]persistence.MessageResult, len(ops))
	inserted := make(map[int64]bool, len(ops))
	// The first send of an author and nonce in ops; a later one is its
	// duplicate without asking the database.
	type nonceKey struct {
		author int64
		nonce  string
	}
	first := make(map[nonceKey]bool)

	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	var run sendRun
	for i, op := range ops {
		m, r := op.Message, &results[i]
		switch op.Kind {
		case persistence.OpSend:
			if k := (nonceKey{m.AuthorID, m.Nonce}); m.Nonce != "" {
				if first[k] {
					r.Duplicate = true
					continue
				}
				first[k] = true
			}
			run.add(m)
		case persistence.OpEdit:
			if m.EditedAt == nil {
				return nil, fmt.Errorf("postgres: edit of message %d without EditedAt", m.ID)
			}
			run.queue(b, inserted)
			b.Queue(editMessage, m.Content, ts(*m.EditedAt), m.ID, m.RoomID).QueryRow(func(row pgx.Row) error {
				r.Message, r.Err = scanMessage(row)
				if errors.Is(r.Err, persistence.ErrNotFound) {
					return nil
				}
				return r.Err
			})
		default:
			return nil, fmt.Errorf("postgres: message op of unknown kind %d", op.Kind)
		}
	}
	run.queue(b, inserted)

	br := s.pool.SendBatch(ctx, b)
	tx := br.Tx()
	defer tx.Rollback(ctx)
	if err := br.Close(); err != nil {
		return nil, translate(err)
	}

	// Looked up last, so that a duplicate shows the edits of the batch.
	dups := &pgx.Batch{}
	for i, op := range ops {
		m, r := op.Message, &results[i]
		switch {
		case op.Kind != persistence.OpSend:
		case !r.Duplicate && inserted[m.ID]:
			r.Message = sent(m)
		default:
			r.Duplicate = true
			dups.Queue(messageByNonce, m.AuthorID, m.Nonce).QueryRow(func(row pgx.Row) (err error) {
				r.Message, err = scanMessage(row)
				return err
			})
		}
	}
	if dups.Len() > 0 {
		if err := tx.SendBatch(ctx, dups).Close(); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	return results, nil
}

// sendRun is a run of sends as the column arrays of insertMessages.
type sendRun struct {
	ids, rooms, authors []int64
	contents, nonces    []string
	times               []time.Time
}

func (r *sendRun) add(m persistence.Message) {
	r.ids = append(r.ids, m.ID)
	r.rooms = append(r.rooms, m.RoomID)
	r.authors = append(r.authors, m.AuthorID)
	r.contents = append(r.contents, m.Content)
	r.nonces = append(r.nonces, m.Nonce)
	r.times = append(r.times, ts(m.CreatedAt))
}

// queue queues the insert of the run, if any, recording the ids it
// inserted, and empties the run.
func (r *sendRun) queue(b *pgx.Batch, inserted map[int64]bool) {
	if len(r.ids) == 0 {
		return
	}
	b.Queue(insertMessages, r.ids, r.rooms, r.authors, r.contents, r.nonces, r.times).Query(func(rows pgx.Rows) error {
		var id int64
		_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
			inserted[id] = true
			return nil
		})
		return err
	})
	*r = sendRun{}
}

// sent is the row that OpSend stores from m.
func sent(m persistence.Message) persistence.Message {
	return persistence.Message{
		ID:        m.ID,
		RoomID:    m.RoomID,
		AuthorID:  m.AuthorID,
		Content:   m.Content,
		Nonce:     m.Nonce,
		CreatedAt: ts(m.CreatedAt),
	}
}

func (s *Store) MessageByID(ctx context.Context, roomID, id int64) (persistence.Message, error) {
	return scanMessage(s.pool.QueryRow(ctx,
		`SELECT `+messageColumns+` FROM messages WHERE id = $1 AND room_id = $2`, id, roomID))
}

// historyQuery reads messages_room_created_idx from the cursor on, the
// row comparison being an index condition (TestHistoryPlan).
const historyQuery = `SELECT ` + messageColumns + ` FROM messages
	WHERE room_id = $1 AND (created_at, id) < ($2::timestamptz, $3::bigint) AND deleted_at IS NULL
	ORDER BY created_at DESC, id DESC LIMIT $4`

func (s *Store) History(ctx context.Context, roomID int64, before persistence.Cursor, limit int) ([]persistence.Message, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: history limit %d", limit)
	}
	bound, id := before.Bound()
	rows, err := s.pool.Query(ctx, historyQuery, roomID, bound, id, limit)
	if err != nil {
		return nil, err
	}
	var ms []persistence.Message // nil, not empty, when there is none, as in the SQLite store
	return pgx.AppendRows(ms, rows, func(row pgx.CollectableRow) (persistence.Message, error) { return scanMessage(row) })
}

func scanMessage(row pgx.Row) (persistence.Message, error) {
	var m persistence.Message
	err := row.Scan(&m.ID, &m.RoomID, &m.AuthorID, &m.Content, &m.Nonce, &m.CreatedAt, &m.EditedAt, &m.DeletedAt)
	if err != nil {
		return persistence.Message{}, translate(err)
	}
	m.CreatedAt = m.CreatedAt.UTC()
	m.EditedAt, m.DeletedAt = utc(m.EditedAt), utc(m.DeletedAt)
	return m, nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// The lists of FriendLists, each a SELECT of (list, uid, since) for lists.
const (
	incomingPart = `SELECT 0 AS list, from_id AS uid, created_at AS since FROM friend_requests WHERE to_id = $1`
	outgoingPart = `SELECT 1 AS list, to_id AS uid, created_at AS since FROM friend_requests WHERE from_id = $1`
	friendsPart  = `SELECT 2 AS list, friend_id AS uid, created_at AS since FROM friendships WHERE user_id = $1`
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
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+`, l.list FROM (`+parts+`) AS l
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
	return areFriends(ctx, s.pool, a, b)
}

func areFriends(ctx context.Context, db querier, a, b int64) (bool, error) {
	var ok bool
	err := db.QueryRow(ctx,
		`SELECT EXISTS (SELECT 1 FROM friendships WHERE user_id = $1 AND friend_id = $2)`, a, b).Scan(&ok)
	return ok, err
}

func (s *Store) RequestFriend(ctx context.Context, from, to int64, now time.Time) (persistence.FriendResult, error) {
	if from == to {
		return 0, fmt.Errorf("postgres: friend request of user %d to itself", from)
	}
	var result persistence.FriendResult
	err := s.friendTx(ctx, from, to, func(tx pgx.Tx) error {
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
		tag, err := tx.Exec(ctx, `INSERT INTO friend_requests (from_id, to_id, created_at) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, from, to, ts(now))
		result = persistence.FriendRequested
		if tag.RowsAffected() == 0 {
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
	return s.friendTx(ctx, me, from, func(tx pgx.Tx) error { return befriend(ctx, tx, from, me, now) })
}

// friendTx runs fn in a transaction that first locks the rows of users a
// and b (ErrNotFound when either is missing), in id order so that two such
// transactions cannot deadlock. Without the locks, A asking B while B asks
// A would both see no request from the other and leave two requests instead
// of a friendship. FOR NO KEY UPDATE conflicts with itself but not with the
// KEY SHARE locks of foreign key checks: the users' messages are inserted
// meanwhile.
func (s *Store) friendTx(ctx context.Context, a, b int64, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `SELECT id FROM users WHERE id IN ($1, $2) ORDER BY id FOR NO KEY UPDATE`, a, b)
		if err != nil {
			return err
		}
		if tag.RowsAffected() < 2 {
			return persistence.ErrNotFound
		}
		return fn(tx)
	})
}

// befriend turns from's request to to into a friendship; ErrNotFound when
// there is no such request.
func befriend(ctx context.Context, tx pgx.Tx, from, to int64, now time.Time) error {
	err := mustChange(tx.Exec(ctx, `DELETE FROM friend_requests WHERE from_id = $1 AND to_id = $2`, from, to))
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO friendships (user_id, friend_id, created_at) VALUES ($1, $2, $3), ($2, $1, $3)`,
		from, to, ts(now))
	return err
}

func (s *Store) RemoveFriendRequest(ctx context.Context, me, other int64) error {
	// One statement for either direction: RequestFriend never lets both
	// exist (a crossing request makes a friendship).
	return mustChange(s.pool.Exec(ctx, `DELETE FROM friend_requests
		WHERE (from_id = $1 AND to_id = $2) OR (from_id = $2 AND to_id = $1)`, other, me))
}

func (s *Store) DeleteFriend(ctx context.Context, a, b int64) error {
	return mustChange(s.pool.Exec(ctx, `DELETE FROM friendships
		WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)`, a, b))
}

func (s *Store) SetProfile(ctx context.Context, userID int64, profile *string) (persistence.User, error) {
	return s.user(ctx, `UPDATE users SET profile = $2 WHERE id = $1 RETURNING `+userColumns, userID, profile)
}

// mustChange turns "no row changed" into ErrNotFound.
func mustChange(tag pgconn.CommandTag, err error) error {
	if err == nil && tag.RowsAffected() == 0 {
		return persistence.ErrNotFound
	}
	return err
}
