// Package storetest is the conformance suite of persistence.Store: every
// implementation runs it from its own tests, so all of them keep one
// contract.
package storetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/stretchr/testify/require"
)

// Run runs the suite. open returns a fresh, migrated store that no other
// test sees, and closes it when t ends.
func Run(t *testing.T, open func(t *testing.T) persistence.Store) {
	tests := []struct {
		name string
		test func(t *testing.T, open func(t *testing.T) persistence.Store)
	}{
		{"Migrate", testMigrate},
		{"Users", testUsers},
		{"UserConflicts", testUserConflicts},
		{"Profile", testProfile},
		{"Times", testTimes},
		{"BumpTokenGeneration", testBumpTokenGeneration},
		{"ReplacePasswordHash", testReplacePasswordHash},
		{"ReplacePasswordHashConcurrent", testReplacePasswordHashConcurrent},
		{"PendingTaken", testPendingTaken},
		{"PendingReplace", testPendingReplace},
		{"PendingSameName", testPendingSameName},
		{"NameKeys", testNameKeys},
		{"MailQuota", testMailQuota},
		{"MailQuotaConcurrent", testMailQuotaConcurrent},
		{"Verify", testVerify},
		{"VerifyExpired", testVerifyExpired},
		{"VerifyConflict", testVerifyConflict},
		{"VerifyConcurrent", testVerifyConcurrent},
		{"DeleteExpiredRegistrations", testDeleteExpired},
		{"Secret", testSecret},
		{"SecretConcurrent", testSecretConcurrent},
	}
	for _, tt := range slices.Concat(tests, chatTests, seqTests, guildTests) {
		t.Run(tt.name, func(t *testing.T) { tt.test(t, open) })
	}
}

// now has nanoseconds and a zone other than UTC, which stores must drop.
var now = time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("UTC+2", 2*3600))

// stored is t as a store gives it back: UTC, whole microseconds.
func stored(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func user(id int64, name, email string) persistence.User {
	return persistence.User{
		ID:           id,
		Name:         name,
		Email:        email,
		PasswordHash: "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA",
		CreatedAt:    stored(now),
	}
}

func pending(key, name, email string, expiresAt time.Time) persistence.PendingRegistration {
	return persistence.PendingRegistration{
		KeyHash:      []byte(key),
		Name:         name,
		Email:        email,
		PasswordHash: "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$" + key,
		ExpiresAt:    expiresAt,
		CreatedAt:    now,
	}
}

func createUser(t *testing.T, s persistence.Store, u persistence.User) {
	t.Helper()
	require.NoError(t, s.CreateUser(t.Context(), u))
}

func putPending(t *testing.T, s persistence.Store, p persistence.PendingRegistration) {
	t.Helper()
	require.NoError(t, s.PutPendingRegistration(t.Context(), p, persistence.MailQuota{}))
}

// requireVerifyErr checks that key does not verify, with want.
func requireVerifyErr(t *testing.T, s persistence.Store, key string, want error) {
	t.Helper()
	_, err := s.VerifyRegistration(t.Context(), []byte(key), now, 999)
	require.ErrorIs(t, err, want)
}

func testMigrate(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUser(t, s, user(1, "alice", "alice@example.com"))
	for range 2 {
		require.NoError(t, s.Migrate(t.Context()), "Migrate again is a no-op")
	}
	_, err := s.UserByID(t.Context(), 1)
	require.NoError(t, err, "data survives Migrate")
	require.NoError(t, s.Ping(t.Context()))
}

func testUsers(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	alice := user(1, "Alice", "Alice@Example.com")
	arger := user(2, "Ärger", "aerger@example.com")
	createUser(t, s, alice)
	createUser(t, s, arger)

	tests := []struct {
		name    string
		lookup  func() (persistence.User, error)
		want    persistence.User
		wantErr error
	}{
		{"by id", func() (persistence.User, error) { return s.UserByID(t.Context(), 1) }, alice, nil},
		{"by email", func() (persistence.User, error) { return s.UserByEmail(t.Context(), "Alice@Example.com") }, alice, nil},
		{"by email other case", func() (persistence.User, error) { return s.UserByEmail(t.Context(), "ALICE@example.COM") }, alice, nil},
		{"by name", func() (persistence.User, error) { return s.UserByName(t.Context(), "Alice") }, alice, nil},
		{"by name other case", func() (persistence.User, error) { return s.UserByName(t.Context(), "aLICE") }, alice, nil},
		{"by non-ASCII name other case", func() (persistence.User, error) { return s.UserByName(t.Context(), "äRGER") }, arger, nil},
		{"by non-ASCII name upper case", func() (persistence.User, error) { return s.UserByName(t.Context(), "ÄRGER") }, arger, nil},
		{"missing id", func() (persistence.User, error) { return s.UserByID(t.Context(), 3) }, persistence.User{}, persistence.ErrNotFound},
		{"missing email", func() (persistence.User, error) { return s.UserByEmail(t.Context(), "bob@example.com") }, persistence.User{}, persistence.ErrNotFound},
		{"missing name", func() (persistence.User, error) { return s.UserByName(t.Context(), "bob") }, persistence.User{}, persistence.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.lookup()
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func testUserConflicts(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUser(t, s, user(1, "Ärger", "a@example.com"))

	tests := []struct {
		name string
		user persistence.User
		want error
	}{
		{"name in other case", user(2, "äRGER", "b@example.com"), persistence.ErrNameTaken},
		{"email in other case", user(2, "bob", "A@EXAMPLE.COM"), persistence.ErrEmailTaken},
		{"both: email reported", user(2, "ärger", "a@Example.com"), persistence.ErrEmailTaken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, s.CreateUser(t.Context(), tt.user), tt.want)
			_, err := s.UserByID(t.Context(), tt.user.ID)
			require.ErrorIs(t, err, persistence.ErrNotFound, "nothing stored")
		})
	}
}

func testProfile(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	empty, url := "", "https://example.com/a.png"
	tests := []struct {
		name    string
		profile *string
	}{
		{"NULL", nil},
		{"empty, not NULL", &empty},
		{"set", &url},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := user(int64(i+1), fmt.Sprint("user", i), fmt.Sprint("user", i, "@example.com"))
			u.Profile = tt.profile
			createUser(t, s, u)
			got, err := s.UserByID(t.Context(), u.ID)
			require.NoError(t, err)
			require.Equal(t, tt.profile, got.Profile)
		})
	}
}

func testTimes(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	tests := []struct {
		name string
		in   time.Time
		want time.Time
	}{
		{"nanoseconds truncated, not rounded", time.Date(2030, 1, 2, 3, 4, 5, 999_999_999, time.UTC), time.Date(2030, 1, 2, 3, 4, 5, 999_999_000, time.UTC)},
		{"zone converted to UTC", time.Date(2030, 1, 2, 3, 4, 5, 6000, time.FixedZone("UTC-5", -5*3600)), time.Date(2030, 1, 2, 8, 4, 5, 6000, time.UTC)},
		{"before 1970", time.Date(1969, 12, 31, 23, 59, 59, 999_999_500, time.UTC), time.Date(1969, 12, 31, 23, 59, 59, 999_999_000, time.UTC)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := user(int64(i+1), fmt.Sprint("user", i), fmt.Sprint("user", i, "@example.com"))
			u.CreatedAt = tt.in
			createUser(t, s, u)
			got, err := s.UserByID(t.Context(), u.ID)
			require.NoError(t, err)
			require.Equal(t, tt.want, got.CreatedAt) // Equal, not time.Equal: the location must be UTC too
		})
	}

	t.Run("verified user created now", func(t *testing.T) {
		putPending(t, s, pending("k", "carol", "carol@example.com", now.Add(time.Hour)))
		u, err := s.VerifyRegistration(t.Context(), []byte("k"), now, 10)
		require.NoError(t, err)
		require.Equal(t, stored(now), u.CreatedAt)
		got, err := s.UserByID(t.Context(), 10)
		require.NoError(t, err)
		require.Equal(t, u, got)
	})
}

func testBumpTokenGeneration(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUser(t, s, user(1, "alice", "alice@example.com"))
	for want := int64(1); want <= 3; want++ {
		got, err := s.BumpTokenGeneration(t.Context(), 1)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	u, err := s.UserByID(t.Context(), 1)
	require.NoError(t, err)
	require.EqualValues(t, 3, u.TokenGeneration)

	_, err = s.BumpTokenGeneration(t.Context(), 2)
	require.ErrorIs(t, err, persistence.ErrNotFound)
}

func testReplacePasswordHash(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	// Unsalted legacy hashes of one password are equal across users.
	const legacy = "$sha512$b109f3bbbc244eb82441917ed06d618b9008dd09b3befd1b5e07394c706a8bb980b1d7785e5976ec049b46df5f1326af5a2ea6d103fd07c95385ffab0cacbc86"
	alice, bob := user(1, "alice", "alice@example.com"), user(2, "bob", "bob@example.com")
	alice.PasswordHash, bob.PasswordHash = legacy, legacy
	createUser(t, s, alice)
	createUser(t, s, bob)
	requireHash := func(id int64, want string) {
		t.Helper()
		u, err := s.UserByID(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, want, u.PasswordHash)
	}

	ok, err := s.ReplacePasswordHash(t.Context(), 1, legacy, "$argon2id$first")
	require.NoError(t, err)
	require.True(t, ok)
	got, err := s.UserByID(t.Context(), 1)
	require.NoError(t, err)
	alice.PasswordHash = "$argon2id$first"
	require.Equal(t, alice, got, "only the hash changed")
	requireHash(2, legacy)

	ok, err = s.ReplacePasswordHash(t.Context(), 1, legacy, "$argon2id$second")
	require.NoError(t, err)
	require.False(t, ok, "the hash is no longer the one read")
	requireHash(1, "$argon2id$first")

	ok, err = s.ReplacePasswordHash(t.Context(), 3, legacy, "$argon2id$third")
	require.NoError(t, err)
	require.False(t, ok, "no such user")
	_, err = s.UserByID(t.Context(), 3)
	require.ErrorIs(t, err, persistence.ErrNotFound, "nothing created")
}

func testReplacePasswordHashConcurrent(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	alice := user(1, "alice", "alice@example.com")
	createUser(t, s, alice)

	replaced := make([]bool, 8)
	errs := make([]error, len(replaced))
	var wg sync.WaitGroup
	for i := range replaced {
		wg.Go(func() {
			replaced[i], errs[i] = s.ReplacePasswordHash(t.Context(), 1, alice.PasswordHash, fmt.Sprint("$argon2id$", i))
		})
	}
	wg.Wait()
	winner := -1
	for i := range replaced {
		require.NoError(t, errs[i])
		if replaced[i] {
			require.Equal(t, -1, winner, "replaced twice")
			winner = i
		}
	}
	require.NotEqual(t, -1, winner, "none replaced")
	u, err := s.UserByID(t.Context(), 1)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprint("$argon2id$", winner), u.PasswordHash, "the winner's hash stays")
}

func testPendingTaken(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUser(t, s, user(1, "Ärger", "a@example.com"))
	tests := []struct {
		name string
		p    persistence.PendingRegistration
		want error
	}{
		{"name in other case", pending("k1", "äRGER", "b@example.com", now.Add(time.Hour)), persistence.ErrNameTaken},
		{"email in other case", pending("k2", "bob", "A@Example.COM", now.Add(time.Hour)), persistence.ErrEmailTaken},
		{"both: email reported", pending("k3", "ärger", "a@example.com", now.Add(time.Hour)), persistence.ErrEmailTaken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, s.PutPendingRegistration(t.Context(), tt.p, persistence.MailQuota{}), tt.want)
			requireVerifyErr(t, s, string(tt.p.KeyHash), persistence.ErrNotFound)
		})
	}
}

func testPendingReplace(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	other := pending("other", "carol", "carol@example.com", now.Add(time.Hour))
	putPending(t, s, other)
	old := pending("old", "alice", "A@example.com", now.Add(time.Hour))
	latest := pending("new", "bob", "a@EXAMPLE.com", now.Add(time.Hour))
	putPending(t, s, old)
	putPending(t, s, latest) // same email in other case

	requireVerifyErr(t, s, "old", persistence.ErrNotFound)
	u, err := s.VerifyRegistration(t.Context(), []byte("new"), now, 1)
	require.NoError(t, err)
	require.Equal(t, latest.Name, u.Name)
	require.Equal(t, latest.Email, u.Email)
	_, err = s.VerifyRegistration(t.Context(), []byte("other"), now, 2)
	require.NoError(t, err, "an unrelated registration stays")
}

// testPendingSameName: a pending registration reserves nothing. Several
// wait for one name; the first verified takes it and the others fail.
func testPendingSameName(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	putPending(t, s, pending("first", "Ärger", "a@example.com", now.Add(time.Hour)))
	putPending(t, s, pending("second", "äRGER", "b@example.com", now.Add(time.Hour)))
	putPending(t, s, pending("third", "ärger", "c@example.com", now.Add(time.Hour)))

	u, err := s.VerifyRegistration(t.Context(), []byte("second"), now, 2)
	require.NoError(t, err, "a later registration of the name is not cancelled by an earlier one")
	require.Equal(t, "äRGER", u.Name)
	requireVerifyErr(t, s, "first", persistence.ErrNameTaken)
	requireVerifyErr(t, s, "third", persistence.ErrNameTaken)
	requireVerifyErr(t, s, "first", persistence.ErrNotFound) // can never succeed: gone

	// Once a user holds the name, new registrations of it are refused.
	require.ErrorIs(t, s.PutPendingRegistration(t.Context(),
		pending("fourth", "ÄRGER", "d@example.com", now.Add(time.Hour)), persistence.MailQuota{}), persistence.ErrNameTaken)
}

// testNameKeys: names are unique and found as persistence.NameKey compares
// them, and keep their spelling.
func testNameKeys(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	users := []persistence.User{
		user(1, "Alice", "alice@example.com"),
		user(2, "ΣΑΣ", "sigma@example.com"),
		user(3, "straße", "strasse@example.com"),
		user(4, "ｔａｒｏ", "taro@example.com"),
	}
	for _, u := range users {
		createUser(t, s, u)
	}
	same := map[string]persistence.User{
		"ＡＬＩＣＥ": users[0], "alice": users[0], "aLiCe": users[0],
		"σας": users[1], "ΣΑΣ": users[1], "σασ": users[1],
		"STRASSE": users[2], "strasse": users[2], "Straße": users[2],
		"TARO": users[3], "taro": users[3],
	}
	for name, want := range same {
		t.Run(name, func(t *testing.T) {
			got, err := s.UserByName(t.Context(), name)
			require.NoError(t, err)
			require.Equal(t, want, got, "found, with the name as it was spelled")
			taken := user(100, name, "other@example.com")
			require.ErrorIs(t, s.CreateUser(t.Context(), taken), persistence.ErrNameTaken)
			require.ErrorIs(t, s.PutPendingRegistration(t.Context(),
				pending("k", name, "other@example.com", now.Add(time.Hour)), persistence.MailQuota{}), persistence.ErrNameTaken)
		})
	}
	// Cyrillic "а" is another letter than Latin "a": another key (the
	// registration rules refuse the mixed name before it gets here).
	_, err := s.UserByName(t.Context(), "\u0430lice")
	require.ErrorIs(t, err, persistence.ErrNotFound)
}

// testMailQuota: each put is a mail; past quota.Max within quota.Window the
// put is refused and changes nothing, and the window slides.
func testMailQuota(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	quota := persistence.MailQuota{Max: 3, Window: time.Hour}
	put := func(key, email string, at time.Time) error {
		p := pending(key, "name"+key, email, at.Add(24*time.Hour))
		p.CreatedAt = at
		return s.PutPendingRegistration(t.Context(), p, quota)
	}
	require.NoError(t, put("1", "a@example.com", now))
	require.NoError(t, put("2", "A@example.com", now.Add(time.Minute)))
	require.NoError(t, put("3", "a@example.com", now.Add(2*time.Minute)))
	require.ErrorIs(t, put("4", "a@EXAMPLE.com", now.Add(3*time.Minute)), persistence.ErrTooManyMails)
	require.NoError(t, put("x", "b@example.com", now.Add(3*time.Minute)), "per address")

	// The refused put stored nothing: the third link still works.
	requireVerifyErr(t, s, "4", persistence.ErrNotFound)
	// An hour after the first mail, one more fits; then none until an hour
	// after the second.
	require.NoError(t, put("5", "a@example.com", now.Add(time.Hour)))
	require.ErrorIs(t, put("6", "a@example.com", now.Add(time.Hour+30*time.Second)), persistence.ErrTooManyMails)
	require.NoError(t, put("7", "a@example.com", now.Add(time.Hour+time.Minute)))
	requireVerifyErr(t, s, "5", persistence.ErrNotFound) // replaced by 7
	_, err := s.VerifyRegistration(t.Context(), []byte("7"), now.Add(time.Hour+time.Minute), 1)
	require.NoError(t, err)
}

// testMailQuotaConcurrent: concurrent registrations of one address get no
// more mails than the quota.
func testMailQuotaConcurrent(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	quota := persistence.MailQuota{Max: 3, Window: time.Hour}
	errs := make([]error, 10)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			p := pending(fmt.Sprint("k", i), fmt.Sprint("name", i), "same@example.com", now.Add(time.Hour))
			errs[i] = s.PutPendingRegistration(t.Context(), p, quota)
		})
	}
	wg.Wait()
	admitted := 0
	for _, err := range errs {
		if err == nil {
			admitted++
			continue
		}
		require.ErrorIs(t, err, persistence.ErrTooManyMails)
	}
	require.Equal(t, 3, admitted)
}

func testVerify(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	p := pending("key", "Ärger", "Aerger@Example.com", now.Add(time.Hour))
	putPending(t, s, p)

	u, err := s.VerifyRegistration(t.Context(), p.KeyHash, now, 42)
	require.NoError(t, err)
	want := persistence.User{
		ID:           42,
		Name:         p.Name,
		Email:        p.Email,
		PasswordHash: p.PasswordHash,
		CreatedAt:    stored(now),
	}
	require.Equal(t, want, u)
	got, err := s.UserByEmail(t.Context(), "aerger@example.com")
	require.NoError(t, err)
	require.Equal(t, want, got)

	requireVerifyErr(t, s, "key", persistence.ErrNotFound) // a key works once
	requireVerifyErr(t, s, "unknown", persistence.ErrNotFound)
}

func testVerifyExpired(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	tests := []struct {
		name      string
		expiresAt time.Time
		wantErr   error
	}{
		{"expired", now.Add(-time.Microsecond), persistence.ErrNotFound},
		{"expires now", now, persistence.ErrNotFound},
		{"live", now.Add(time.Microsecond), nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprint("key", i)
			putPending(t, s, pending(key, fmt.Sprint("user", i), fmt.Sprint("user", i, "@example.com"), tt.expiresAt))
			_, err := s.VerifyRegistration(t.Context(), []byte(key), now, int64(i+1))
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
		})
	}
}

func testVerifyConflict(t *testing.T, open func(t *testing.T) persistence.Store) {
	tests := []struct {
		name  string
		taker persistence.User
		want  error
	}{
		{"name taken meanwhile", user(1, "ÄRGER", "other@example.com"), persistence.ErrNameTaken},
		{"email taken meanwhile", user(1, "other", "A@EXAMPLE.COM"), persistence.ErrEmailTaken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			putPending(t, s, pending("key", "ärger", "a@example.com", now.Add(time.Hour)))
			createUser(t, s, tt.taker)

			_, err := s.VerifyRegistration(t.Context(), []byte("key"), now, 2)
			require.ErrorIs(t, err, tt.want)
			_, err = s.UserByID(t.Context(), 2)
			require.ErrorIs(t, err, persistence.ErrNotFound, "no user created")
			requireVerifyErr(t, s, "key", persistence.ErrNotFound) // the pending row is gone
		})
	}
}

func testVerifyConcurrent(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	putPending(t, s, pending("key", "alice", "alice@example.com", now.Add(time.Hour)))

	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.VerifyRegistration(t.Context(), []byte("key"), now, int64(i+1))
		})
	}
	wg.Wait()
	succeeded := 0
	for _, err := range errs {
		if err == nil {
			succeeded++
			continue
		}
		require.ErrorIs(t, err, persistence.ErrNotFound)
	}
	require.Equal(t, 1, succeeded, "a key works once")
}

func testDeleteExpired(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	putPending(t, s, pending("past", "a", "a@example.com", now.Add(-time.Hour)))
	putPending(t, s, pending("now", "b", "b@example.com", now))
	putPending(t, s, pending("future", "c", "c@example.com", now.Add(time.Microsecond)))

	n, err := s.DeleteExpiredRegistrations(t.Context(), now)
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
	n, err = s.DeleteExpiredRegistrations(t.Context(), now)
	require.NoError(t, err)
	require.Zero(t, n)

	// Verifying in the past would accept an expired row that still existed.
	past := now.Add(-2 * time.Hour)
	for _, key := range []string{"past", "now"} {
		_, err := s.VerifyRegistration(t.Context(), []byte(key), past, 1)
		require.ErrorIs(t, err, persistence.ErrNotFound, key)
	}
	_, err = s.VerifyRegistration(t.Context(), []byte("future"), now, 1)
	require.NoError(t, err)
}

func testSecret(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	errGenerate := errors.New("generate failed")
	failing := func() ([]byte, error) { return nil, errGenerate }
	value := func(v string) func() ([]byte, error) {
		return func() ([]byte, error) { return []byte(v), nil }
	}

	_, err := s.Secret(t.Context(), "a", failing)
	require.ErrorIs(t, err, errGenerate)

	got, err := s.Secret(t.Context(), "a", value("first"))
	require.NoError(t, err)
	require.Equal(t, []byte("first"), got)

	called := false
	got, err = s.Secret(t.Context(), "a", func() ([]byte, error) { called = true; return []byte("second"), nil })
	require.NoError(t, err)
	require.Equal(t, []byte("first"), got, "stored once, then kept")
	require.False(t, called, "generate runs only when nothing is stored")

	got, err = s.Secret(t.Context(), "b", value("other"))
	require.NoError(t, err)
	require.Equal(t, []byte("other"), got, "one secret per name")
}

func testSecretConcurrent(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	got := make([][]byte, 8)
	errs := make([]error, len(got))
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			got[i], errs[i] = s.Secret(t.Context(), "token", func() ([]byte, error) {
				b := make([]byte, 32)
				rand.Read(b)
				return b, nil
			})
		})
	}
	wg.Wait()
	for i := range got {
		require.NoError(t, errs[i])
		require.Len(t, got[i], 32)
		require.True(t, bytes.Equal(got[0], got[i]), "caller %d got another secret", i)
	}
}
