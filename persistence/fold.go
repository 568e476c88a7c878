package persistence

import "strings"

// Fold is the case folding under which emails are unique and looked up
// (names use NameKey). Stores keep Fold's result in email_folded columns,
// computed in Go rather than by SQL lower(), because SQLite's lower() folds
// ASCII only and both dialects must treat "Ä@x.io" and "ä@X.IO" alike.
func Fold(s string) string { return strings.ToLower(s) }
