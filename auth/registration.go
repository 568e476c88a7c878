package auth

import (
	"net/mail"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
	"golang.org/x/text/unicode/norm"
)

// Registration rules of protocol.md §1.
const (
	nameMinRunes   = 2
	nameMaxRunes   = 32
	emailMaxBytes  = 254
	passwordMinLen = 8
	passwordMaxLen = 256
)

// Registration is a checked request for an account.
type Registration struct {
	Name, Email, Password string
}

// RegistrationError names the first missing or invalid field; its text is
// the HTTP API's 400 message.
type RegistrationError struct{ Message string }

func (e *RegistrationError) Error() string { return e.Message }

// The refusals of the name rule.
const (
	msgNameFormat = "name must be 2 to 32 letters, digits, '_', '.' or '-'."
	msgNameMixed  = "name mixes scripts."
)

// TextError is the message for a field that is not valid UTF-8 or holds
// U+0000, which no store keeps (PostgreSQL refuses NUL in text).
func TextError(field string) string {
	return field + " must be valid UTF-8 without U+0000."
}

// ValidText reports whether s is valid UTF-8 without U+0000.
func ValidText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// CheckRegistration applies the rules of protocol.md §1 to the three
// fields. The name is NFC-normalized, so that a second spelling of "Ä" is
// stored as the first; stores compare names by persistence.NameKey.
func CheckRegistration(name, email, password string) (Registration, error) {
	msg := ""
	switch {
	case !ValidText(name):
		msg = TextError("name")
	case !ValidText(email):
		msg = TextError("email")
	case !ValidText(password):
		msg = TextError("password")
	}
	if msg != "" {
		return Registration{}, &RegistrationError{msg}
	}
	name = norm.NFC.String(name)
	switch {
	case name == "":
		msg = "name is not provided."
	default:
		msg = nameProblem(name)
	}
	if msg == "" {
		switch {
		case email == "":
			msg = "email is not provided."
		case !validEmail(email):
			msg = "email is not a valid address."
		case password == "":
			msg = "password is not provided."
		case len(password) < passwordMinLen || len(password) > passwordMaxLen:
			msg = "password must be 8 to 256 bytes long."
		}
	}
	if msg != "" {
		return Registration{}, &RegistrationError{msg}
	}
	return Registration{Name: name, Email: email, Password: password}, nil
}

// CheckName applies the name rule alone to an NFC name that is valid
// UTF-8: nil when a registration may take it.
func CheckName(name string) error {
	if msg := nameProblem(name); msg != "" {
		return &RegistrationError{msg}
	}
	return nil
}

// nameProblem is the refusal of name, "" when it is a valid name: 2 to 32
// letters, digits, '_', '.' or '-' that the PRECIS UsernameCaseMapped
// profile accepts, whose letters come from one script, or from the mixes
// one language writes (Han with Hiragana and Katakana, Han with Hangul).
func nameProblem(name string) string {
	if n := utf8.RuneCountInString(name); n < nameMinRunes || n > nameMaxRunes {
		return msgNameFormat
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("_.-", r) {
			return msgNameFormat
		}
	}
	// The profile refuses what its classes disallow (compatibility
	// characters, titlecase digraphs, …) and right-to-left names that break
	// the Bidi Rule (RFC 5893).
	if _, err := precis.UsernameCaseMapped.String(name); err != nil {
		return msgNameFormat
	}
	if !oneScript(name) {
		return msgNameMixed
	}
	return ""
}

// unifiedScripts are the script sets a name may mix: those of Japanese and
// of Korean.
var unifiedScripts = []map[string]bool{
	{"Han": true, "Hiragana": true, "Katakana": true},
	{"Han": true, "Hangul": true},
}

// oneScript reports whether the letters of name come from one script or
// one of unifiedScripts. Digits, '_', '.', '-', and letters of the Common
// script (such as the prolonged sound mark ー) go with any script.
func oneScript(name string) bool {
	seen := map[string]bool{}
	for _, r := range name {
		if unicode.IsDigit(r) || r < utf8.RuneSelf && !unicode.IsLetter(r) {
			continue
		}
		if s := scriptOf(r); s != "" {
			seen[s] = true
		}
	}
	if len(seen) <= 1 {
		return true
	}
next:
	for _, allowed := range unifiedScripts {
		for s := range seen {
			if !allowed[s] {
				continue next
			}
		}
		return true
	}
	return false
}

// scripts are unicode.Scripts but Common and Inherited, most used first.
var scripts = func() []string {
	first := []string{"Latin", "Han", "Hangul", "Hiragana", "Katakana", "Cyrillic", "Greek", "Arabic", "Hebrew"}
	rank := map[string]int{}
	for i, s := range first {
		rank[s] = i + 1
	}
	var out []string
	for s := range unicode.Scripts {
		if s != "Common" && s != "Inherited" {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		ri, rj := rank[out[i]], rank[out[j]]
		switch {
		case ri != 0 && rj != 0:
			return ri < rj
		case ri != 0 || rj != 0:
			return ri != 0
		}
		return out[i] < out[j]
	})
	return out
}()

// scriptOf is the script of r, "" for Common, Inherited and unassigned.
func scriptOf(r rune) string {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' {
			return "Latin"
		}
		return ""
	}
	for _, s := range scripts {
		if unicode.Is(unicode.Scripts[s], r) {
			return s
		}
	}
	return ""
}

// validEmail accepts a bare RFC 5322 address (no display name, no
// comments) with a domain part.
func validEmail(email string) bool {
	if len(email) > emailMaxBytes {
		return false
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" {
		return false
	}
	at := strings.LastIndexByte(email, '@')
	return at > 0 && at < len(email)-1
}
