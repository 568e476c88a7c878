package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

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

// openDMs answers OpenDMs in one statement. found reads the state of each
// pair with scalar subqueries, which run per pair through the keys (EXISTS
// would let the planner hash a whole table instead, as TestOpenDMsPlan saw
// for 100 pairs of 20,000 users). created inserts the rooms of friends that
// have none, once per pair (DISTINCT ON: one statement cannot affect a row
// twice) and in (low, high) order, so that two calls creating the same rooms
// cannot deadlock. A room that a concurrent transaction inserted is
// invisible to the snapshot of found; the insert waits for that transaction
// and conflicts with its row, which DO UPDATE (unlike DO NOTHING) locks and
// returns although the snapshot cannot see it. Only missing rooms reach the
// insert, so no existing room is rewritten but in that race.
const openDMs = `WITH input AS (
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS i (low, high, new_id, ord)
	), found AS (
		SELECT i.*,
			(SELECT count(*) FROM users WHERE id IN (i.low, i.high)) = 2 AS members,
			coalesce((SELECT true FROM friendships WHERE user_id = i.low AND friend_id = i.high), false) AS friends,
			(SELECT id FROM rooms WHERE kind = $4::smallint AND member_low = i.low AND member_high = i.high) AS room_id
		FROM input i
	), created AS (
		INSERT INTO rooms (id, kind, member_low, member_high, created_at)
		SELECT DISTINCT ON (low, high) new_id, $4::smallint, low, high, $5::timestamptz FROM found
		WHERE room_id IS NULL AND members AND friends
		ORDER BY low, high, ord
		ON CONFLICT (kind, member_low, member_high) DO UPDATE SET kind = EXCLUDED.kind
		RETURNING id, member_low, member_high
	)
	SELECT f.members, f.friends, coalesce(f.room_id, c.id, 0)
	FROM found f LEFT JOIN created c ON c.member_low = f.low AND c.member_high = f.high
	ORDER BY f.ord`

func (s *Store) OpenDMs(ctx context.Context, dms []persistence.DMOpen) ([]persistence.DMState, error) {
	lows, highs, newIDs := make([]int64, len(dms)), make([]int64, len(dms)), make([]int64, len(dms))
	for i, dm := range dms {
		if dm.Low >= dm.High {
			return nil, fmt.Errorf("postgres: DM of users %d and %d: low is not below high", dm.Low, dm.High)
		}
		lows[i], highs[i], newIDs[i] = dm.Low, dm.High, dm.NewID
	}
	states := make([]persistence.DMState, 0, len(dms))
	if len(dms) == 0 {
		return states, nil
	}
	// For a few pairs the custom plan looks cheaper than the generic one
	// (planned for 10 pairs), so PostgreSQL would plan the statement anew at
	// every call: here 170 µs of a 300 µs call. SET LOCAL needs a
	// transaction; all of it is one round trip.
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	b.Queue(`SET LOCAL plan_cache_mode = force_generic_plan`)
	b.Queue(openDMs, lows, highs, newIDs, kindDM, ts(time.Now())).Query(func(rows pgx.Rows) error {
		var st persistence.DMState
		_, err := pgx.ForEachRow(rows, []any{&st.Members, &st.Friends, &st.RoomID}, func() error {
			states = append(states, st)
			return nil
		})
		return err
	})
	b.Queue(`COMMIT`)
	br := s.pool.SendBatch(ctx, b)
	defer br.Tx().Rollback(ctx) // after the COMMIT, only releases the connection
	if err := br.Close(); err != nil {
		return nil, translate(err)
	}
	return states, nil
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
	// nonce that the author used before in the room skips its row
	// (migrations/0004_nonce_per_room.sql). It returns the ids it inserted.
	// Its text does not depend on the number of rows, so it stays one
	// prepared statement.
	insertMessages = `INSERT INTO messages (id, room_id, author_id, content, nonce, created_at)
		SELECT id, room_id, author_id, content, nullif(nonce, ''), created_at
		FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[])
			AS m (id, room_id, author_id, content, nonce, created_at)
		ON CONFLICT (author_id, room_id, nonce) WHERE nonce IS NOT NULL DO NOTHING
		RETURNING id`
	// insertMessagesSeen inserts as insertMessages does and returns, for
	// each send that inserted nothing, the stored row with its author, room
	// and nonce, then the send's id. Skipped is materialized so that only
	// those sends reach the lookup. A stored row that the statement's
	// snapshot cannot see (a concurrent transaction inserted it) raises
	// nonceUnseen instead (the CASE makes sure that nothing else does).
	insertMessagesSeen = `WITH m AS (
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[])
				AS m (id, room_id, author_id, content, nonce, created_at)
		), inserted AS (
			INSERT INTO messages (id, room_id, author_id, content, nonce, created_at)
			SELECT id, room_id, author_id, content, nullif(nonce, ''), created_at FROM m
			ON CONFLICT (author_id, room_id, nonce) WHERE nonce IS NOT NULL DO NOTHING
			RETURNING id
		), skipped AS MATERIALIZED (
			SELECT id, room_id, author_id, nonce FROM m WHERE nonce <> '' AND id NOT IN (SELECT id FROM inserted)
		)
		SELECT s.*, k.id FROM skipped k LEFT JOIN LATERAL (
			SELECT ` + messageColumns + ` FROM messages WHERE author_id = k.author_id AND room_id = k.room_id AND nonce = k.nonce
		) AS s ON true
		WHERE CASE WHEN s.id IS NULL THEN rewind_nonce_unseen(k.author_id, k.nonce) ELSE true END`
	// editMessage applies an edit if its author, when given ($5 <> 0), wrote
	// the message. It returns the edited row, or else the row it did not
	// edit for another author; its last column tells which.
	editMessage = `WITH target AS (
			SELECT ` + messageColumns + ` FROM messages WHERE id = $3 AND room_id = $4 AND deleted_at IS NULL
		), edited AS (
			UPDATE messages
			SET content = $1, edited_at = $2, deleted_at = CASE WHEN $1 = '' THEN $2::timestamptz END
			WHERE id = $3 AND room_id = $4 AND deleted_at IS NULL AND ($5::bigint = 0 OR author_id = $5)
			RETURNING ` + messageColumns + `
		)
		SELECT *, false FROM edited
		UNION ALL
		SELECT *, true FROM target WHERE $5 <> 0 AND author_id <> $5`
	messageByNonce = `SELECT ` + messageColumns + ` FROM messages WHERE author_id = $1 AND room_id = $2 AND nonce = $3`
)

// errBadText is the refusal of a string that PostgreSQL cannot store
// (protocol.md §2.3: stored strings are valid UTF-8 without U+0000).
var errBadText = fmt.Errorf("%w: postgres: text that is not valid UTF-8 or holds U+0000", persistence.ErrRefused)

// storable reports whether s is valid UTF-8 without U+0000.
func storable(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// nonceUnseen is the SQLSTATE that rewind_nonce_unseen raises
// (migrations/0002_nonce_unseen.sql).
const nonceUnseen = "RW001"

// refusal reports whether err is the database refusing the values of a
// statement: a data exception (SQLSTATE class 22: U+0000 or invalid UTF-8
// in a string, 22021), an integrity constraint (23: a room or author that
// does not exist, an id taken) or a program limit (54). Only the op whose
// values they are is at fault.
func refusal(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	switch pe.Code[:2] {
	case "22", "23", "54":
		return true
	}
	return false
}

// afterCommit classifies the error of a transaction whose COMMIT was sent:
// when the database answered with an error (which ended the transaction
// without committing it: in a pipeline, the statements after an error,
// COMMIT included, are skipped) or nothing reached it, nothing was applied;
// otherwise (the connection died, the time limit passed while the database
// had the batch) the commit may have happened, and the error wraps
// persistence.ErrOutcomeUnknown.
func afterCommit(err error) error {
	var (
		pe  *pgconn.PgError
		pre pgx.ErrPreprocessingBatch // preparing or encoding failed: nothing of the batch was sent
	)
	if errors.As(err, &pe) || errors.As(err, &pre) || pgconn.SafeToRetry(err) || errors.Is(err, pgx.ErrTxCommitRollback) {
		return err
	}
	return fmt.Errorf("%w: %w", persistence.ErrOutcomeUnknown, err)
}

// WriteMessages sends BEGIN, all ops and COMMIT in one pipelined batch, one
// round trip: each run of consecutive sends is one multi-row insert (nearly
// twice as fast as a statement per row) that also returns the rows its
// duplicates repeat, each edit one statement, so that the ops apply in
// order. Two things make that transaction fail before its COMMIT, applying
// nothing, and then the batch runs again as writeMessagesCareful does: the
// database refusing an op (refusal; the multi-row insert does not tell
// which row), and a duplicate of a row that a concurrent transaction
// inserted, which the insert cannot see.
func (s *Store) WriteMessages(ctx context.Context, ops []persistence.MessageOp) ([]persistence.MessageResult, error) {
	p, err := planOps(ops)
	if err != nil {
		return nil, err
	}
	results, err := s.writeMessages(ctx, ops, p)
	switch pe := (*pgconn.PgError)(nil); {
	case err == nil:
		return results, nil
	case errors.As(err, &pe) && pe.Code == nonceUnseen:
		return s.writeMessagesCareful(ctx, ops, p, false)
	case refusal(err):
		return s.writeMessagesCareful(ctx, ops, p, true)
	}
	return nil, translate(err)
}

// opPlan is how a batch goes to the database.
type opPlan struct {
	// queued are the indexes of the ops sent to the database, in order.
	queued []int
	// repeats maps a send with the author, room and nonce of an earlier
	// send of the batch to that send: it is its duplicate without asking
	// the database, and it is not queued.
	repeats map[int]int
}

// planOps checks ops and plans them.
func planOps(ops []persistence.MessageOp) (opPlan, error) {
	type nonceKey struct {
		author, room int64
		nonce        string
	}
	p := opPlan{queued: make([]int, 0, len(ops)), repeats: make(map[int]int)}
	first := make(map[nonceKey]int)
	for i, op := range ops {
		m := op.Message
		switch op.Kind {
		case persistence.OpSend:
			if k := (nonceKey{m.AuthorID, m.RoomID, m.Nonce}); m.Nonce != "" {
				if j, ok := first[k]; ok {
					p.repeats[i] = j
					continue
				}
				first[k] = i
			}
		case persistence.OpEdit:
			if m.EditedAt == nil {
				return p, fmt.Errorf("postgres: edit of message %d without EditedAt", m.ID)
			}
		default:
			return p, fmt.Errorf("postgres: message op of unknown kind %d", op.Kind)
		}
		p.queued = append(p.queued, i)
	}
	return p, nil
}

// writeMessages is the one-round-trip path of WriteMessages. Its errors
// are the database's own (*pgconn.PgError, nothing applied) or classified
// by afterCommit.
func (s *Store) writeMessages(ctx context.Context, ops []persistence.MessageOp, p opPlan) ([]persistence.MessageResult, error) {
	results := make([]persistence.MessageResult, len(ops))
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	queueOps(b, ops, p.queued, results, func(run sendRun) {
		b.Queue(insertMessagesSeen, run.args()...).Query(func(rows pgx.Rows) error {
			defer rows.Close()
			for rows.Next() {
				var id int64
				m, err := scanMessage(rows, &id)
				if err != nil {
					return err
				}
				results[run.ops[slices.Index(run.ids, id)]] = persistence.MessageResult{Message: m, Duplicate: true}
			}
			return rows.Err()
		})
	})
	b.Queue("COMMIT")
	// Acquired apart from the batch, so that failing to get a connection
	// is known to have sent nothing.
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	br := conn.SendBatch(ctx, b)
	defer br.Tx().Rollback(ctx) // after the COMMIT, does nothing
	if err := br.Close(); err != nil {
		return nil, afterCommit(err)
	}

	dups := len(p.repeats) > 0
	for i, op := range ops {
		if op.Kind == persistence.OpSend && !results[i].Duplicate {
			results[i].Message = sent(op.Message)
		}
		dups = dups || results[i].Duplicate
	}
	if !dups {
		return results, nil
	}
	// A duplicate shows its row as it is at the end of the batch: as the
	// last op that returned it left it.
	last := make(map[int64]persistence.Message)
	for i, op := range ops {
		r := &results[i]
		_, repeat := p.repeats[i]
		switch {
		case repeat:
		case op.Kind == persistence.OpEdit && r.Err != nil:
		default:
			last[r.Message.ID] = r.Message
		}
	}
	for i := range results {
		if r := &results[i]; r.Duplicate {
			r.Message = last[r.Message.ID]
		}
	}
	for i, j := range p.repeats {
		results[i] = persistence.MessageResult{Message: last[results[j].Message.ID], Duplicate: true}
	}
	return results, nil
}

// writeMessagesCareful is WriteMessages in more round trips, for a batch
// that the one-round-trip path could not apply. Ops whose strings
// PostgreSQL cannot store fail at once, without a round trip. BEGIN goes
// with the first part. Each part of the ops runs in a savepoint; a part
// that the database refuses is rolled back to its savepoint and halved,
// down to the ops it refuses, which fail alone while the others apply:
// such an op costs about 2·log2(len(ops)) round trips, and the common path
// none. split starts with halves (the whole batch was refused already,
// and Go found nothing to take out of it). Sends that
// inserted nothing are looked up after every op, in a round trip that
// only duplicates cost: in the same transaction, so that an error there
// applies nothing and the rows show the batch's edits, and after the ops,
// so that a later snapshot sees rows that concurrent transactions
// committed meanwhile. Then COMMIT.
func (s *Store) writeMessagesCareful(ctx context.Context, ops []persistence.MessageOp, p opPlan, split bool) ([]persistence.MessageResult, error) {
	results := make([]persistence.MessageResult, len(ops))
	inserted := make(map[int64]bool, len(ops))
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	var tx pgx.Tx
	defer func() {
		if tx != nil {
			tx.Rollback(ctx) // after the COMMIT, does nothing
		}
	}()
	var apply func(part []int) error
	apply = func(part []int) error {
		if len(part) == 0 {
			return nil
		}
		b := &pgx.Batch{}
		if tx == nil {
			b.BeginTx(pgx.TxOptions{})
		}
		b.Queue("SAVEPOINT part")
		ins := make(map[int64]bool, len(part))
		queueOps(b, ops, part, results, func(run sendRun) {
			b.Queue(insertMessages, run.args()...).Query(func(rows pgx.Rows) error {
				var id int64
				_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
					ins[id] = true
					return nil
				})
				return err
			})
		})
		b.Queue("RELEASE SAVEPOINT part")
		var br pgx.BatchResults
		if tx == nil {
			br = conn.SendBatch(ctx, b)
			tx = br.Tx()
		} else {
			br = tx.SendBatch(ctx, b)
		}
		err := br.Close()
		if err == nil {
			maps.Copy(inserted, ins)
			return nil
		}
		if !refusal(err) {
			return err
		}
		// No arguments: the simple protocol, one round trip for both, and
		// nothing to prepare (which an aborted transaction refuses).
		if _, uerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT part; RELEASE SAVEPOINT part"); uerr != nil {
			return errors.Join(err, uerr)
		}
		if len(part) == 1 {
			results[part[0]] = persistence.MessageResult{Err: fmt.Errorf("%w: %w", persistence.ErrRefused, translate(err))}
			return nil
		}
		h := len(part) / 2
		if err := apply(part[:h]); err != nil {
			return err
		}
		return apply(part[h:])
	}
	// The refusal that one user's input causes most often, a string that
	// is not valid UTF-8 or holds U+0000 (22021), Go tells without asking
	// the database: those ops fail at once and the rest goes whole.
	queued := make([]int, 0, len(p.queued))
	for _, i := range p.queued {
		if m := ops[i].Message; storable(m.Content) && storable(m.Nonce) {
			queued = append(queued, i)
		} else {
			results[i] = persistence.MessageResult{Err: errBadText}
		}
	}
	split = split && len(queued) == len(p.queued)
	parts := [][]int{queued}
	if split && len(queued) > 1 {
		h := len(queued) / 2
		parts = [][]int{queued[:h], queued[h:]}
	}
	for _, part := range parts {
		if err := apply(part); err != nil {
			return nil, translate(err)
		}
	}

	// Looked up last, so that a duplicate shows the edits of the batch.
	dups := &pgx.Batch{}
	for i, op := range ops {
		if op.Kind != persistence.OpSend {
			continue
		}
		m, r := op.Message, &results[i]
		j, repeat := p.repeats[i]
		switch {
		case repeat && results[j].Err != nil:
			*r = persistence.MessageResult{Err: results[j].Err} // the send it repeats was refused
		case r.Err != nil: // refused
		case !repeat && inserted[m.ID]:
			r.Message = sent(m)
		default:
			r.Duplicate = true
			dups.Queue(messageByNonce, m.AuthorID, m.RoomID, m.Nonce).QueryRow(func(row pgx.Row) (err error) {
				r.Message, err = scanMessage(row)
				return err
			})
		}
	}
	if tx == nil { // every op was refused before reaching the database: nothing to look up
		return results, nil
	}
	if dups.Len() > 0 {
		if err := tx.SendBatch(ctx, dups).Close(); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, afterCommit(err)
	}
	return results, nil
}

// queueOps queues the ops at idx in b, in order: each run of consecutive
// sends through queueRun, each edit as one editMessage whose result it
// puts in results (the whole result, so that a batch run again overwrites
// what an earlier run left).
func queueOps(b *pgx.Batch, ops []persistence.MessageOp, idx []int, results []persistence.MessageResult,
	queueRun func(sendRun)) {
	var run sendRun
	flush := func() {
		if len(run.ops) > 0 {
			queueRun(run)
			run = sendRun{}
		}
	}
	for _, i := range idx {
		m, r := ops[i].Message, &results[i]
		if ops[i].Kind == persistence.OpSend {
			run.add(i, m)
			continue
		}
		flush()
		b.Queue(editMessage, m.Content, ts(*m.EditedAt), m.ID, m.RoomID, m.AuthorID).QueryRow(func(row pgx.Row) error {
			var notAuthor bool
			edited, err := scanMessage(row, &notAuthor)
			switch {
			case errors.Is(err, persistence.ErrNotFound):
				*r = persistence.MessageResult{Err: err}
			case err != nil:
				return err
			case notAuthor:
				*r = persistence.MessageResult{Err: persistence.ErrNotAuthor}
			default:
				*r = persistence.MessageResult{Message: edited}
			}
			return nil
		})
	}
	flush()
}

// sendRun is a run of sends (ops, their indexes in the batch) as the column
// arrays of insertMessages.
type sendRun struct {
	ops                 []int
	ids, rooms, authors []int64
	contents, nonces    []string
	times               []time.Time
}

func (r *sendRun) add(op int, m persistence.Message) {
	r.ops = append(r.ops, op)
	r.ids = append(r.ids, m.ID)
	r.rooms = append(r.rooms, m.RoomID)
	r.authors = append(r.authors, m.AuthorID)
	r.contents = append(r.contents, m.Content)
	r.nonces = append(r.nonces, m.Nonce)
	r.times = append(r.times, ts(m.CreatedAt))
}

func (r *sendRun) args() []any {
	return []any{r.ids, r.rooms, r.authors, r.contents, r.nonces, r.times}
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

// scanMessage scans messageColumns, then extra.
func scanMessage(row pgx.Row, extra ...any) (persistence.Message, error) {
	var m persistence.Message
	dest := append([]any{&m.ID, &m.RoomID, &m.AuthorID, &m.Content, &m.Nonce, &m.CreatedAt, &m.EditedAt, &m.DeletedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
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
