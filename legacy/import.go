package legacy

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // Asia/Seoul loads on machines without a zone database
	"unicode/utf8"

	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/protocol"
)

// Reader is the part of the store the import reads. A dry run gets only
// this, so it cannot write.
type Reader interface {
	UserByID(ctx context.Context, id int64) (persistence.User, error)
	UserByEmail(ctx context.Context, email string) (persistence.User, error)
	UserByName(ctx context.Context, name string) (persistence.User, error)
	AreFriends(ctx context.Context, a, b int64) (bool, error)
	FriendLists(ctx context.Context, userID int64) (incoming, outgoing, friends []persistence.User, err error)
	FindDMRoom(ctx context.Context, a, b int64) (int64, error)
	MessageByID(ctx context.Context, roomID, id int64) (persistence.Message, error)
	History(ctx context.Context, roomID int64, before persistence.Cursor, limit int) ([]persistence.Message, error)
}

// writer is the part of the store the import writes through.
type writer interface {
	CreateUser(ctx context.Context, u persistence.User) error
	RequestFriend(ctx context.Context, from, to int64, now time.Time) (persistence.FriendResult, error)
	AcceptFriend(ctx context.Context, me, from int64, now time.Time) error
	EnsureDMRoom(ctx context.Context, a, b, newID int64) (int64, error)
	WriteMessages(ctx context.Context, ops []persistence.MessageOp) ([]persistence.MessageResult, error)
}

var (
	_ Reader = persistence.Store(nil)
	_ writer = persistence.Store(nil)
)

// Options of Import and DryRun.
type Options struct {
	// NewID returns the id of each DM room the import creates (a
	// snowflake of the operator's REWIND_NODE_ID); required by Import.
	NewID func() int64
	// Progress, when set, receives progress lines; Live redraws one line
	// per table in place, for a terminal.
	Progress io.Writer
	Live     bool
	// BatchSize is how many messages one WriteMessages transaction
	// carries; default 500.
	BatchSize int
	// Password is the cost of the hash of a password no one knows, given
	// to users whose digest is unusable; default auth.OWASPParams.
	Password auth.PasswordParams
	// Now is the clock; default time.Now. A user whose created_at does not
	// parse is imported as created at the run's start.
	Now func() time.Time
}

// dmPrefix starts the name of every DM table of WIND_chat.db.
const dmPrefix = "DM_"

// mainTables are the tables of WIND_main.db the import reads; every other
// one is reported as unused, row by row.
var mainTables = []string{"user", "dm_list"}

// Import copies the source into store. The Result tells what it did even
// when the error is not nil (ctx ended, or the store failed): what was
// written stays, and running Import again resumes.
func (s *Source) Import(ctx context.Context, store persistence.Store, opts Options) (*Result, error) {
	if opts.NewID == nil {
		return &Result{}, errors.New("legacy: Options.NewID is required")
	}
	return s.run(ctx, store, store, opts)
}

// DryRun reads and checks everything against r as Import would, and
// returns the same Result, writing nothing.
func (s *Source) DryRun(ctx context.Context, r Reader, opts Options) (*Result, error) {
	return s.run(ctx, r, nil, opts)
}

// importer is one run. Users are read once into users; what depends on a
// user asks whether it is ok (imported or present, or would be).
type importer struct {
	src   *Source
	r     Reader
	w     writer // nil in a dry run
	opts  Options
	res   *Result
	prog  progress
	seoul *time.Location
	start time.Time

	users        map[int64]*user // by id, every user whose id parses
	order        []*user         // oldest first
	emails       map[string]int64
	names        map[string]int64         // NameKey → the user of this run holding it
	friends      map[[2]int64]bool        // pairs that list each other in mutual_users
	crossedPairs map[[2]int64]outcome     // pairs that asked each other, and what the first request did
	msgIDs       map[int64]string         // message id → the DM table it came from
	chatIDs      map[string]bool          // DM table names, for dm_list
	fresh        map[int64]map[int64]bool // who asked a user in the store, by user
}

// user is a legacy user whose id parses.
type user struct {
	row     userRow
	id      int64
	created time.Time
	badTime error
	ok      bool   // imported or already present: what depends on it can follow
	why     string // why not ok
}

func (s *Source) run(ctx context.Context, r Reader, w writer, opts Options) (*Result, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.Password == (auth.PasswordParams{}) {
		opts.Password = auth.OWASPParams
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	seoul, err := time.LoadLocation("Asia/Seoul") // embedded: cannot fail
	if err != nil {
		return &Result{}, err
	}
	im := &importer{
		src: s, r: r, w: w, opts: opts, res: &Result{DryRun: w == nil},
		prog:  progress{w: opts.Progress, live: opts.Live, now: opts.Now},
		seoul: seoul, start: opts.Now(),
		users: map[int64]*user{}, emails: map[string]int64{}, names: map[string]int64{},
		friends: map[[2]int64]bool{}, crossedPairs: map[[2]int64]outcome{}, msgIDs: map[int64]string{}, chatIDs: map[string]bool{},
		fresh: map[int64]map[int64]bool{},
	}
	for _, step := range []func(context.Context) error{
		im.importUsers, im.importFriendships, im.importRequests, im.importDMs, im.checkDMList, im.reportUnused,
	} {
		if err := step(ctx); err != nil {
			return im.res, err
		}
	}
	return im.res, nil
}

// writeCtx is the context of a write: a signal stops the run between
// writes, never inside one, so that each batch commits or not as a whole
// and the run ends with a summary.
func writeCtx(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// report adds it to the report, counted for table t.
func (im *importer) report(t *Table, it Item) {
	it.Table = t.Name
	t.Reported++
	im.res.Items = append(im.res.Items, it)
}

func (u userRow) fields() []Field {
	return []Field{
		{Name: "id", Value: u.ID}, {Name: "name", Value: u.Name}, {Name: "created_at", Value: u.CreatedAt},
		{Name: "email", Value: u.Email}, {Name: "password", Value: u.Password, Secret: true},
		nullField("server", u.Server), nullField("mutual_users", u.MutualUsers),
		nullField("mutual_requests", u.MutualRequests), nullField("profile", u.Profile),
	}
}

func (u *user) key() string { return "id=" + u.row.ID }

// importUsers creates the users oldest first (created_at, then id), so
// that "an earlier user holds the name" has one meaning; users whose time
// does not parse come last.
func (im *importer) importUsers(ctx context.Context) error {
	rows, err := im.src.users(ctx)
	if err != nil {
		return err
	}
	t := im.res.table("user")
	t.Read = len(rows)
	im.prog.begin(t.Name, len(rows))
	defer im.prog.end()
	for _, row := range rows {
		if row.Server.Valid && !emptyList(row.Server.String) {
			im.report(t, Item{Kind: KindUnused, Key: "id=" + row.ID, Done: "server column not imported",
				Why: "it lists guilds, which the original never built", Row: row.fields()})
		}
		id, err := parseID(row.ID)
		if err != nil {
			t.Skipped++
			im.report(t, Item{Kind: KindBadID, Key: "id=" + row.ID, Done: "not imported", Why: "id " + err.Error(), Row: row.fields()})
			im.prog.add(1)
			continue
		}
		u := &user{row: row, id: id}
		if u.created, err = im.parseTime(row.CreatedAt); err != nil {
			u.badTime, u.created = err, im.start
		}
		im.users[id] = u
		im.order = append(im.order, u)
	}
	slices.SortFunc(im.order, func(a, b *user) int {
		if c := cmp.Compare(boolInt(a.badTime != nil), boolInt(b.badTime != nil)); c != 0 {
			return c
		}
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	for _, u := range im.order {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := im.importUser(ctx, t, u); err != nil {
			return err
		}
		im.prog.add(1)
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (im *importer) importUser(ctx context.Context, t *Table, u *user) error {
	skip := func(kind Kind, why string) {
		t.Skipped++
		u.why = why
		im.report(t, Item{Kind: kind, Key: u.key(), Done: "not imported", Why: why, Row: u.row.fields()})
	}
	email := u.row.Email
	if !storable(email) {
		skip(KindBadText, "the email is not valid UTF-8 or holds U+0000, which the store refuses")
		return nil
	}
	folded := persistence.Fold(email)

	stored, err := im.r.UserByID(ctx, u.id)
	switch {
	case err == nil && persistence.Fold(stored.Email) == folded:
		t.Present++
		u.ok = true
		im.hold(u, stored.Name, folded)
		im.userNotes(t, u, stored.Name, "already present")
		return nil
	case err == nil:
		skip(KindConflict, fmt.Sprintf("the id belongs to REWIND user %q <%s>", stored.Name, stored.Email))
		return nil
	case !errors.Is(err, persistence.ErrNotFound):
		return fmt.Errorf("legacy: look up user %d: %w", u.id, err)
	}
	if other, ok := im.emails[folded]; ok {
		skip(KindConflict, fmt.Sprintf("the email is also user %d's, imported first", other))
		return nil
	}
	switch other, err := im.r.UserByEmail(ctx, email); {
	case err == nil:
		skip(KindConflict, fmt.Sprintf("the email belongs to REWIND user %d (%q)", other.ID, other.Name))
		return nil
	case !errors.Is(err, persistence.ErrNotFound):
		return fmt.Errorf("legacy: look up user %d: %w", u.id, err)
	}

	nu := persistence.User{ID: u.id, Email: email, CreatedAt: u.created}
	if u.row.Profile.Valid && storable(u.row.Profile.String) {
		p := u.row.Profile.String
		nu.Profile = &p
	}
	if isDigest(u.row.Password) {
		nu.PasswordHash = auth.LegacyHash(u.row.Password)
	} else if im.w != nil {
		if nu.PasswordHash, err = unknownPassword(im.opts.Password); err != nil {
			return err
		}
	}
	base := repair(u.row.Name)
	for n := 1; ; n++ {
		nu.Name = base
		if n > 1 {
			nu.Name = base + "-" + strconv.Itoa(n)
		}
		if taken, err := im.nameTaken(ctx, nu.Name, u.id); err != nil {
			return err
		} else if taken {
			continue
		}
		if im.w == nil {
			break
		}
		err := im.w.CreateUser(writeCtx(ctx), nu)
		if errors.Is(err, persistence.ErrNameTaken) {
			continue // registered meanwhile
		}
		if errors.Is(err, persistence.ErrEmailTaken) {
			skip(KindConflict, "the email was taken by a REWIND user during the import")
			return nil
		}
		if err != nil {
			return fmt.Errorf("legacy: create user %d: %w", u.id, err)
		}
		break
	}
	t.Imported++
	u.ok = true
	im.hold(u, nu.Name, folded)
	done := "imported"
	if nu.Name != u.row.Name {
		done = fmt.Sprintf("imported as %q", nu.Name)
	}
	im.userNotes(t, u, nu.Name, done)
	return nil
}

// hold records that u, now in the store as name, holds name and email.
func (im *importer) hold(u *user, name, folded string) {
	im.names[persistence.NameKey(name)] = u.id
	im.emails[folded] = u.id
}

// nameTaken reports whether another user holds name, in this run or in
// the store.
func (im *importer) nameTaken(ctx context.Context, name string, id int64) (bool, error) {
	if holder, ok := im.names[persistence.NameKey(name)]; ok && holder != id {
		return true, nil
	}
	other, err := im.r.UserByName(ctx, name)
	switch {
	case err == nil:
		return other.ID != id, nil
	case errors.Is(err, persistence.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("legacy: look up name %q: %w", name, err)
}

// userNotes reports what of u was not taken as it is; done says what
// became of u, stored under name.
func (im *importer) userNotes(t *Table, u *user, name, done string) {
	note := func(kind Kind, done, why string) {
		im.report(t, Item{Kind: kind, Key: u.key(), Done: done, Why: why, Row: u.row.fields()})
	}
	if name != u.row.Name && done == "already present" {
		done = fmt.Sprintf("already present as %q", name)
	}
	repaired := repair(u.row.Name)
	if repaired != u.row.Name {
		note(KindBadText, done, "the name is not valid UTF-8 or holds U+0000: invalid bytes became U+FFFD, U+0000 was removed")
	}
	if name != repaired {
		note(KindRenamed, done, fmt.Sprintf("an earlier user holds %q (names compare without regard to case and width)", repaired))
	}
	if u.row.Profile.Valid && !storable(u.row.Profile.String) {
		note(KindBadText, done+" without a profile", "the profile is not valid UTF-8 or holds U+0000")
	}
	if !isDigest(u.row.Password) {
		note(KindBadPassword, done+" with a password no one knows", "the password is not a SHA-512 hex digest (128 hex digits), so no password logs this account in")
	}
	if u.badTime != nil {
		note(KindBadTime, done+" as created at the import's start", "created_at "+u.badTime.Error())
	}
}

// unknownPassword is the argon2id hash of 130 random bits thrown away: a
// well-formed hash that no password matches, so login answers 401 as for
// a wrong password.
func unknownPassword(p auth.PasswordParams) (string, error) {
	return auth.HashPassword(rand.Text(), p)
}

// isDigest reports whether s is a SHA-512 hex digest, as the original
// stored passwords (lower case; login accepts either case).
func isDigest(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 64
}

// parseID reads an id as the original wrote it: a decimal number in
// 1..2^63-1 without sign or leading zeros. Its generator could exceed
// 2^63-1 once its counter passed 32767 (legacy.md).
func parseID(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("is empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("is not a decimal number")
		}
	}
	if s[0] == '0' {
		return 0, errors.New("is zero or starts with a zero")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errors.New("is over 2^63-1, the largest id REWIND stores")
	}
	return n, nil
}

// parseTime reads a naive time of the original (YYYY-MM-DD HH:MM:SS with
// up to 9 fraction digits) in Asia/Seoul, cut to the microseconds that
// stores keep.
func (im *importer) parseTime(s string) (time.Time, error) {
	t, err := protocol.ParseWireTime(s, im.seoul)
	if err != nil {
		return time.Time{}, errors.New("is not a time like 2021-12-23 00:19:16.000880")
	}
	return t.Truncate(time.Microsecond), nil
}

// storable reports whether the store takes s as it is: valid UTF-8
// without U+0000 (protocol.md §2.3).
func storable(s string) bool { return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 }

// repair makes s storable: invalid bytes become U+FFFD, U+0000 goes.
func repair(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

func emptyList(s string) bool {
	s = strings.TrimSpace(s)
	return s == "" || s == "[]" || s == "null"
}
