// Package postgres is the persistence.Store on PostgreSQL, for production and
// clusters, through a pgx connection pool.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rewind-chat/rewind/persistence"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a persistence.Store on PostgreSQL. CreateUser and
// PutPendingRegistration store time.Now() when CreatedAt is zero.
type Store struct {
	pool *pgxpool.Pool
}

var _ persistence.Store = (*Store)(nil)

// DefaultMaxConns is the pool size unless the URL sets pool_max_conns:
// the writer's transactions, the room-state loads and the sessions' reads
// run side by side, and pgxpool's own default (the core count, at least
// 4) would make them queue for each other.
const DefaultMaxConns = 16

// Open connects to the database at url (a postgres:// URL or a key=value
// DSN; unknown URL parameters such as search_path become runtime
// parameters; pool_max_conns sets the pool size). It does not migrate;
// call Migrate.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	// pgxpool connects lazily; fail here, not at the first request.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	return &Store{pool: pool}, nil
}

// migrateLock is the pg_advisory_xact_lock key ("rewind" in ASCII) that
// serializes migrations of processes sharing a database.
const migrateLock int64 = 0x726577696e64

// Migrate applies the embedded migrations not yet in schema_migrations, each
// in its own transaction that first takes migrateLock: a second process
// migrating at the same time waits, then finds the migration recorded.
func (s *Store) Migrate(ctx context.Context) error { return s.migrate(ctx, 0) }

// goSteps are the parts of migrations that SQL cannot do, by version: each
// runs after that version's file, in its transaction.
var goSteps = map[int]func(ctx context.Context, tx pgx.Tx) error{
	3: rekeyNames,
}

// migrate applies the migrations up to version upTo (0: all of them).
func (s *Store) migrate(ctx context.Context, upTo int) error {
	ms, err := persistence.ReadMigrations(migrations, "migrations")
	if err != nil {
		return err
	}
	for _, m := range ms {
		if upTo > 0 && m.Version > upTo {
			break
		}
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLock); err != nil {
				return err
			}
			// Created under the lock: two concurrent CREATE TABLE IF NOT
			// EXISTS can both pass the check and one fails.
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)`); err != nil {
				return err
			}
			var done bool
			err := tx.QueryRow(ctx,
				`SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.Version).Scan(&done)
			if err != nil || done {
				return err
			}
			// Without arguments pgx uses the simple protocol, which runs
			// a file of several statements.
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			if step := goSteps[m.Version]; step != nil {
				if err := step(ctx, tx); err != nil {
					return err
				}
			}
			_, err = tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())`, m.Version)
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: migration %s: %w", m.Name, err)
		}
	}
	return nil
}

func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

func (s *Store) CreateUser(ctx context.Context, u persistence.User) error {
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now()
	}
	return insertUser(ctx, s.pool, u)
}

const userColumns = `id, name, email, password_hash, profile, token_generation, created_at`

func (s *Store) UserByID(ctx context.Context, id int64) (persistence.User, error) {
	return s.user(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id)
}

func (s *Store) UserByEmail(ctx context.Context, email string) (persistence.User, error) {
	return s.user(ctx, `SELECT `+userColumns+` FROM users WHERE email_folded = $1`, persistence.Fold(email))
}

func (s *Store) UserByName(ctx context.Context, name string) (persistence.User, error) {
	return s.user(ctx, `SELECT `+userColumns+` FROM users WHERE name_folded = $1`, persistence.NameKey(name))
}

func (s *Store) user(ctx context.Context, query string, args ...any) (persistence.User, error) {
	return scanUser(s.pool.QueryRow(ctx, query, args...))
}

// scanUser scans userColumns, then extra.
func scanUser(row pgx.Row, extra ...any) (persistence.User, error) {
	var u persistence.User
	dest := append([]any{&u.ID, &u.Name, &u.Email, &u.PasswordHash, &u.Profile, &u.TokenGeneration, &u.CreatedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return persistence.User{}, translate(err)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

func (s *Store) BumpTokenGeneration(ctx context.Context, userID int64) (int64, error) {
	var gen int64
	err := s.pool.QueryRow(ctx,
		`UPDATE users SET token_generation = token_generation + 1 WHERE id = $1 RETURNING token_generation`,
		userID).Scan(&gen)
	return gen, translate(err)
}

func (s *Store) ReplacePasswordHash(ctx context.Context, userID int64, oldHash, newHash string) (bool, error) {
	tag, err := s.pool.Exec(ctx,
		`UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3`, newHash, userID, oldHash)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

func (s *Store) PutPendingRegistration(ctx context.Context, p persistence.PendingRegistration, quota persistence.MailQuota) error {
	if p.CreatedAt.IsZero() {
		p.CreatedAt = time.Now()
	}
	name, email := persistence.NameKey(p.Name), persistence.Fold(p.Email)
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Puts for one email run one at a time, so that each sees the mail
		// times the one before wrote, even when there was no row to lock.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, emailLock(email)); err != nil {
			return err
		}
		if err := taken(ctx, tx, name, email); err != nil {
			return err
		}
		var record string
		err := tx.QueryRow(ctx,
			`SELECT mail_times FROM pending_registrations WHERE email_folded = $1`, email).Scan(&record)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		record, ok := quota.Admit(record, p.CreatedAt)
		if !ok {
			return persistence.ErrTooManyMails
		}
		if _, err := tx.Exec(ctx, `DELETE FROM pending_registrations WHERE email_folded = $1`, email); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO pending_registrations
			(key_hash, name, name_folded, email, email_folded, password_hash, mail_times, expires_at, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			p.KeyHash, p.Name, name, p.Email, email, p.PasswordHash, record, ts(p.ExpiresAt), ts(p.CreatedAt))
		return err
	})
}

// emailLock is the pg_advisory_xact_lock key of a folded email's pending
// registration: a 64-bit FNV-1a hash (another email may share it, which
// only serializes the two).
func emailLock(email string) int64 {
	h := fnv.New64a()
	h.Write([]byte("rewind pending registration\x00"))
	h.Write([]byte(email))
	return int64(h.Sum64())
}

func (s *Store) VerifyRegistration(ctx context.Context, keyHash []byte, now time.Time, userID int64) (persistence.User, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return persistence.User{}, err
	}
	defer tx.Rollback(ctx)
	u := persistence.User{ID: userID, CreatedAt: ts(now)}
	// The row lock taken by DELETE makes a concurrent verification of the
	// same key wait, then find nothing: a key works once.
	err = tx.QueryRow(ctx, `DELETE FROM pending_registrations WHERE key_hash = $1 AND expires_at > $2
		RETURNING name, email, password_hash`, keyHash, ts(now)).Scan(&u.Name, &u.Email, &u.PasswordHash)
	if err != nil {
		return persistence.User{}, translate(err)
	}
	// A failed statement aborts a PostgreSQL transaction; the savepoint keeps
	// the deletion alive when the insert fails.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return persistence.User{}, err
	}
	if err := insertUser(ctx, sp, u); err != nil {
		// A taken name or email will not free itself, so the deletion
		// commits: the key can never succeed. Any other error rolls back
		// and keeps the key.
		if errors.Is(err, persistence.ErrEmailTaken) || errors.Is(err, persistence.ErrNameTaken) {
			if rerr := sp.Rollback(ctx); rerr != nil {
				return persistence.User{}, rerr
			}
			if cerr := tx.Commit(ctx); cerr != nil {
				return persistence.User{}, cerr
			}
		}
		return persistence.User{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return persistence.User{}, err
	}
	return u, nil
}

func (s *Store) DeleteExpiredRegistrations(ctx context.Context, now time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM pending_registrations WHERE expires_at <= $1`, ts(now))
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (s *Store) Secret(ctx context.Context, name string, generate func() ([]byte, error)) ([]byte, error) {
	v, err := s.secret(ctx, name)
	if !errors.Is(err, persistence.ErrNotFound) {
		return v, err
	}
	g, err := generate()
	if err != nil {
		return nil, err
	}
	// A concurrent insert of the same name makes this one wait for its
	// commit and then do nothing; the SELECT after it sees the winner.
	if _, err := s.pool.Exec(ctx,
		`INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, g); err != nil {
		return nil, err
	}
	return s.secret(ctx, name)
}

func (s *Store) secret(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&v)
	return v, translate(err)
}

// querier is *pgxpool.Pool or pgx.Tx.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// taken answers ErrEmailTaken or ErrNameTaken when a user holds the folded
// email or name, checking the email first. The unique indexes would catch
// it too, but which of two violated indexes an engine reports first is its
// own affair; they remain for races.
func taken(ctx context.Context, db querier, name, email string) error {
	var emailTaken, nameTaken bool
	err := db.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM users WHERE email_folded = $1),
		EXISTS (SELECT 1 FROM users WHERE name_folded = $2)`, email, name).Scan(&emailTaken, &nameTaken)
	switch {
	case err != nil:
		return err
	case emailTaken:
		return persistence.ErrEmailTaken
	case nameTaken:
		return persistence.ErrNameTaken
	}
	return nil
}

func insertUser(ctx context.Context, db querier, u persistence.User) error {
	name, email := persistence.NameKey(u.Name), persistence.Fold(u.Email)
	if err := taken(ctx, db, name, email); err != nil {
		return err
	}
	_, err := db.Exec(ctx, `INSERT INTO users
		(id, name, name_folded, email, email_folded, password_hash, profile, token_generation, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		u.ID, u.Name, name, u.Email, email, u.PasswordHash, u.Profile, u.TokenGeneration, ts(u.CreatedAt))
	return translate(err)
}

// rekeyNames is migration 3's Go step: it writes name_folded of every user
// (persistence.RekeyUsers) and pending registration as NameKey gives it.
func rekeyNames(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT id, name, created_at FROM users`)
	if err != nil {
		return err
	}
	users, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (persistence.NameRow, error) {
		var u persistence.NameRow
		err := row.Scan(&u.ID, &u.Name, &u.CreatedAt)
		return u, err
	})
	if err != nil {
		return err
	}
	keys := persistence.RekeyUsers(users)
	ids, names := make([]int64, 0, len(keys)), make([]string, 0, len(keys))
	for id, key := range keys {
		ids, names = append(ids, id), append(names, key)
	}
	if _, err := tx.Exec(ctx, `UPDATE users SET name_folded = k.name_key
		FROM unnest($1::bigint[], $2::text[]) AS k (user_id, name_key) WHERE users.id = k.user_id`, ids, names); err != nil {
		return err
	}

	rows, err = tx.Query(ctx, `SELECT key_hash, name FROM pending_registrations`)
	if err != nil {
		return err
	}
	var hashes [][]byte
	var pendingKeys []string
	for rows.Next() {
		var hash []byte
		var name string
		if err := rows.Scan(&hash, &name); err != nil {
			rows.Close()
			return err
		}
		hashes, pendingKeys = append(hashes, hash), append(pendingKeys, persistence.NameKey(name))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE pending_registrations SET name_folded = k.name_key
		FROM unnest($1::bytea[], $2::text[]) AS k (hash, name_key) WHERE key_hash = k.hash`, hashes, pendingKeys)
	return err
}

const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// translate maps driver errors to the persistence sentinels and passes any
// other error (or nil) through. Unique violations are told apart by the
// index names of migrations/0001_init.sql. A foreign key violation means
// that a row referred to does not exist.
func translate(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return persistence.ErrNotFound
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch pe.Code {
	case foreignKeyViolation:
		return fmt.Errorf("%w: %w", persistence.ErrNotFound, err)
	case uniqueViolation:
		switch pe.ConstraintName {
		case "users_email_folded_key":
			return persistence.ErrEmailTaken
		case "users_name_folded_key":
			return persistence.ErrNameTaken
		}
	}
	return err
}

// ts is t as stored: in UTC, truncated to the microsecond that timestamptz
// keeps (PostgreSQL would round), so that a round trip gives it back exactly.
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
