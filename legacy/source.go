package legacy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"slices"
	"strings"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// Source is the original backend's two databases, opened read-only.
type Source struct {
	main, chat *sql.DB
	mainPath   string
	chatPath   string
}

// Open opens WIND_main.db and WIND_chat.db read-only. A missing file, or a
// file without the tables the original created, is an error.
func Open(ctx context.Context, mainPath, chatPath string) (*Source, error) {
	main, err := openReadOnly(ctx, "main", mainPath)
	if err != nil {
		return nil, err
	}
	chat, err := openReadOnly(ctx, "chat", chatPath)
	if err != nil {
		main.Close()
		return nil, err
	}
	s := &Source{main: main, chat: chat, mainPath: mainPath, chatPath: chatPath}
	names, err := tableNames(ctx, main)
	if err == nil && !slices.Contains(names, "user") {
		err = fmt.Errorf("legacy: main database %s has no user table: is it WIND_main.db?", mainPath)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes both files.
func (s *Source) Close() error { return errors.Join(s.main.Close(), s.chat.Close()) }

// openReadOnly opens path with SQLite's own read-only mode. immutable=1
// tells SQLite that nothing else changes the file, so it takes no lock
// and creates no -wal or -shm beside it: the file is never written. The
// original backend must be stopped first.
func openReadOnly(ctx context.Context, which, path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("legacy: %s database %s: no such file", which, path)
		}
		return nil, fmt.Errorf("legacy: %s database: %w", which, err)
	}
	// A "file:" URI with an escaped path, so that a '?' or '#' in the path
	// is not taken for the start of the parameters.
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?mode=ro&immutable=1&_pragma=query_only(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("legacy: %s database %s: %w", which, path, err)
	}
	db.SetMaxOpenConns(1)
	// Reading the schema proves the file is a database at all.
	if _, err := tableNames(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("legacy: %s database %s: %w", which, path, err)
	}
	return db, nil
}

// tableNames lists the tables of db, SQLite's own left out, by name.
func tableNames(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx,
		`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// quote is name as an SQL identifier.
func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// userRow is one row of user, every value as the original stored it.
// CAST(... AS TEXT) keeps the driver from turning DATETIME columns into
// time.Time (it would read the naive string as UTC).
type userRow struct {
	ID, Name, CreatedAt, Email, Password         string
	Server, MutualUsers, MutualRequests, Profile sql.NullString
}

const userQuery = `SELECT ifnull(CAST(id AS TEXT), ''), ifnull(CAST(name AS TEXT), ''),
	ifnull(CAST(created_at AS TEXT), ''), ifnull(CAST(email AS TEXT), ''), ifnull(CAST(password AS TEXT), ''),
	CAST(server AS TEXT), CAST(mutual_users AS TEXT), CAST(mutual_requests AS TEXT), CAST(profile AS TEXT)
	FROM "user" ORDER BY rowid`

func (s *Source) users(ctx context.Context) ([]userRow, error) {
	rows, err := s.main.QueryContext(ctx, userQuery)
	if err != nil {
		return nil, fmt.Errorf("legacy: read user: %w", err)
	}
	defer rows.Close()
	var out []userRow
	for rows.Next() {
		var u userRow
		if err := rows.Scan(&u.ID, &u.Name, &u.CreatedAt, &u.Email, &u.Password,
			&u.Server, &u.MutualUsers, &u.MutualRequests, &u.Profile); err != nil {
			return nil, fmt.Errorf("legacy: read user: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("legacy: read user: %w", err)
	}
	return out, nil
}

// messageRow is one row of a DM table.
type messageRow struct {
	ID, Room, Author, CreatedAt string
	Content                     sql.NullString
}

func (s *Source) messages(ctx context.Context, table string) ([]messageRow, error) {
	rows, err := s.chat.QueryContext(ctx, `SELECT ifnull(CAST(id AS TEXT), ''), ifnull(CAST(room AS TEXT), ''),
		ifnull(CAST(author AS TEXT), ''), ifnull(CAST(created_at AS TEXT), ''), CAST(content AS TEXT)
		FROM `+quote(table)+` ORDER BY rowid`)
	if err != nil {
		return nil, fmt.Errorf("legacy: read %s: %w", table, err)
	}
	defer rows.Close()
	var out []messageRow
	for rows.Next() {
		var m messageRow
		if err := rows.Scan(&m.ID, &m.Room, &m.Author, &m.CreatedAt, &m.Content); err != nil {
			return nil, fmt.Errorf("legacy: read %s: %w", table, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("legacy: read %s: %w", table, err)
	}
	return out, nil
}

// genericRow is a row of a table the import does not take, for the
// report: its columns in order, NULL as a nil value.
type genericRow []Field

// anyRows reads every row of table in db.
func anyRows(ctx context.Context, db *sql.DB, table string) ([]genericRow, error) {
	cols, err := columns(ctx, db, table)
	if err != nil {
		return nil, err
	}
	casts := make([]string, len(cols))
	for i, c := range cols {
		casts[i] = "CAST(" + quote(c) + " AS TEXT)" // as stored (see userRow)
	}
	rows, err := db.QueryContext(ctx, `SELECT `+strings.Join(casts, ", ")+` FROM `+quote(table)+` ORDER BY rowid`)
	if err != nil {
		return nil, fmt.Errorf("legacy: read %s: %w", table, err)
	}
	defer rows.Close()
	var out []genericRow
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		dest := make([]any, len(cols))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("legacy: read %s: %w", table, err)
		}
		row := make(genericRow, len(cols))
		for i, c := range cols {
			row[i] = nullField(c, vals[i])
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("legacy: read %s: %w", table, err)
	}
	return out, nil
}

// columns returns the column names of table in db.
func columns(ctx context.Context, db *sql.DB, table string) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT * FROM `+quote(table)+` LIMIT 0`)
	if err != nil {
		return nil, fmt.Errorf("legacy: read %s: %w", table, err)
	}
	defer rows.Close()
	return rows.Columns()
}
