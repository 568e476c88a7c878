// Package pgtest gives tests an isolated PostgreSQL schema on the test
// server, or skips them when there is none.
//
// The server is $REWIND_TEST_DATABASE_URL (a postgres:// URL), by default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable. When it is
// unreachable, tests skip, unless REWIND_REQUIRE_POSTGRES=1 (as in CI) makes
// them fail.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const defaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func baseURL() string {
	if u := os.Getenv("REWIND_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return defaultURL
}

// Required reports whether REWIND_REQUIRE_POSTGRES=1 forbids skipping.
func Required() bool { return os.Getenv("REWIND_REQUIRE_POSTGRES") == "1" }

// probe connects once per test binary, so that an unreachable server costs
// one connect timeout, not one per test.
var probe = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := connect(ctx)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
})

// Available returns the test server's URL without its password, and nil
// when the server answers or the reason it cannot be used.
func Available() (string, error) { return redact(baseURL()), probe() }

// NewSchemaURL creates a schema rewind_t_<random hex>, drops it with
// everything in it when t ends, and returns the server URL whose search_path
// is that schema. It skips t when the server is unreachable, or fails it
// when Required.
func NewSchemaURL(t testing.TB) string {
	t.Helper()
	if err := probe(); err != nil {
		reason := fmt.Sprintf("PostgreSQL at %s unreachable: %v", redact(baseURL()), err)
		if Required() {
			t.Fatalf("%s (REWIND_REQUIRE_POSTGRES=1)", reason)
		}
		t.Skipf("%s (set REWIND_TEST_DATABASE_URL; REWIND_REQUIRE_POSTGRES=1 fails instead of skipping)", reason)
	}
	u, err := url.Parse(baseURL())
	if err != nil {
		t.Fatalf("pgtest: REWIND_TEST_DATABASE_URL: %v", err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	schema := "rewind_t_" + hex.EncodeToString(b)
	exec(t, "CREATE SCHEMA "+schema)
	t.Cleanup(func() { exec(t, "DROP SCHEMA "+schema+" CASCADE") })

	q := u.Query()
	q.Set("search_path", schema) // pgx sends unknown parameters as runtime parameters
	u.RawQuery = q.Encode()
	return u.String()
}

// exec runs sql on a connection of its own, so that it works in a cleanup
// after the test's pools are closed.
func exec(t testing.TB, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := connect(ctx)
	if err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

func connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, baseURL())
	if err != nil {
		// One line, whatever the driver wrote.
		return nil, fmt.Errorf("%s", strings.Join(strings.Fields(err.Error()), " "))
	}
	return conn, nil
}

// redact drops the password from a URL so that it can be logged.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	return u.String()
}
