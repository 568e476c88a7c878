package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres"
	"github.com/rewind-chat/rewind/persistence/sqlite"
)

// CheckDatabaseURL tells whether url names a store REWIND can open:
// postgres://…, postgresql://… or sqlite:<path>.
func CheckDatabaseURL(url string) error {
	_, _, err := splitDatabaseURL(url)
	return err
}

func splitDatabaseURL(url string) (kind, rest string, err error) {
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

// OpenStore opens the store url names and applies its migrations.
func OpenStore(ctx context.Context, url string) (persistence.Store, error) {
	kind, rest, err := splitDatabaseURL(url)
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
