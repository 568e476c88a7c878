package persistence_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/persistence"
)

func TestNameKey(t *testing.T) {
	same := [][]string{
		{"ＡＬＩＣＥ", "Alice", "alice", "ALICE", "ａｌｉｃｅ"},
		{"ΣΑΣ", "σας", "σασ", "Σας"},
		{"straße", "STRASSE", "Strasse", "STRAẞE"},
		{"Ärger", "A\u0308RGER", "ärger"},
		{"ｶﾀｶﾅ", "カタカナ"},
	}
	for _, names := range same {
		for _, n := range names[1:] {
			require.Equal(t, persistence.NameKey(names[0]), persistence.NameKey(n), "%q and %q", names[0], n)
		}
	}
	differ := [][2]string{
		{"alice", "\u0430lice"}, // Cyrillic а
		{"alice", "alice2"},
		{"ärger", "arger"},
	}
	for _, d := range differ {
		require.NotEqual(t, persistence.NameKey(d[0]), persistence.NameKey(d[1]), "%q and %q", d[0], d[1])
	}
	require.Equal(t, "alice", persistence.NameKey("ＡＬＩＣＥ"))
	// Text the profile refuses still has a key.
	require.Equal(t, "a b", persistence.NameKey("A B"))
}

func TestRekeyUsers(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(int64(s), 0) }
	keys := persistence.RekeyUsers([]persistence.NameRow{
		{ID: 1, Name: "Alice", CreatedAt: at(2)},
		{ID: 2, Name: "ＡＬＩＣＥ", CreatedAt: at(1)}, // older: keeps the key
		{ID: 3, Name: "bob", CreatedAt: at(3)},
		{ID: 4, Name: "straße", CreatedAt: at(4)},
		{ID: 5, Name: "STRASSE", CreatedAt: at(4)}, // same time: the lower id keeps it
		{ID: 6, Name: "alice#1", CreatedAt: at(5)}, // a stored name that looks like a moved key
	})
	require.Equal(t, map[int64]string{
		1: "alice#1", 2: "alice", 3: "bob", 4: "strasse", 5: "strasse#5", 6: "alice#1#6",
	}, keys)
}

func TestMailQuotaAdmit(t *testing.T) {
	q := persistence.MailQuota{Max: 2, Window: time.Hour}
	t0 := time.UnixMicro(1_000_000_000)
	rec, ok := q.Admit("", t0)
	require.True(t, ok)
	require.Equal(t, "1000000000", rec)
	rec, ok = q.Admit(rec, t0.Add(time.Minute))
	require.True(t, ok)
	_, ok = q.Admit(rec, t0.Add(59*time.Minute))
	require.False(t, ok)
	rec, ok = q.Admit(rec, t0.Add(time.Hour)) // the first one left the window
	require.True(t, ok)
	require.Equal(t, "1060000000,4600000000", rec)
	_, ok = q.Admit("garbage,", t0)
	require.True(t, ok, "unreadable entries are dropped")
	rec, ok = persistence.MailQuota{}.Admit("1,2,3", t0)
	require.True(t, ok, "no quota")
	require.Empty(t, rec)
}
