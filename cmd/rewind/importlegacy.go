package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/bwmarrin/snowflake"

	"github.com/rewind-chat/rewind/legacy"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres"
	"github.com/rewind-chat/rewind/persistence/sqlite"
	"github.com/rewind-chat/rewind/persistence/storeurl"
)

// importLegacy copies the original backend's databases into the store
// (protocol.md §5, docs/import-legacy.md). The summary and the report go
// to stdout, progress to stderr. A report is no error: the exit code is 0
// unless something failed or a signal stopped the run.
func importLegacy(args []string, stdout, stderr io.Writer) error {
	s := newSettings("import-legacy")
	s.addDatabaseURL()
	s.add("REWIND_NODE_ID", "0", "snowflake node id, 0..1023, for the ids of the DM rooms created")
	mainDB := s.fs.String("main", "", "the original backend's WIND_main.db (read only)")
	chatDB := s.fs.String("chat", "", "the original backend's WIND_chat.db (read only)")
	dryRun := s.fs.Bool("dry-run", false, "read and check everything, print the summary and report, write nothing")
	if err := parse(s, args, stdout); err != nil {
		return err
	}
	if *mainDB == "" || *chatDB == "" {
		return usageError{errors.New("usage: rewind import-legacy --main WIND_main.db --chat WIND_chat.db [--dry-run]")}
	}
	node, err := s.integer("REWIND_NODE_ID", 0, 1023)
	if err != nil {
		return usageError{err}
	}
	dbURL := s.get("REWIND_DATABASE_URL")
	if err := storeurl.Check(dbURL); err != nil {
		return usageError{s.invalid("REWIND_DATABASE_URL", err)}
	}
	if err := notTheSource(dbURL, *mainDB, *chatDB); err != nil {
		return usageError{s.invalid("REWIND_DATABASE_URL", err)}
	}
	ids, err := snowflake.NewNode(node)
	if err != nil {
		return err
	}

	// A signal stops the import between two writes; what is written stays
	// and the next run resumes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // a second signal kills at once
	// The source first: a missing file must not create or migrate a store.
	src, err := legacy.Open(ctx, *mainDB, *chatDB)
	if err != nil {
		return err
	}
	defer src.Close()
	opts := legacy.Options{
		NewID:    func() int64 { return ids.Generate().Int64() },
		Progress: stderr,
		Live:     isTerminal(stderr),
	}

	if *dryRun {
		store, err := openToRead(ctx, dbURL)
		if err != nil {
			return err
		}
		defer store.Close()
		if _, err := store.UserByID(ctx, 1); err != nil && !errors.Is(err, persistence.ErrNotFound) {
			return fmt.Errorf("dry run: cannot read the store, which a dry run does not migrate (run `rewind migrate` first if it never was): %w", err)
		}
		res, err := src.DryRun(ctx, store, opts)
		return finish(ctx, res, err, stdout)
	}
	store, err := storeurl.Open(ctx, dbURL)
	if err != nil {
		return err
	}
	defer store.Close()
	res, err := src.Import(ctx, store, opts)
	return finish(ctx, res, err, stdout)
}

// finish prints the summary and the report of what was done, also when
// the run stopped early.
func finish(ctx context.Context, res *legacy.Result, err error, stdout io.Writer) error {
	if res != nil {
		if werr := errors.Join(res.WriteSummary(stdout), res.WriteReport(stdout)); werr != nil && err == nil {
			err = werr
		}
	}
	if ctx.Err() != nil {
		return errors.New("import-legacy: stopped by a signal; what the summary counts is stored, and running the same command again resumes")
	}
	return err
}

// openToRead opens the store for a dry run without migrating it, so that
// nothing is written: PostgreSQL in read-only transactions; SQLite as it
// is, or, when its file does not exist, an empty store in a temporary
// directory, so that the file is not created.
func openToRead(ctx context.Context, dbURL string) (persistence.Store, error) {
	path, ok := strings.CutPrefix(dbURL, "sqlite:")
	if !ok {
		s, err := postgres.Open(ctx, readOnlyURL(dbURL))
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		s, err := sqlite.Open(ctx, path)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	dir, err := os.MkdirTemp("", "rewind-dry-run-")
	if err != nil {
		return nil, err
	}
	s, err := sqlite.Open(ctx, filepath.Join(dir, "empty.db"))
	if err == nil {
		if err = s.Migrate(ctx); err != nil {
			s.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return tempStore{Store: s, dir: dir}, nil
}

// tempStore is a store in a directory of its own, removed on Close.
type tempStore struct {
	persistence.Store
	dir string
}

func (t tempStore) Close() error { return errors.Join(t.Store.Close(), os.RemoveAll(t.dir)) }

// readOnlyURL makes every transaction of a PostgreSQL session read-only
// (pgx sends unknown URL parameters as run-time parameters).
func readOnlyURL(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL // postgres.Open reports it
	}
	q := u.Query()
	q.Set("default_transaction_read_only", "on")
	u.RawQuery = q.Encode()
	return u.String()
}

// notTheSource refuses a SQLite store that is one of the legacy files:
// the import would migrate REWIND's tables into the file it must only
// read.
func notTheSource(dbURL string, sources ...string) error {
	path, ok := strings.CutPrefix(dbURL, "sqlite:")
	if !ok {
		return nil
	}
	store, err := os.Stat(path)
	if err != nil {
		return nil // a new file is none of them
	}
	for _, src := range sources {
		if fi, err := os.Stat(src); err == nil && os.SameFile(store, fi) {
			return fmt.Errorf("is the legacy database %s, which is only read", src)
		}
	}
	return nil
}

// isTerminal reports whether w is a terminal, where progress is redrawn
// in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
