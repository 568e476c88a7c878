package auth_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"
	"golang.org/x/text/unicode/norm"
	"golang.org/x/text/width"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/persistence"
)

// FuzzName holds the name rule of protocol.md §1 to its properties for any
// input: it never panics; a name it accepts is 2 to 32 letters, digits,
// '_', '.' or '-', stored composed; the key (persistence.NameKey) of an
// accepted name is valid UTF-8, a key of itself, and the same for the
// name's lower-cased, case-folded and fullwidth spellings.
func FuzzName(f *testing.F) {
	for _, s := range []string{
		"alice", "Alice", "ＡＬＩＣＥ", "ΣΑΣ", "σας", "straße", "STRASSE", "\u0430lice",
		"山田たろう", "김哲洙", "Ärger_2.0-x", "A\u0308rger", "İstanbul", "ıi", "ǅemal",
		"a\x00b", "\xff\xfe", "ab\u200d", "שלום1", "1שלום", "ﬁx", "ｶﾀｶﾅ", "タロウー",
	} {
		f.Add(s)
	}
	lower, fold := cases.Lower(language.Und), cases.Fold()
	f.Fuzz(func(t *testing.T, s string) {
		_ = persistence.NameKey(s) // any text has a key
		reg, err := auth.CheckRegistration(s, "fuzz@example.test", "password1")
		if err != nil {
			if _, ok := err.(*auth.RegistrationError); !ok {
				t.Fatalf("CheckRegistration(%q): %T %v", s, err, err)
			}
			return
		}
		name := reg.Name
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			t.Fatalf("accepted %q: not valid UTF-8 without U+0000", s)
		}
		if name != norm.NFC.String(s) {
			t.Fatalf("accepted %q as %q, not its NFC form", s, name)
		}
		if n := utf8.RuneCountInString(name); n < 2 || n > 32 {
			t.Fatalf("accepted %q: %d characters", name, n)
		}
		for _, r := range name {
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("_.-", r) {
				t.Fatalf("accepted %q with %U", name, r)
			}
		}
		if auth.CheckName(name) != nil {
			t.Fatalf("CheckRegistration accepted %q, CheckName does not", name)
		}
		key := persistence.NameKey(name)
		if !utf8.ValidString(key) || key == "" {
			t.Fatalf("key of %q is %q", name, key)
		}
		if k := persistence.NameKey(key); k != key {
			t.Fatalf("key of %q is %q, whose key is %q", name, key, k)
		}
		for _, other := range []string{lower.String(name), fold.String(name), width.Widen.String(name)} {
			if k := persistence.NameKey(other); k != key {
				t.Fatalf("%q has key %q, its spelling %q has %q", name, key, other, k)
			}
		}
	})
}
