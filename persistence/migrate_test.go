package persistence_test

import (
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/stretchr/testify/require"
)

func TestReadMigrations(t *testing.T) {
	file := func(sql string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(sql)} }
	tests := []struct {
		name    string
		files   fstest.MapFS
		want    []persistence.Migration
		wantErr string
	}{
		{
			name: "ordered by version",
			files: fstest.MapFS{
				"m/0002_b.sql": file("B"),
				"m/0001_a.sql": file("A"),
				"m/0003_c.sql": file("C"),
			},
			want: []persistence.Migration{
				{Version: 1, Name: "0001_a.sql", SQL: "A"},
				{Version: 2, Name: "0002_b.sql", SQL: "B"},
				{Version: 3, Name: "0003_c.sql", SQL: "C"},
			},
		},
		{
			name:    "gap",
			files:   fstest.MapFS{"m/0001_a.sql": file("A"), "m/0003_c.sql": file("C")},
			wantErr: "want version 2",
		},
		{
			name:    "not starting at one",
			files:   fstest.MapFS{"m/0002_b.sql": file("B")},
			wantErr: "want version 1",
		},
		{
			name:    "duplicate",
			files:   fstest.MapFS{"m/0001_a.sql": file("A"), "m/0001_b.sql": file("B")},
			wantErr: "share version 1",
		},
		{
			name:    "bad name",
			files:   fstest.MapFS{"m/0001_a.sql": file("A"), "m/2_b.sql": file("B")},
			wantErr: "not NNNN_name.sql",
		},
		{
			name:    "empty",
			files:   fstest.MapFS{"m": &fstest.MapFile{Mode: fs.ModeDir | 0o755}},
			wantErr: "no migrations",
		},
		{
			name:    "missing dir",
			files:   fstest.MapFS{},
			wantErr: "read migrations",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := persistence.ReadMigrations(tt.files, "m")
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
