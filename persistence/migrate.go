package persistence

import (
	"cmp"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
)

// Migration is one schema change, read from a file named NNNN_name.sql.
type Migration struct {
	Version int
	Name    string // the file name, e.g. "0001_init.sql"
	SQL     string
}

var migrationFile = regexp.MustCompile(`^(\d{4})_\w+\.sql$`)

// ReadMigrations returns the migrations in dir of fsys ordered by version.
// Versions must run 1, 2, 3, … without a gap or a duplicate: two branches
// that both add number 7 must fail loudly, not have one of them skipped on
// databases that already recorded 7.
func ReadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("persistence: read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		m := migrationFile.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			return nil, fmt.Errorf("persistence: migration %q: name is not NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1]) // four digits always parse
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("persistence: read migration: %w", err)
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("persistence: no migrations in %q", dir)
	}
	slices.SortStableFunc(ms, func(a, b Migration) int { return cmp.Compare(a.Version, b.Version) })
	for i, m := range ms {
		switch {
		case i > 0 && m.Version == ms[i-1].Version:
			return nil, fmt.Errorf("persistence: migrations %q and %q share version %d", ms[i-1].Name, m.Name, m.Version)
		case m.Version != i+1:
			return nil, fmt.Errorf("persistence: migration %q: want version %d (no gaps)", m.Name, i+1)
		}
	}
	return ms, nil
}
