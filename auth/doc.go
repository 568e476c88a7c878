// Package auth holds REWIND's credentials: argon2id password hashes (and
// the original backend's SHA-512 ones, accepted once at login: LegacyHash),
// signed session tokens (protocol.md §1), e-mail verification keys, and
// the making of verified users that skip the e-mail round (UserMaker).
// Nothing here stores or logs a secret; callers get hashes and signatures.
package auth
