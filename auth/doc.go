// Package auth holds REWIND's credentials: argon2id password hashes,
// signed session tokens (protocol.md §1) and e-mail verification keys.
// Nothing here stores or logs a secret; callers get hashes and signatures.
package auth
