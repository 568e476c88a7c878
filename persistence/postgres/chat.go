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
			(SELECT id FROM rooms WHERE kind = $4::smallint AND member_low = i.low AND member_high = i.high) AS room_id,
			(SELECT seq FROM rooms WHERE kind = $4::smallint AND member_low = i.low AND member_high = i.high) AS room_seq
		FROM input i
	), created AS (
		INSERT INTO rooms (id, kind, member_low, member_high, created_at)
		SELECT DISTINCT ON (low, high) new_id, $4::smallint, low, high, $5::timestamptz FROM found
		WHERE room_id IS NULL AND members AND friends
		ORDER BY low, high, ord
		ON CONFLICT (kind, member_low, member_high) DO UPDATE SET kind = EXCLUDED.kind
		RETURNING id, member_low, member_high, seq
	)
	SELECT f.members, f.friends, coalesce(f.room_id, c.id, 0), coalesce(f.room_seq, c.seq, 0)
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
		_, err := pgx.ForEachRow(rows, []any{&st.Members, &st.Friends, &st.RoomID, &st.Seq}, func() error {
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

// messageColumns are the columns of persistence.Message as scanMessage
// reads them, named so that a CTE can read them from RETURNING.
const messageColumns = `id, room_id, author_id, content, coalesce(nonce, '') AS nonce, created_at, edited_at, deleted_at,
	seq, coalesce(edit_seq, 0) AS edit_seq`

// lockRooms locks the rows of a batch's rooms, in id order so that two
// batches cannot deadlock, as the first statement of its transaction: a
// room is numbered only under its lock (the persistence package comment),
// and every later statement of the transaction, a new snapshot in READ
// COMMITTED, sees all that the room's earlier writers committed. FOR NO
// KEY UPDATE, the lock of UPDATE rooms SET seq, leaves the KEY SHARE locks
// of foreign key checks alone.
const lockRooms = `SELECT FROM rooms WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE`

// sendRunCTEs insert a run of sends from one array per column and number
// them; their text does not depend on the number of rows, so each
// statement that uses them stays one prepared statement. m marks dup the
// sends whose author used the nonce in the room before
// (migrations/0004_nonce_per_room.sql): under the room locks the
// snapshot holds every row of the room, so the check is exact, and those
// sends never reach the insert, nor take a number. The others take the
// room's next numbers in op order (row_number over the room's sends of
// the run, from the counter), and counted raises each room's counter to
// its last number and sets its activity. The insert has no ON CONFLICT: a
// nonce that the check missed (a row of a writer that did not lock the
// room) fails the statement, which rolls its numbers back, rather than
// skipping a row that has its number already. A send to a room that does
// not exist gets a number all the same, for the foreign key to refuse it.
//
// Every lookup is a scalar subquery or a key array (= ANY), which
// PostgreSQL runs through the index per row: an EXISTS or a join would let
// it hash all of messages or rooms instead, as it did for 100 sends into a
// table of 30,000 messages without statistics (TestChatPlans).
const sendRunCTEs = `m AS MATERIALIZED (
		SELECT u.*, u.nonce <> '' AND coalesce((
			SELECT true FROM messages x WHERE x.author_id = u.author_id AND x.room_id = u.room_id AND x.nonce = u.nonce
		), false) AS dup
		FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[])
			WITH ORDINALITY AS u (id, room_id, author_id, content, nonce, created_at, ord)
	), inserted AS (
		INSERT INTO messages (id, room_id, author_id, content, nonce, created_at, seq)
		SELECT id, room_id, author_id, content, nullif(nonce, ''), created_at,
			coalesce((SELECT seq FROM rooms r WHERE r.id = m.room_id), 0) + row_number() OVER (PARTITION BY room_id ORDER BY ord)
		FROM m
		WHERE NOT dup
		RETURNING ` + messageColumns + `
	), counted AS (
		UPDATE rooms SET seq = l.seq, activity_at = l.created_at
		FROM (SELECT DISTINCT ON (room_id) room_id, seq, created_at FROM inserted ORDER BY room_id, seq DESC) AS l
		WHERE rooms.id = l.room_id AND rooms.id = ANY (ARRAY(SELECT room_id FROM inserted))
	)`

const (
	// insertMessages inserts a run of sends and returns the ids and
	// numbers of those it inserted.
	insertMessages = `WITH ` + sendRunCTEs + ` SELECT id, seq FROM inserted`
	// insertMessagesSeen inserts a run of sends and returns a row for each:
	// the inserted row (its id is the send's: ids are unique among the
	// inserted rows, or the insert fails), or for a duplicate the stored
	// row with its author, room and nonce (the same snapshot as the check,
	// so it is there) and the send's place in the run (1, 2, ...); then
	// whether it is a duplicate, and that place (0 for an inserted row).
	// The lookup's LIMIT keeps it a subquery per duplicate.
	insertMessagesSeen = `WITH ` + sendRunCTEs + `
		SELECT i.*, false, 0::bigint FROM inserted i
		UNION ALL
		SELECT s.*, true, m.ord FROM m JOIN LATERAL (
			SELECT ` + messageColumns + ` FROM messages
			WHERE author_id = m.author_id AND room_id = m.room_id AND nonce = m.nonce LIMIT 1
		) AS s ON true
		WHERE m.dup`
	// editMessage applies an edit if its author, when given ($5 <> 0), wrote
	// the message, numbering it from the room's counter (locked), which
	// counted raises to it. It returns the edited row, or else the row it
	// did not edit for another author; its last column tells which.
	editMessage = `WITH target AS (
			SELECT ` + messageColumns + ` FROM messages WHERE id = $3 AND room_id = $4 AND deleted_at IS NULL
		), edited AS (
			UPDATE messages
			SET content = $1, edited_at = $2, deleted_at = CASE WHEN $1 = '' THEN $2::timestamptz END,
				edit_seq = (SELECT seq + 1 FROM rooms WHERE id = $4)
			WHERE id = $3 AND room_id = $4 AND deleted_at IS NULL AND ($5::bigint = 0 OR author_id = $5)
			RETURNING ` + messageColumns + `
		), counted AS (
			UPDATE rooms SET seq = (SELECT edit_seq FROM edited), activity_at = $2
			WHERE id = $4 AND EXISTS (SELECT FROM edited)
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

// refusal reports whether err is the database refusing the values of a
// statement: a data exception (SQLSTATE class 22: U+0000 or invalid UTF-8
// in a string, 22021), an integrity constraint (23: a room or author that
// does not exist, an id taken, a nonce held by a row that the duplicate
// check could not see) or a program limit (54). Only the op whose values
// they are is at fault.
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

// WriteMessages sends BEGIN, the room locks (lockRooms), all ops and
// COMMIT in one pipelined batch, one round trip: each run of consecutive
// sends is one multi-row insert (nearly twice as fast as a statement per
// row) that numbers its rows and also returns the rows its duplicates
// repeat, each edit one statement, so that the ops apply and take their
// numbers in order. When the database refuses an op, that transaction
// fails before its COMMIT, applying nothing (the multi-row insert does not
// tell which row), and the batch runs again as writeMessagesCareful does.
func (s *Store) WriteMessages(ctx context.Context, ops []persistence.MessageOp) ([]persistence.MessageResult, error) {
	p, err := planOps(ops)
	if err != nil {
		return nil, err
	}
	results, err := s.writeMessages(ctx, ops, p)
	switch {
	case err == nil:
		return results, nil
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
	// rooms are the rooms of the queued ops, ascending, for lockRooms.
	rooms []int64
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
		p.rooms = append(p.rooms, m.RoomID)
	}
	slices.Sort(p.rooms)
	p.rooms = slices.Compact(p.rooms)
	return p, nil
}

// writeMessages is the one-round-trip path of WriteMessages. Its errors
// are the database's own (*pgconn.PgError, nothing applied) or classified
// by afterCommit.
func (s *Store) writeMessages(ctx context.Context, ops []persistence.MessageOp, p opPlan) ([]persistence.MessageResult, error) {
	results := make([]persistence.MessageResult, len(ops))
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	b.Queue(lockRooms, p.rooms)
	queueOps(b, ops, p.queued, results, func(run sendRun) {
		b.Queue(insertMessagesSeen, run.args()...).Query(func(rows pgx.Rows) error {
			defer rows.Close()
			at := make(map[int64]int, len(run.ids)) // a send's place in the run by its id
			for i, id := range run.ids {
				at[id] = i
			}
			for rows.Next() {
				var dup bool
				var ord int
				m, err := scanMessage(rows, &dup, &ord)
				if err != nil {
					return err
				}
				i := ord - 1
				if !dup {
					i = at[m.ID]
				}
				results[run.ops[i]] = persistence.MessageResult{Message: m, Duplicate: dup}
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
	for i := range results {
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
// PostgreSQL cannot store fail at once, without a round trip. BEGIN and
// the room locks go with the first part. Each part of the ops runs in a
// savepoint; a part that the database refuses is rolled back to its
// savepoint, numbers and counters included, and halved, down to the ops
// it refuses, which fail alone while the others apply: such an op costs
// about 2·log2(len(ops)) round trips, and the common path none. split
// starts with halves (the whole batch was refused already, and Go found
// nothing to take out of it). Sends that inserted nothing are looked up
// after every op, in a round trip that only duplicates cost: in the same
// transaction, so that an error there applies nothing and the rows show
// the batch's edits. Then COMMIT.
func (s *Store) writeMessagesCareful(ctx context.Context, ops []persistence.MessageOp, p opPlan, split bool) ([]persistence.MessageResult, error) {
	results := make([]persistence.MessageResult, len(ops))
	inserted := make(map[int64]int64, len(ops)) // id → seq
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
			b.Queue(lockRooms, p.rooms)
		}
		b.Queue("SAVEPOINT part")
		ins := make(map[int64]int64, len(part))
		queueOps(b, ops, part, results, func(run sendRun) {
			b.Queue(insertMessages, run.args()...).Query(func(rows pgx.Rows) error {
				var id, seq int64
				_, err := pgx.ForEachRow(rows, []any{&id, &seq}, func() error {
					ins[id] = seq
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
		seq, ok := inserted[m.ID]
		switch {
		case repeat && results[j].Err != nil:
			*r = persistence.MessageResult{Err: results[j].Err} // the send it repeats was refused
		case r.Err != nil: // refused
		case !repeat && ok:
			r.Message = sent(m, seq)
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
// arrays of sendRunCTEs.
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

// sent is the row that OpSend stores from m as change seq.
func sent(m persistence.Message, seq int64) persistence.Message {
	return persistence.Message{
		ID:        m.ID,
		RoomID:    m.RoomID,
		AuthorID:  m.AuthorID,
		Content:   m.Content,
		Nonce:     m.Nonce,
		CreatedAt: ts(m.CreatedAt),
		Seq:       seq,
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

// changesQuery reads messages_room_change_key from since on, in the order
// of the messages' latest changes: a page costs its size (and the messages
// created after since and deleted, which it skips), not the room's
// (TestChatPlans).
const changesQuery = `SELECT ` + messageColumns + ` FROM messages
	WHERE room_id = $1 AND coalesce(edit_seq, seq) > $2 AND (seq <= $2 OR deleted_at IS NULL)
	ORDER BY coalesce(edit_seq, seq) LIMIT $3`

// roomSeq is the counter of room $1, 0 when there is no such room.
const roomSeq = `SELECT coalesce((SELECT seq FROM rooms WHERE id = $1), 0)`

// Changes reads the counter and the page in one REPEATABLE READ
// transaction, one snapshot, in one round trip.
func (s *Store) Changes(ctx context.Context, roomID, since int64, limit int) ([]persistence.Message, int64, error) {
	if limit <= 0 {
		return nil, 0, fmt.Errorf("postgres: changes limit %d", limit)
	}
	var current int64
	var ms []persistence.Message
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	b.Queue(roomSeq, roomID).QueryRow(func(row pgx.Row) error {
		return row.Scan(&current)
	})
	b.Queue(changesQuery, roomID, since, limit).Query(func(rows pgx.Rows) error {
		var err error
		ms, err = pgx.AppendRows(ms, rows, func(row pgx.CollectableRow) (persistence.Message, error) { return scanMessage(row) })
		return err
	})
	b.Queue(`COMMIT`)
	br := s.pool.SendBatch(ctx, b)
	defer br.Tx().Rollback(ctx) // after the COMMIT, only releases the connection
	if err := br.Close(); err != nil {
		return nil, 0, translate(err)
	}
	return ms, current, nil
}

// memberOf is the condition that user $1 is a member of room rooms: of
// the DM, or of the channel's guild (one lookup of guild_members' key: a
// scalar subquery, which EXISTS is not, lest the planner hash the user's
// guilds).
const memberOf = `CASE rooms.kind
		WHEN ` + kindDMText + ` THEN $1::bigint IN (rooms.member_low, rooms.member_high)
		WHEN ` + kindChannelText + ` THEN coalesce((SELECT true FROM guild_members WHERE guild_id = rooms.guild_id AND user_id = $1::bigint), false)
		ELSE false END`

// chatsQuery is one page of Chats ($1 the user, $2 before or 0, $3 the
// limit, $4 persistence.UnreadCap), one statement and so one snapshot.
// bound is the cursor: before's (activity_at, id), or above every room;
// nothing when before is not the user's room. The user's DM rooms are two
// ranges, by member_low and member_high, each read from the bound on
// through rooms_low_activity_idx and rooms_high_activity_idx, at most $3
// rows each. The user's channels are a range per guild: the user's guilds
// (guild_members_user_idx, at most the guild limit), and for each, at most
// $3 of its channels from the bound on (rooms_channel_activity_idx); that
// branch alone is sorted, a sort of at most guilds × min($3, channels)
// rows that the limits bound, not the tables (no index orders the
// channels of several guilds together short of a row per member and
// channel, written at every send). Their merge is the page, materialized
// with each room's read position, a lookup of read_states by its key. For
// each room of the page, the unread count reads messages_room_live_seq_idx
// from the read position on, at most $4 entries that are not the user's,
// and the last message is that index's last entry (TestChatPlans). Kind
// and seq are literals, so that every plan, generic ones too, can use the
// partial indexes.
const chatsQuery = `WITH bound AS (
		SELECT 'infinity'::timestamptz AS at, 9223372036854775807::bigint AS id WHERE $2::bigint = 0
		UNION ALL
		SELECT activity_at, id FROM rooms
		WHERE id = $2 AND $2 <> 0 AND ` + memberOf + `
	), page AS MATERIALIZED (
		SELECT r.*, coalesce((SELECT read_seq FROM read_states WHERE user_id = $1 AND room_id = r.id), 0) AS read_seq
		FROM (
			(SELECT id, kind, guild_id, member_low, member_high, seq, activity_at FROM rooms
			WHERE member_low = $1 AND kind = ` + kindDMText + ` AND seq > 0
				AND (activity_at, id) < ((SELECT at FROM bound), (SELECT id FROM bound))
			ORDER BY activity_at DESC, id DESC LIMIT $3)
			UNION ALL
			(SELECT id, kind, guild_id, member_low, member_high, seq, activity_at FROM rooms
			WHERE member_high = $1 AND kind = ` + kindDMText + ` AND seq > 0
				AND (activity_at, id) < ((SELECT at FROM bound), (SELECT id FROM bound))
			ORDER BY activity_at DESC, id DESC LIMIT $3)
			UNION ALL
			(SELECT c.* FROM guild_members gm CROSS JOIN LATERAL (
				SELECT id, kind, guild_id, member_low, member_high, seq, activity_at FROM rooms
				WHERE guild_id = gm.guild_id AND kind = ` + kindChannelText + ` AND seq > 0
					AND (activity_at, id) < ((SELECT at FROM bound), (SELECT id FROM bound))
				ORDER BY activity_at DESC, id DESC LIMIT $3) AS c
			WHERE gm.user_id = $1
			ORDER BY c.activity_at DESC, c.id DESC LIMIT $3)
			ORDER BY activity_at DESC, id DESC LIMIT $3
		) AS r
	)
	SELECT p.id, p.kind, coalesce(p.guild_id, 0), coalesce(p.member_low, 0), coalesce(p.member_high, 0), p.seq, p.read_seq,
		(SELECT count(*) FROM (
			SELECT FROM messages
			WHERE room_id = p.id AND seq > p.read_seq AND deleted_at IS NULL AND author_id <> $1
			LIMIT $4) AS unread),
		p.activity_at,
		l.id, l.room_id, l.author_id, l.content, l.nonce, l.created_at, l.edited_at, l.deleted_at, l.seq, l.edit_seq
	FROM page p
	LEFT JOIN LATERAL (
		SELECT ` + messageColumns + ` FROM messages WHERE room_id = p.id AND deleted_at IS NULL ORDER BY seq DESC LIMIT 1
	) AS l ON true
	ORDER BY p.activity_at DESC, p.id DESC`

// kindDMText and kindChannelText are kindDM and persistence.KindChannel in SQL text.
const (
	kindDMText      = "1"
	kindChannelText = "2"
)

func (s *Store) Chats(ctx context.Context, userID, before int64, limit int) ([]persistence.ChatSummary, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: chats limit %d", limit)
	}
	rows, err := s.pool.Query(ctx, chatsQuery, userID, before, limit, persistence.UnreadCap)
	if err != nil {
		return nil, err
	}
	var chats []persistence.ChatSummary // nil, not empty, when there is none, as in the SQLite store
	chats, err = pgx.AppendRows(chats, rows, func(row pgx.CollectableRow) (persistence.ChatSummary, error) {
		var c persistence.ChatSummary
		var l struct {
			id, room, author, seq, editSeq *int64
			content, nonce                 *string
			created, edited, deleted       *time.Time
		}
		if err := row.Scan(&c.RoomID, &c.Kind, &c.GuildID, &c.Low, &c.High, &c.Seq, &c.ReadSeq, &c.Unread, &c.Activity,
			&l.id, &l.room, &l.author, &l.content, &l.nonce, &l.created, &l.edited, &l.deleted, &l.seq, &l.editSeq); err != nil {
			return c, err
		}
		c.Activity = c.Activity.UTC()
		if l.id != nil {
			c.LastMessage = &persistence.Message{
				ID: *l.id, RoomID: *l.room, AuthorID: *l.author, Content: *l.content, Nonce: *l.nonce,
				CreatedAt: l.created.UTC(), EditedAt: utc(l.edited), DeletedAt: utc(l.deleted),
				Seq: *l.seq, EditSeq: *l.editSeq,
			}
		}
		return c, nil
	})
	if err != nil || len(chats) > 0 || before == 0 {
		return chats, err
	}
	// An empty page: is before a room of the user at all? A DM's members
	// never change; a channel's guild may have lost the user meanwhile,
	// which answers ErrNotFound as a later call would.
	var mine bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM rooms WHERE id = $2 AND `+memberOf+`)`,
		userID, before).Scan(&mine); err != nil {
		return nil, err
	}
	if !mine {
		return nil, persistence.ErrNotFound
	}
	return chats, nil
}

// markRead moves the read position ($3) of user $1 in room $2 forward, if
// the user is a member (of the DM, or of the channel's guild) and the
// room has change $3. It returns the room's
// counter and whether the position moved; no row when the room is not
// the user's. Of two concurrent calls, the second waits for the first's
// row and compares with what it committed.
const markRead = `WITH r AS (
		SELECT seq FROM rooms WHERE id = $2 AND ` + memberOf + `
	), moved AS (
		INSERT INTO read_states (user_id, room_id, read_seq)
		SELECT $1, $2, $3 FROM r WHERE $3::bigint > 0 AND $3 <= r.seq
		ON CONFLICT (user_id, room_id) DO UPDATE SET read_seq = EXCLUDED.read_seq
			WHERE read_states.read_seq < EXCLUDED.read_seq
		RETURNING read_seq
	)
	SELECT r.seq, EXISTS (SELECT FROM moved) FROM r`

func (s *Store) MarkRead(ctx context.Context, userID, roomID, seq int64) (int64, bool, error) {
	var current int64
	var moved bool
	if err := s.pool.QueryRow(ctx, markRead, userID, roomID, seq).Scan(&current, &moved); err != nil {
		return 0, false, translate(err)
	}
	switch {
	case moved:
		return seq, true, nil
	case seq > current:
		return 0, false, persistence.ErrSeqAhead
	}
	// Not moved: a later statement sees what a concurrent call committed.
	var read int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce((SELECT read_seq FROM read_states WHERE user_id = $1 AND room_id = $2), 0)`,
		userID, roomID).Scan(&read)
	return read, false, err
}

// scanMessage scans messageColumns, then extra.
func scanMessage(row pgx.Row, extra ...any) (persistence.Message, error) {
	var m persistence.Message
	dest := append([]any{&m.ID, &m.RoomID, &m.AuthorID, &m.Content, &m.Nonce, &m.CreatedAt, &m.EditedAt, &m.DeletedAt,
		&m.Seq, &m.EditSeq}, extra...)
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
