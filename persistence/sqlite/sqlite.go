// Package sqlite is the embedded persistence.Store: one file, no server, for
// a single node. It uses the pure-Go driver modernc.org/sqlite.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/rewind-chat/rewind/persistence"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a persistence.Store on one SQLite file. Times are stored as unix
// microseconds. CreateUser and PutPendingRegistration store time.Now() when
// CreatedAt is zero.
//
// SQLite lets one connection write at a time. Pooled connections racing for
// that lock fail with SQLITE_BUSY whenever a deferred transaction cannot
// upgrade its read lock, which busy_timeout does not cure. So every write
// goes through write, a pool of exactly one connection whose transactions
// BEGIN IMMEDIATE: writers queue in database/sql, not in SQLite. Reads go
// through read, a pool of query_only connections that WAL runs beside the
// writer. busy_timeout remains for other processes on the same file (such as
// `rewind migrate`).
type Store struct {
	write *sql.DB
	read  *sql.DB
}

var _ persistence.Store = (*Store)(nil)

// Open opens (creating it if needed) the database file at path. It does not
// migrate; call Migrate.
func Open(ctx context.Context, path string) (*Store, error) {
	// The writer goes first: it switches the file to WAL, which persists, so
	// that readers never see another journal mode.
	write, err := openDB(ctx, path, true)
	if err != nil {
		return nil, err
	}
	read, err := openDB(ctx, path, false)
	if err != nil {
		write.Close()
		return nil, err
	}
	return &Store{write: write, read: read}, nil
}

// openDB opens a pool whose every connection gets the pragmas through the
// DSN. synchronous(FULL) fsyncs the WAL at each commit, so an acknowledged
// write survives a power loss (NORMAL may lose the last commits).
func openDB(ctx context.Context, path string, writer bool) (*sql.DB, error) {
	q := url.Values{"_pragma": {"busy_timeout(5000)", "foreign_keys(1)", "synchronous(FULL)"}}
	if writer {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Set("_txlock", "immediate")
	} else {
		q.Set("_query_only", "1")
	}
	// A "file:" URI with an escaped path, so that a '?' in path is not
	// taken for the start of the parameters.
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	n := 1
	if !writer {
		n = max(4, runtime.GOMAXPROCS(0))
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n) // reopening a connection reruns the pragmas
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return db, nil
}

// Migrate applies the embedded migrations not yet in schema_migrations, each
// in its own transaction. The writer's transactions BEGIN IMMEDIATE, so the
// write lock is held from before the check: another process migrating the
// same file waits instead of applying a migration twice.
func (s *Store) Migrate(ctx context.Context) error { return s.migrate(ctx, 0) }

// goSteps are the parts of migrations that SQL cannot do, by version: each
// runs after that version's file, in its transaction.
var goSteps = map[int]func(ctx context.Context, tx *sql.Tx) error{
	3: rekeyNames,
}

// noForeignKeys are the migrations that rebuild a table others refer to
// (0006: rooms), which SQLite does with foreign keys off: dropping the old
// table would otherwise fail on the rows that refer to it, or cascade into
// them. Such a migration runs on the writer's one connection, pinned, with
// PRAGMA foreign_keys off (a pragma that a transaction cannot change),
// checks with PRAGMA foreign_key_check that every reference still holds
// before it commits, and turns foreign keys on again.
var noForeignKeys = map[int]bool{6: true}

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
		var err error
		if noForeignKeys[m.Version] {
			err = s.migrateNoForeignKeys(ctx, m)
		} else {
			err = inTx(ctx, s.write, func(tx *sql.Tx) error { return applyMigration(ctx, tx, m) })
		}
		if err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// migrateNoForeignKeys applies m as noForeignKeys says.
func (s *Store) migrateNoForeignKeys(ctx context.Context, m persistence.Migration) (err error) {
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA foreign_keys = OFF`); err != nil {
		return err
	}
	defer func() {
		// A connection left without foreign keys must not serve writes.
		if _, ferr := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA foreign_keys = ON`); ferr != nil {
			err = errors.Join(err, ferr)
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return inTx(ctx, conn, func(tx *sql.Tx) error {
		if err := applyMigration(ctx, tx, m); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `PRAGMA foreign_key_check`)
		if err != nil {
			return err
		}
		defer rows.Close()
		if rows.Next() {
			var table, parent string
			var rowid sql.NullInt64
			var fk int
			if err := rows.Scan(&table, &rowid, &parent, &fk); err != nil {
				return err
			}
			return fmt.Errorf("a row of %s (rowid %v) refers to a missing row of %s", table, rowid.Int64, parent)
		}
		return rows.Err()
	})
}

// applyMigration applies m in tx unless schema_migrations has it.
func applyMigration(ctx context.Context, tx *sql.Tx, m persistence.Migration) error {
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT`); err != nil {
		return err
	}
	var done bool
	err := tx.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?)`, m.Version).Scan(&done)
	if err != nil || done {
		return err
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if step := goSteps[m.Version]; step != nil {
		if err := step(ctx, tx); err != nil {
			return err
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
		m.Version, micros(time.Now()))
	return err
}

// Ping checks the read pool only: the writer may be busy with a long
// transaction, and a health check must not queue behind it.
func (s *Store) Ping(ctx context.Context) error { return s.read.PingContext(ctx) }

func (s *Store) Close() error { return errors.Join(s.read.Close(), s.write.Close()) }

func (s *Store) CreateUser(ctx context.Context, u persistence.User) error {
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now()
	}
	return insertUser(ctx, s.write, u)
}

const userColumns = `id, name, email, password_hash, profile, token_generation, created_at`

func (s *Store) UserByID(ctx context.Context, id int64) (persistence.User, error) {
	return s.user(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id)
}

func (s *Store) UserByEmail(ctx context.Context, email string) (persistence.User, error) {
	return s.user(ctx, `SELECT `+userColumns+` FROM users WHERE email_folded = ?`, persistence.Fold(email))
}

func (s *Store) UserByName(ctx context.Context, name string) (persistence.User, error) {
	return s.user(ctx, `SELECT `+userColumns+` FROM users WHERE name_folded = ?`, persistence.NameKey(name))
}

func (s *Store) user(ctx context.Context, query string, arg any) (persistence.User, error) {
	return scanUser(s.read.QueryRowContext(ctx, query, arg))
}

// scanUser scans userColumns, then extra.
func scanUser(row scanner, extra ...any) (persistence.User, error) {
	var u persistence.User
	var created int64
	dest := append([]any{&u.ID, &u.Name, &u.Email, &u.PasswordHash, &u.Profile, &u.TokenGeneration, &created}, extra...)
	if err := row.Scan(dest...); err != nil {
		return persistence.User{}, translate(err)
	}
	u.CreatedAt = fromMicros(created)
	return u, nil
}

func (s *Store) BumpTokenGeneration(ctx context.Context, userID int64) (int64, error) {
	var gen int64
	err := s.write.QueryRowContext(ctx,
		`UPDATE users SET token_generation = token_generation + 1 WHERE id = ? RETURNING token_generation`,
		userID).Scan(&gen)
	return gen, translate(err)
}

func (s *Store) ReplacePasswordHash(ctx context.Context, userID int64, oldHash, newHash string) (bool, error) {
	res, err := s.write.ExecContext(ctx,
		`UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?`, newHash, userID, oldHash)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (s *Store) PutPendingRegistration(ctx context.Context, p persistence.PendingRegistration, quota persistence.MailQuota) error {
	if p.CreatedAt.IsZero() {
		p.CreatedAt = time.Now()
	}
	name, email := persistence.NameKey(p.Name), persistence.Fold(p.Email)
	// The writer is one connection: puts for one email run one at a time.
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := taken(ctx, tx, name, email); err != nil {
			return err
		}
		var record string
		err := tx.QueryRowContext(ctx,
			`SELECT mail_times FROM pending_registrations WHERE email_folded = ?`, email).Scan(&record)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		record, ok := quota.Admit(record, p.CreatedAt)
		if !ok {
			return persistence.ErrTooManyMails
		}
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM pending_registrations WHERE email_folded = ?`, email); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO pending_registrations
			(key_hash, name, name_folded, email, email_folded, password_hash, mail_times, expires_at, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.KeyHash, p.Name, name, p.Email, email, p.PasswordHash, record, micros(p.ExpiresAt), micros(p.CreatedAt))
		return err
	})
}

func (s *Store) VerifyRegistration(ctx context.Context, keyHash []byte, now time.Time, userID int64) (persistence.User, error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return persistence.User{}, err
	}
	defer tx.Rollback()
	u := persistence.User{ID: userID, CreatedAt: fromMicros(micros(now))}
	err = tx.QueryRowContext(ctx, `DELETE FROM pending_registrations WHERE key_hash = ? AND expires_at > ?
		RETURNING name, email, password_hash`, keyHash, micros(now)).Scan(&u.Name, &u.Email, &u.PasswordHash)
	if err != nil {
		return persistence.User{}, translate(err)
	}
	if err := insertUser(ctx, tx, u); err != nil {
		// A taken name or email will not free itself, so the deletion
		// commits: the key can never succeed. Any other error rolls back
		// and keeps the key.
		if errors.Is(err, persistence.ErrEmailTaken) || errors.Is(err, persistence.ErrNameTaken) {
			if cerr := tx.Commit(); cerr != nil {
				return persistence.User{}, cerr
			}
		}
		return persistence.User{}, err
	}
	if err := tx.Commit(); err != nil {
		return persistence.User{}, err
	}
	return u, nil
}

func (s *Store) DeleteExpiredRegistrations(ctx context.Context, now time.Time) (int64, error) {
	return changed(s.write.ExecContext(ctx, `DELETE FROM pending_registrations WHERE expires_at <= ?`, micros(now)))
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
	if _, err := s.write.ExecContext(ctx,
		`INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`, name, g); err != nil {
		return nil, err
	}
	// A concurrent caller may have inserted first: return what is stored.
	return s.secret(ctx, name)
}

func (s *Store) secret(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := s.read.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = ?`, name).Scan(&v)
	return v, translate(err)
}

// inTx runs fn in a transaction on the writer and commits when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	return inTx(ctx, s.write, fn)
}

// inTx runs fn in a transaction of db and commits when fn returns nil.
func inTx(ctx context.Context, db interface {
	BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
}, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// readTx runs fn in a transaction on a reader: one connection and one
// snapshot for several queries.
func (s *Store) readTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// querier is *sql.DB or *sql.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// taken answers ErrEmailTaken or ErrNameTaken when a user holds the folded
// email or name, checking the email first. The unique indexes would catch
// it too, but which of two violated indexes an engine reports first is its
// own affair (SQLite checks the newest index first); they remain for races.
func taken(ctx context.Context, db querier, name, email string) error {
	var emailTaken, nameTaken bool
	err := db.QueryRowContext(ctx, `SELECT
		EXISTS (SELECT 1 FROM users WHERE email_folded = ?),
		EXISTS (SELECT 1 FROM users WHERE name_folded = ?)`, email, name).Scan(&emailTaken, &nameTaken)
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
	_, err := db.ExecContext(ctx, `INSERT INTO users
		(id, name, name_folded, email, email_folded, password_hash, profile, token_generation, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.Name, name, u.Email, email, u.PasswordHash, u.Profile, u.TokenGeneration, micros(u.CreatedAt))
	return translate(err)
}

// rekeyNames is migration 3's Go step: it writes name_folded of every user
// (persistence.RekeyUsers) and pending registration as NameKey gives it.
func rekeyNames(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, name, created_at FROM users`)
	if err != nil {
		return err
	}
	var users []persistence.NameRow
	for rows.Next() {
		var u persistence.NameRow
		var created int64
		if err := rows.Scan(&u.ID, &u.Name, &created); err != nil {
			rows.Close()
			return err
		}
		u.CreatedAt = fromMicros(created)
		users = append(users, u)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for id, key := range persistence.RekeyUsers(users) {
		if _, err := tx.ExecContext(ctx, `UPDATE users SET name_folded = ? WHERE id = ?`, key, id); err != nil {
			return err
		}
	}

	rows, err = tx.QueryContext(ctx, `SELECT key_hash, name FROM pending_registrations`)
	if err != nil {
		return err
	}
	type pending struct {
		key  []byte
		name string
	}
	var ps []pending
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.key, &p.name); err != nil {
			rows.Close()
			return err
		}
		ps = append(ps, p)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for _, p := range ps {
		if _, err := tx.ExecContext(ctx, `UPDATE pending_registrations SET name_folded = ? WHERE key_hash = ?`,
			persistence.NameKey(p.name), p.key); err != nil {
			return err
		}
	}
	return nil
}

// translate maps driver errors to the persistence sentinels and passes any
// other error (or nil) through. A foreign key violation means that a row
// referred to does not exist.
func translate(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return persistence.ErrNotFound
	}
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("%w: %w", persistence.ErrNotFound, err)
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		// SQLite names the column, not the index:
		// "UNIQUE constraint failed: users.email_folded".
		switch msg := se.Error(); {
		case strings.Contains(msg, "users.email_folded"):
			return persistence.ErrEmailTaken
		case strings.Contains(msg, "users.name_folded"):
			return persistence.ErrNameTaken
		}
	}
	return err
}

// micros is t as stored: unix microseconds, the sub-microsecond part
// truncated, as the PostgreSQL store does, so that both round-trip alike.
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
