package server_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"path"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"
)

// TestNoSecretStoredOrLogged signs a user up and logs them in and out, then
// reads every row of every table and the whole log: neither holds the
// password, the token or the verification key, plain or as a SHA-256.
func TestNoSecretStoredOrLogged(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db)
		const password = "Sw0rdf1sh-secret"
		n.register("trent", "trent@example.test", password)
		link := n.mailedLink("trent@example.test")
		key := path.Base(link)
		n.get(link, "")
		token := n.login("trent@example.test", password)
		n.logout(token)
		n.stop() // flush the log, release the database

		secrets := map[string]string{"password": password, "token": token, "key": key}
		for name, s := range secrets {
			sum := sha256.Sum256([]byte(s))
			secrets[name+" sha256"] = hex.EncodeToString(sum[:])
			secrets[name+" raw sha256"] = string(sum[:])
		}
		dump := dumpDatabase(t, db)
		require.Contains(t, dump, "trent@example.test", "the dump reads the users table")
		require.Contains(t, dump, "$argon2id$v=19$m=19456,t=2,p=1$", "passwords are argon2id with OWASP parameters")
		log := n.log.String()
		require.Contains(t, log, "/api/v1/auth/email_verify/{key}", "the request log names the route")
		for name, s := range secrets {
			require.NotContains(t, dump, s, "the database holds the %s", name)
			require.NotContains(t, log, s, "the log holds the %s", name)
		}
	})
}

// dumpDatabase renders every row of every table as text.
func dumpDatabase(t *testing.T, databaseURL string) string {
	t.Helper()
	var db *sql.DB
	var err error
	var tables string
	if file, ok := strings.CutPrefix(databaseURL, "sqlite:"); ok {
		db, err = sql.Open("sqlite", file)
		tables = `SELECT name FROM sqlite_master WHERE type = 'table'`
	} else {
		db, err = sql.Open("pgx", databaseURL)
		u, perr := url.Parse(databaseURL)
		require.NoError(t, perr)
		tables = fmt.Sprintf(`SELECT table_name FROM information_schema.tables WHERE table_schema = '%s'`, u.Query().Get("search_path"))
	}
	require.NoError(t, err)
	defer db.Close()
	ctx := context.Background()
	names := queryStrings(t, db, tables)
	require.Contains(t, names, "users")
	var b strings.Builder
	for _, table := range names {
		rows, err := db.QueryContext(ctx, `SELECT * FROM `+table)
		require.NoError(t, err)
		cols, err := rows.Columns()
		require.NoError(t, err)
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			require.NoError(t, rows.Scan(ptrs...))
			for _, v := range vals {
				if raw, ok := v.([]byte); ok {
					fmt.Fprintf(&b, "%s %x ", raw, raw)
				} else {
					fmt.Fprintf(&b, "%v ", v)
				}
			}
			b.WriteString("\n")
		}
		require.NoError(t, rows.Err())
		rows.Close()
	}
	return b.String()
}

func queryStrings(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.Query(query)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}
