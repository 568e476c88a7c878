package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/legacy/legacytest"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/persistence/postgres/pgtest"
)

// summaryLine matches the summary's line for table with its five counts.
func summaryLine(table string, counts ...int) *regexp.Regexp {
	re := `(?m)^` + regexp.QuoteMeta(table)
	for _, n := range counts {
		re += ` +` + strconv.Itoa(n)
	}
	return regexp.MustCompile(re + `\b`)
}

func TestImportLegacy(t *testing.T) {
	dir := t.TempDir()
	f := legacytest.Default()
	mainPath, chatPath, err := f.Write(dir)
	require.NoError(t, err)
	storePath := filepath.Join(dir, "rewind.db")
	args := []string{"import-legacy", "--main", mainPath, "--chat", chatPath, "--database-url", "sqlite:" + storePath}

	// A dry run first: the same summary and report, and no store file.
	code, dry, stderr := runCmd(t, nil, append(args, "--dry-run")...)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, summaryLine("user", 15, 12, 0, 3, 8), dry)
	require.Contains(t, dry, "dry run: nothing was written")
	_, err = os.Stat(storePath)
	require.ErrorIs(t, err, os.ErrNotExist)

	code, stdout, stderr := runCmd(t, nil, args...)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, strings.Replace(dry, "dry run: nothing was written; \"imported\" counts what an import would write now.",
		"each user, friendship, request and batch of messages was committed on its own: an interrupted import resumes when run again, and a second run finds everything already present.", 1), stdout)
	alice, bob, minsu := f.User("alice"), f.User("bob"), f.User("minsu")
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^table +read +imported +already present +not imported +reported$`),
		summaryLine("user", 15, 12, 0, 3, 8),
		summaryLine("user.mutual_users", 7, 4, 0, 3, 3),
		summaryLine("user.mutual_requests", 7, 4, 0, 3, 5),
		summaryLine(legacytest.Table(alice, bob), 11, 6, 0, 5, 7),
		summaryLine(legacytest.Table(bob, minsu), legacytest.BigDM, legacytest.BigDM, 0, 0, 0),
		summaryLine("all 7 DM tables", 1220, 1212, 0, 8, 11),
		regexp.MustCompile(`(?m)^report: 30 items not taken as they are$`),
		regexp.MustCompile(`(?m)^renamed +user id=` + f.User("alice2").ID + `: imported as "alice-2": an earlier user holds "alice"`),
		regexp.MustCompile(`(?m)^unknown-author +` + legacytest.Table(alice, bob) + ` id=\d+: not imported: .* content="나는 `),
		regexp.MustCompile(`(?m)^bad-table +DM_12345 id=12345001: not imported: no two users' ids XOR to the table's chat id \| `),
		regexp.MustCompile(`(?m)^one-sided +user.mutual_users id=` + f.User("carol").ID + ` lists id=` + bob.ID + `: not imported`),
	} {
		require.Regexp(t, re, stdout)
	}
	require.Len(t, strings.Split(strings.TrimSpace(stdout[strings.Index(stdout, "report: "):]), "\n"), 31)
	// Not a terminal: one progress line per finished table.
	require.Regexp(t, `(?m)^user: 15 rows in `, stderr)
	require.Regexp(t, `(?m)^`+legacytest.Table(bob, minsu)+`: 1200 rows in `, stderr)
	require.NotContains(t, stderr, "\r")

	// Again: everything is there already.
	code, stdout, stderr = runCmd(t, nil, args...)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, summaryLine("user", 15, 0, 12, 3, 8), stdout)
	require.Regexp(t, summaryLine("all 7 DM tables", 1220, 0, 1212, 8, 11), stdout)
	require.Regexp(t, `(?m)^renamed +user id=`+f.User("alice2").ID+`: already present as "alice-2"`, stdout)
}

func TestImportLegacyRefusals(t *testing.T) {
	dir := t.TempDir()
	mainPath, chatPath, err := legacytest.Default().Write(dir)
	require.NoError(t, err)
	storePath := filepath.Join(dir, "rewind.db")
	db := "sqlite:" + storePath

	code, _, stderr := runCmd(t, nil, "import-legacy", "--main", mainPath, "--database-url", db)
	require.Equal(t, exitUsage, code)
	require.Equal(t, "rewind: usage: rewind import-legacy --main WIND_main.db --chat WIND_chat.db [--dry-run]\n", stderr)

	before, err := os.ReadFile(mainPath)
	require.NoError(t, err)
	code, _, stderr = runCmd(t, nil, "import-legacy", "--main", mainPath, "--chat", chatPath, "--database-url", "sqlite:"+mainPath)
	require.Equal(t, exitUsage, code)
	require.Equal(t, `rewind: invalid REWIND_DATABASE_URL (--database-url) "sqlite:`+mainPath+`": is the legacy database `+mainPath+", which is only read\n", stderr)
	after, err := os.ReadFile(mainPath)
	require.NoError(t, err)
	require.Equal(t, before, after)

	missing := filepath.Join(dir, "WIND_chat_old.db")
	code, stdout, stderr := runCmd(t, nil, "import-legacy", "--main", mainPath, "--chat", missing, "--database-url", db)
	require.Equal(t, 1, code)
	require.Empty(t, stdout)
	require.Equal(t, "rewind: legacy: chat database "+missing+": no such file\n", stderr)
	_, err = os.Stat(storePath)
	require.ErrorIs(t, err, os.ErrNotExist, "a missing file creates no store")
}

// TestImportLegacyDryRunOnPostgreSQL: a dry run does not migrate the
// store and reads it in read-only transactions.
func TestImportLegacyDryRunOnPostgreSQL(t *testing.T) {
	url := pgtest.NewSchemaURL(t)
	mainPath, chatPath, err := legacytest.Default().Write(t.TempDir())
	require.NoError(t, err)
	args := []string{"import-legacy", "--main", mainPath, "--chat", chatPath, "--database-url", url}

	code, _, stderr := runCmd(t, nil, append(args, "--dry-run")...)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "a dry run does not migrate (run `rewind migrate` first if it never was)")

	code, _, stderr = runCmd(t, nil, "migrate", "--database-url", url)
	require.Equal(t, 0, code, stderr)
	code, stdout, stderr := runCmd(t, nil, append(args, "--dry-run")...)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, summaryLine("user", 15, 12, 0, 3, 8), stdout)

	ctx := context.Background()
	store, err := openToRead(ctx, url)
	require.NoError(t, err)
	defer store.Close()
	err = store.CreateUser(ctx, persistence.User{ID: 1, Name: "x", Email: "x@example.test", PasswordHash: "$argon2id$x", CreatedAt: time.Now()})
	require.ErrorContains(t, err, "read-only transaction")

	code, stdout, stderr = runCmd(t, nil, args...)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, summaryLine("user", 15, 12, 0, 3, 8), stdout)
	code, stdout, stderr = runCmd(t, nil, append(args, "--dry-run")...)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, summaryLine("user", 15, 0, 12, 3, 8), stdout)
}
