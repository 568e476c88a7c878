package persistence

import "strings"

// Fold is the case folding under which names and emails are unique and
// looked up. Stores keep Fold's result in *_folded columns, computed in Go
// rather than by SQL lower(), because SQLite's lower() folds ASCII only and
// both dialects must treat "Ärger" and "äRGER" as the same name.
func Fold(s string) string { return strings.ToLower(s) }
