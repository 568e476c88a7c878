package persistence

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"golang.org/x/text/cases"
	"golang.org/x/text/secure/precis"
	"golang.org/x/text/unicode/norm"
	"golang.org/x/text/width"
)

// NameKey is the form under which names are unique and looked up
// (protocol.md §1): the PRECIS UsernameCaseMapped form of RFC 8265 (width
// folded, lower-cased, NFC), then Unicode full case folding, in NFC. So
// "ＡＬＩＣＥ", "Alice" and "alice" have one key, and so have "ΣΑΣ" and
// "σας", and "straße" and "STRASSE".
//
// A string the profile refuses (no registration can create one, but a name
// stored before the rule, or a lookup of any text, may be one) is width
// folded, case folded and composed instead, so that every string has a key.
// Stores keep the key in the name_folded columns, computed here in Go, so
// that every store compares names alike.
func NameKey(name string) string {
	s, err := precis.UsernameCaseMapped.String(name)
	if err != nil {
		s = width.Fold.String(name)
	}
	// A Caser keeps state: one per call, never shared between goroutines.
	return norm.NFC.String(cases.Fold().String(s))
}

// NameRow is a stored name to key again: a user, or a pending
// registration.
type NameRow struct {
	ID        int64 // the user's id; 0 for a pending registration
	Name      string
	CreatedAt time.Time
}

// RekeyUsers returns the name key of each user, by id, for a migration that
// changes the key. Names are kept as they are spelled. Where two users'
// names now share a key, the oldest user (then the lowest id) keeps it and
// each other one gets the key followed by "#" and its id: a key that no
// name can have ('#' is not a name character), so the account keeps
// working (login by email, tokens, DMs) and the unique index holds, but a
// lookup by that name finds the oldest one.
func RekeyUsers(users []NameRow) map[int64]string {
	users = slices.Clone(users)
	slices.SortFunc(users, func(a, b NameRow) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	keys := make(map[int64]string, len(users))
	held := make(map[string]bool, len(users))
	for _, u := range users {
		k := NameKey(u.Name)
		if held[k] {
			k += "#" + strconv.FormatInt(u.ID, 10)
			for held[k] { // only a name stored with '#' in it can be there
				k += "#"
			}
		}
		held[k] = true
		keys[u.ID] = k
	}
	return keys
}
