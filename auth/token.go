package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/setting"
)

// TokenError is a token the protocol refuses; Reason is the exact text of
// protocol.md §2.2 (WebSocket error 4000, HTTP 401).
type TokenError struct{ Reason string }

func (e *TokenError) Error() string { return e.Reason }

// The refusals of protocol.md §2.2.
var (
	ErrTokenNotProvided = &TokenError{"Token not provided."}
	ErrTokenSignature   = &TokenError{"Token signature mismatch."}
	ErrTokenExpired     = &TokenError{"Token expired."}
	ErrTokenPayload     = &TokenError{"Invalid token payload provided."}
)

// MinSecretLen is the shortest REWIND_TOKEN_SECRET accepted: an HMAC-SHA256
// key shorter than its output weakens it.
const MinSecretLen = 32

// UserLookup is the part of persistence.Store that token checks need.
type UserLookup interface {
	UserByID(ctx context.Context, id int64) (persistence.User, error)
}

// Tokens issues and checks session tokens: JWTs (RFC 7519) signed with
// HS256 whose claims are the user id (sub, a decimal string), the user's
// token generation (gen), iat, and exp when a lifetime is set. Logout bumps
// the generation, so every token issued before stops resolving, whether it
// expires or not.
//
// A token expires at its exp; one without exp (issued with no lifetime)
// expires iat plus the lifetime when one is set, and never otherwise. So
// turning the lifetime on later ends the old tokens too, and turning it off
// leaves the expiring ones valid until their exp.
type Tokens struct {
	key   []byte
	ttl   time.Duration
	now   func() time.Time
	users UserLookup
}

// DefaultTokenTTL, the lifetime a zero ttl of NewTokens takes and the
// default of REWIND_TOKEN_TTL, is none (setting.Off): a token lasts until
// its user logs out, because the shipped client cannot tell an expired
// token and never logs in again by itself.
const DefaultTokenTTL time.Duration = setting.Off

// NewTokens derives its signing key from secret; ttl is a token's
// lifetime (REWIND_TOKEN_TTL): zero takes DefaultTokenTTL, setting.Off is
// none (package setting has the convention). now defaults to time.Now.
func NewTokens(secret []byte, ttl time.Duration, users UserLookup, now func() time.Time) *Tokens {
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Tokens{key: deriveKey(secret, "rewind token v1"), ttl: ttl, now: now, users: users}
}

// deriveKey separates the uses of one secret, so a verification-key hash
// can never be replayed as a token signature or the other way round.
func deriveKey(secret []byte, purpose string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

type claims struct {
	Sub string `json:"sub"`
	Gen int64  `json:"gen"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp,omitempty"` // 0: issued without a lifetime
}

// Issue returns a token for u, valid for the configured lifetime, or until
// a logout when there is none.
func (t *Tokens) Issue(u persistence.User) (string, error) {
	now := t.now()
	c := claims{Sub: strconv.FormatInt(u.ID, 10), Gen: u.TokenGeneration, Iat: now.Unix()}
	if t.ttl > 0 {
		c.Exp = now.Add(t.ttl).Unix()
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signed := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(t.sign(signed)), nil
}

func (t *Tokens) sign(s string) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// Resolve returns the user a token belongs to. A refused token gives one of
// the TokenError values; any other error means the check could not be made
// (the database is down) and says nothing about the token.
func (t *Tokens) Resolve(ctx context.Context, token string) (persistence.User, error) {
	c, err := t.verify(token)
	if err != nil {
		return persistence.User{}, err
	}
	id, err := strconv.ParseInt(c.Sub, 10, 64)
	if err != nil {
		return persistence.User{}, ErrTokenPayload
	}
	u, err := t.users.UserByID(ctx, id)
	if errors.Is(err, persistence.ErrNotFound) {
		return persistence.User{}, ErrTokenPayload
	}
	if err != nil {
		return persistence.User{}, fmt.Errorf("auth: resolve token: %w", err)
	}
	if u.TokenGeneration != c.Gen {
		// Revoked by a logout: to the client it is a session that ended.
		return persistence.User{}, ErrTokenExpired
	}
	return u, nil
}

func (t *Tokens) verify(token string) (claims, error) {
	var c claims
	token = strings.TrimSpace(token)
	if token == "" {
		return c, ErrTokenNotProvided
	}
	dot := strings.LastIndexByte(token, '.')
	if dot < 0 || strings.Count(token, ".") != 2 {
		return c, ErrTokenPayload
	}
	sig, err := decodeStrict(token[dot+1:])
	if err != nil || !hmac.Equal(sig, t.sign(token[:dot])) {
		return c, ErrTokenSignature
	}
	header, payload, _ := strings.Cut(token[:dot], ".")
	if header != jwtHeader {
		return c, ErrTokenPayload
	}
	raw, err := decodeStrict(payload)
	if err != nil || json.Unmarshal(raw, &c) != nil || c.Sub == "" || c.Iat == 0 {
		return c, ErrTokenPayload
	}
	if exp := t.expiry(c); exp != 0 && t.now().Unix() >= exp {
		return c, ErrTokenExpired
	}
	return c, nil
}

// expiry is when a token with claims c expires, in Unix seconds; 0 never.
func (t *Tokens) expiry(c claims) int64 {
	switch {
	case c.Exp != 0:
		return c.Exp
	case t.ttl > 0:
		return time.Unix(c.Iat, 0).Add(t.ttl).Unix()
	}
	return 0
}

// strictBase64 is base64url without padding that refuses the other
// spellings of the same bytes (non-zero bits after the last byte).
var strictBase64 = base64.RawURLEncoding.Strict()

// decodeStrict decodes s as strictBase64. The decoder skips '\r' and '\n'
// even when strict, so these are refused here: a token has exactly one
// spelling.
func decodeStrict(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("auth: line break in base64")
	}
	return strictBase64.DecodeString(s)
}

// VerificationKeys makes the keys of e-mail verification links. The key
// goes only into the mail; the store keeps a keyed hash, so a copy of the
// database alone neither holds nor can recompute a live link.
type VerificationKeys struct{ key []byte }

// NewVerificationKeys derives its hashing key from secret.
func NewVerificationKeys(secret []byte) *VerificationKeys {
	return &VerificationKeys{key: deriveKey(secret, "rewind email verification v1")}
}

// New returns a fresh 256-bit key, URL-safe, and its hash.
func (v *VerificationKeys) New() (key string, hash []byte, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	key = base64.RawURLEncoding.EncodeToString(b)
	return key, v.Hash(key), nil
}

// Hash is what the store keeps for key.
func (v *VerificationKeys) Hash(key string) []byte {
	m := hmac.New(sha256.New, v.key)
	m.Write([]byte(key))
	return m.Sum(nil)
}

// ReadSecretFile reads the token secret from the file at path
// (REWIND_TOKEN_SECRET_FILE), without one trailing line break: at least
// MinSecretLen bytes. Its errors never hold the secret.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := string(b)
	s, _ = strings.CutSuffix(s, "\n")
	s, _ = strings.CutSuffix(s, "\r")
	if len(s) < MinSecretLen {
		return "", fmt.Errorf("the secret in %s must be at least %d bytes", path, MinSecretLen)
	}
	return s, nil
}

// Secret returns the token secret: configured when set (at least
// MinSecretLen bytes), otherwise one generated once and kept in the store, so
// a restart logs nobody out.
func Secret(ctx context.Context, store persistence.Store, configured string) ([]byte, error) {
	if configured != "" {
		if len(configured) < MinSecretLen {
			return nil, fmt.Errorf("REWIND_TOKEN_SECRET must be at least %d bytes", MinSecretLen)
		}
		return []byte(configured), nil
	}
	return store.Secret(ctx, "token_secret", func() ([]byte, error) {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	})
}
