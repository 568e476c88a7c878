package auth

import (
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are argon2id cost parameters. They are written into every
// hash (PHC string format), so raising them later keeps old hashes valid.
type PasswordParams struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// OWASPParams is the OWASP password-storage minimum for argon2id:
// m=19 MiB, t=2, p=1.
var OWASPParams = PasswordParams{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

// DefaultPasswordParams is the cost a zero PasswordParams takes
// (net/httpapi's Config.Password, NewUserMaker): OWASPParams.
var DefaultPasswordParams = OWASPParams

const (
	saltLen = 16
	keyLen  = 32
)

var errBadHash = errors.New("auth: malformed password hash")

// HashPassword returns the argon2id PHC string of password:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>, base64 without padding.
func HashPassword(password string, p PasswordParams) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		p.MemoryKiB, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// CheckPassword reports whether password matches hash, an argon2id PHC
// string or a LegacyHash, in time independent of where the two differ. A
// legacy hash that matches is to be replaced: see NeedsUpgrade.
func CheckPassword(password, hash string) (bool, error) {
	if digest, ok := strings.CutPrefix(hash, legacyPrefix); ok {
		return checkLegacy(password, digest)
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errBadHash
	}
	var p PasswordParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil || p.Threads == 0 {
		return false, errBadHash
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, errBadHash
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// legacyPrefix starts the stored form of a password hash imported from the
// original backend (rewind import-legacy): its unsalted SHA-512 hex digest.
// No argon2id PHC string starts so.
const legacyPrefix = "$sha512$"

// LegacyHash is the stored form of the original backend's password hash,
// sha512(password).hexdigest() (../shared/legacy.md). It is accepted at
// login once and replaced by argon2id there (protocol.md §5).
func LegacyHash(sha512Hex string) string { return legacyPrefix + sha512Hex }

// NeedsUpgrade reports whether hash is a LegacyHash, which a login that
// matched it replaces with HashPassword's (protocol.md §5).
func NeedsUpgrade(hash string) bool { return strings.HasPrefix(hash, legacyPrefix) }

// checkLegacy compares the SHA-512 of password's bytes (UTF-8, as Go strings
// are) with digest in constant time. Comparing decoded bytes accepts the hex
// in either case at no cost.
func checkLegacy(password, digest string) (bool, error) {
	want, err := hex.DecodeString(digest)
	if err != nil || len(want) != sha512.Size {
		return false, errBadHash
	}
	got := sha512.Sum512([]byte(password))
	return subtle.ConstantTimeCompare(got[:], want) == 1, nil
}
