// Package auth holds REWIND's credentials: argon2id password hashes (and
// the original backend's SHA-512 ones, accepted once at login: LegacyHash),
// signed session tokens (protocol.md §1) and e-mail verification keys.
// Nothing here stores or logs a secret; callers get hashes and signatures.
package auth
