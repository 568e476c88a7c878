package auth

import (
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

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

// CheckRegistration applies the rules of protocol.md §1 to the three
// fields. The name is NFC-normalized so that a second spelling of "Ä"
// cannot pass for another account.
func CheckRegistration(name, email, password string) (Registration, error) {
	name = norm.NFC.String(name)
	msg := ""
	switch {
	case name == "":
		msg = "name is not provided."
	case !validName(name):
		msg = "name must be 2 to 32 letters, digits, '_', '.' or '-'."
	case email == "":
		msg = "email is not provided."
	case !validEmail(email):
		msg = "email is not a valid address."
	case password == "":
		msg = "password is not provided."
	case len(password) < passwordMinLen || len(password) > passwordMaxLen:
		msg = "password must be 8 to 256 bytes long."
	}
	if msg != "" {
		return Registration{}, &RegistrationError{msg}
	}
	return Registration{Name: name, Email: email, Password: password}, nil
}

func validName(name string) bool {
	if n := utf8.RuneCountInString(name); n < nameMinRunes || n > nameMaxRunes {
		return false
	}
	for _, r := range name {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("_.-", r) {
			return false
		}
	}
	return true
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
