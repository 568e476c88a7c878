package persistence_test

import (
	"math"
	"testing"
	"time"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/stretchr/testify/require"
)

func TestCursorBound(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)
	tests := []struct {
		name     string
		cursor   persistence.Cursor
		wantTime time.Time
		wantID   int64
	}{
		{"message", persistence.Cursor{Time: at, ID: 7}, at, 7},
		{"time", persistence.Cursor{Time: at}, at, math.MinInt64},
		{"time between microseconds", persistence.Cursor{Time: at.Add(time.Nanosecond)}, at.Add(time.Microsecond), math.MinInt64},
		{"id with a time between microseconds", persistence.Cursor{Time: at.Add(999 * time.Nanosecond), ID: 7}, at.Add(time.Microsecond), math.MinInt64},
		{"before 1970", persistence.Cursor{Time: time.Unix(0, -1500)}, time.Unix(0, -1000), math.MinInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotTime, gotID := tt.cursor.Bound()
			require.True(t, tt.wantTime.Equal(gotTime), "time %v, want %v", gotTime, tt.wantTime)
			require.Equal(t, tt.wantID, gotID)
		})
	}
}
