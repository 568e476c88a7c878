// Package persistence defines the storage contract of REWIND. The two
// implementations, persistence/sqlite and persistence/postgres, pass the
// same conformance suite (persistence/storetest).
package persistence

import (
	"context"
	"errors"
	"time"
)

// Errors every Store returns, wrapped or not; compare with errors.Is.
var (
	// ErrNotFound: the row asked for does not exist (or has expired).
	ErrNotFound = errors.New("persistence: not found")
	// ErrNameTaken: a user already has this name, without regard to case.
	ErrNameTaken = errors.New("persistence: name taken")
	// ErrEmailTaken: a user already has this email, without regard to case.
	ErrEmailTaken = errors.New("persistence: email taken")
)

// User is a verified account.
type User struct {
	ID           int64
	Name         string
	Email        string
	PasswordHash string // argon2id PHC string, never a plain password
	Profile      *string
	// TokenGeneration is written into every token; bumping it revokes them.
	TokenGeneration int64
	CreatedAt       time.Time
}

// PendingRegistration is an account waiting for its e-mail to be verified.
type PendingRegistration struct {
	// KeyHash identifies the registration. The key itself travels only in
	// the mail; the store sees a keyed hash of it (see auth.VerificationKeys).
	KeyHash      []byte
	Name         string
	Email        string
	PasswordHash string
	ExpiresAt    time.Time
	CreatedAt    time.Time
}

// Store is what the server keeps. Every method is safe for concurrent use.
// Names and emails are compared as Fold gives them (Go's Unicode lower
// case), identically in every implementation. Where both a name and an
// email are taken, ErrEmailTaken wins. A zero CreatedAt is stored as now.
type Store interface {
	// Migrate applies the embedded migrations that are not applied yet.
	Migrate(ctx context.Context) error
	// Ping answers nil when the database serves queries.
	Ping(ctx context.Context) error
	Close() error

	// CreateUser inserts a verified user (u.ID set by the caller).
	// ErrEmailTaken or ErrNameTaken when either is in use.
	CreateUser(ctx context.Context, u User) error
	UserByID(ctx context.Context, id int64) (User, error)
	UserByEmail(ctx context.Context, email string) (User, error)
	UserByName(ctx context.Context, name string) (User, error)
	// BumpTokenGeneration increments the user's token generation and
	// returns the new value, revoking every token issued before.
	BumpTokenGeneration(ctx context.Context, userID int64) (int64, error)

	// PutPendingRegistration stores p, replacing every pending registration
	// with the same name or the same email. ErrEmailTaken or ErrNameTaken
	// when a verified user already holds either.
	PutPendingRegistration(ctx context.Context, p PendingRegistration) error
	// VerifyRegistration turns the pending registration with keyHash that
	// has not expired at now into a user with id userID, in one
	// transaction, and deletes the pending row: a key works once.
	// ErrNotFound when there is no such live registration; ErrEmailTaken or
	// ErrNameTaken when a user took either meanwhile (the pending row is
	// deleted then too, since it can never succeed).
	VerifyRegistration(ctx context.Context, keyHash []byte, now time.Time, userID int64) (User, error)
	// DeleteExpiredRegistrations removes registrations expired at now and
	// returns how many.
	DeleteExpiredRegistrations(ctx context.Context, now time.Time) (int64, error)

	// Secret returns the secret stored under name, storing generate()'s
	// value (non-empty) first when there is none. Concurrent callers get
	// one value.
	Secret(ctx context.Context, name string, generate func() ([]byte, error)) ([]byte, error)
}
