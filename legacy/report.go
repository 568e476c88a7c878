package legacy

import (
	"database/sql"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind says what an Item is about. The words are stable: scripts may grep
// for them (docs/import-legacy.md lists them).
type Kind string

const (
	KindRenamed       Kind = "renamed"        // a user imported under another name
	KindConflict      Kind = "conflict"       // an id or email belongs to another account or message
	KindBadID         Kind = "bad-id"         // an id that is not a decimal number in 1..2^63-1
	KindBadTime       Kind = "bad-time"       // a created_at that does not parse
	KindBadPassword   Kind = "bad-password"   // a password that is not 128 hex digits
	KindBadText       Kind = "bad-text"       // a string the store refuses (invalid UTF-8, U+0000)
	KindBadList       Kind = "bad-list"       // mutual_users or mutual_requests that is not a JSON list
	KindOneSided      Kind = "one-sided"      // a friend listed by one side only
	KindUnknownUser   Kind = "unknown-user"   // a list entry naming no user, or the user itself
	KindDepends       Kind = "depends"        // needs a user that is not imported
	KindFriendRequest Kind = "friend-request" // a request between friends, or requests both ways
	KindBadTable      Kind = "bad-table"      // a DM table whose id is not the XOR of two users
	KindUnknownAuthor Kind = "unknown-author" // a DM row by neither member
	KindEmptyContent  Kind = "empty-content"  // a DM row with NULL or empty content
	KindRoomMismatch  Kind = "room-mismatch"  // a DM row whose room column is not its table's id
	KindDMList        Kind = "dm-list"        // dm_list and the DM tables disagree
	KindUnused        Kind = "unused"         // a table or column REWIND has no place for
	KindRefused       Kind = "refused"        // the store refused the write
)

// Item is one thing the import could not take as it is: a row, or an
// entry of a list in a row, with what was done about it.
type Item struct {
	Kind  Kind
	Table string // "user", "user.mutual_users", "DM_123", ...
	Key   string // the row within Table, e.g. "id=123"
	Done  string // what was done: "imported as \"alice-2\"", "not imported", "already present", ...
	Why   string
	Row   []Field // the row's values
}

// Field is one value of a row; Null for SQL NULL.
type Field struct {
	Name, Value string
	Null        bool
	// Secret values (password digests) are described, never printed.
	Secret bool
}

func nullField(name string, v sql.NullString) Field {
	return Field{Name: name, Value: v.String, Null: !v.Valid}
}

// maxValue is how many characters of a value a report line shows.
const maxValue = 60

// String is the item's report line:
//
//	kind  table key: done: why | name="value" ...
func (it Item) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-14s %s %s: %s", it.Kind, it.Table, it.Key, it.Done)
	if it.Why != "" {
		b.WriteString(": ")
		b.WriteString(it.Why)
	}
	if len(it.Row) > 0 {
		b.WriteString(" |")
		for _, f := range it.Row {
			b.WriteString(" ")
			b.WriteString(f.Name)
			b.WriteString("=")
			b.WriteString(f.display())
		}
	}
	return b.String()
}

func (f Field) display() string {
	switch {
	case f.Null:
		return "NULL"
	case f.Secret:
		return fmt.Sprintf("<%d characters>", utf8.RuneCountInString(f.Value))
	}
	return quoteTruncated(f.Value)
}

// quoteTruncated quotes s on one line (Go syntax: line breaks escaped,
// invalid UTF-8 as \x..), cut after maxValue characters.
func quoteTruncated(s string) string {
	n := utf8.RuneCountInString(s)
	if n <= maxValue {
		return strconv.Quote(s)
	}
	cut := 0
	for range maxValue {
		_, size := utf8.DecodeRuneInString(s[cut:])
		cut += size
	}
	return fmt.Sprintf("%s…(%d characters)", strconv.Quote(s[:cut]), n)
}

// Table counts what became of one table's rows (or list entries). Every
// row read is imported, already present, not imported or, for dm_list,
// checked: Read = Imported + Present + Skipped + Checked. Reported counts
// the report's items about the table, including imported rows that were
// changed (a renamed user).
type Table struct {
	Name                             string
	Read, Imported, Present, Skipped int
	Checked                          int // dm_list rows that name a DM table
	Reported                         int
}

// Result is what an import or a dry run did: per table, and the items of
// its report in the order they were found.
type Result struct {
	DryRun bool
	Tables []*Table
	Items  []Item
}

func (r *Result) table(name string) *Table {
	for _, t := range r.Tables {
		if t.Name == name {
			return t
		}
	}
	t := &Table{Name: name}
	r.Tables = append(r.Tables, t)
	return t
}

// Table returns the counts of the table named name, nil if none was read.
func (r *Result) Table(name string) *Table {
	for _, t := range r.Tables {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// WriteSummary writes one line per table, a line for all DM tables
// together, and what the numbers mean.
func (r *Result) WriteSummary(w io.Writer) error {
	all := &Table{}
	var dms int
	for _, t := range r.Tables {
		if strings.HasPrefix(t.Name, dmPrefix) {
			dms++
			all.Read += t.Read
			all.Imported += t.Imported
			all.Present += t.Present
			all.Skipped += t.Skipped
			all.Reported += t.Reported
		}
	}
	all.Name = fmt.Sprintf("all %d DM tables", dms)
	width := len(all.Name)
	for _, t := range r.Tables {
		width = max(width, len(t.Name))
	}
	line := func(name string, cols ...any) {
		fmt.Fprintf(w, "%-*s %8v %9v %16v %13v %9v%v\n", append([]any{width, name}, cols...)...)
	}
	line("table", "read", "imported", "already present", "not imported", "reported", "")
	for _, t := range append(r.Tables, all) {
		extra := ""
		if t.Checked > 0 {
			extra = fmt.Sprintf("  (%d name a DM table)", t.Checked)
		}
		line(t.Name, t.Read, t.Imported, t.Present, t.Skipped, t.Reported, extra)
	}
	var err error
	if r.DryRun {
		_, err = fmt.Fprintln(w, "dry run: nothing was written; \"imported\" counts what an import would write now.")
	} else {
		_, err = fmt.Fprintln(w, "each user, friendship, request and batch of messages was committed on its own: an interrupted import resumes when run again, and a second run finds everything already present.")
	}
	return err
}

// WriteReport writes the items, one line each.
func (r *Result) WriteReport(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "report: %d items not taken as they are\n", len(r.Items)); err != nil {
		return err
	}
	for _, it := range r.Items {
		if _, err := fmt.Fprintln(w, it.String()); err != nil {
			return err
		}
	}
	return nil
}
