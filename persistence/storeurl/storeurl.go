// Package storeurl opens the persistence.Store a database URL names:
// postgres://… or postgresql://… (package postgres) and sqlite:<path>
// (package sqlite). It is apart from package persistence, which the two
// stores import. The server, the rewind command and the load harness open
// their stores here, so that the harness links no part of the server.
package storeurl

import (
	"context"
	"fmt"
	"strings"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres"
	"github.com/rewind-chat/rewind/persistence/sqlite"
)

// Check tells whether url names a store REWIND can open:
// postgres://…, postgresql://… or sqlite:<path>. Its error is the one line
// a bad REWIND_DATABASE_URL stops start-up with.
func Check(url string) error {
	_, _, err := split(url)
	return err
}

// split returns the kind of store url names and what its Open takes: the
// whole URL for PostgreSQL (whose parameters, pool_max_conns among them,
// postgres.Open reads), the file path for SQLite.
func split(url string) (kind, rest string, err error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return "postgres", url, nil
	case strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(url, "sqlite:")
		if path == "" {
			return "", "", fmt.Errorf("database URL %q names no file: use sqlite:<path>", url)
		}
		return "sqlite", path, nil
	}
	return "", "", fmt.Errorf("database URL %q: unknown scheme, use postgres://… or sqlite:<path>", url)
}

// Open opens the store url names and applies its migrations.
func Open(ctx context.Context, url string) (persistence.Store, error) {
	kind, rest, err := split(url)
	if err != nil {
		return nil, err
	}
	var s persistence.Store
	if kind == "postgres" {
		s, err = postgres.Open(ctx, rest)
	} else {
		s, err = sqlite.Open(ctx, rest)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s store: %w", kind, err)
	}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrate %s store: %w", kind, err)
	}
	return s, nil
}
