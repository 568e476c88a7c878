-- The whole schema. Times are INTEGER unix microseconds, UTC, so that
-- comparisons and ordering are exact. *_folded columns hold
-- persistence.Fold of the value beside them (SQLite's lower() is ASCII-only).
-- STRICT makes a wrongly typed value from Go an error, not a silent cast.

CREATE TABLE users (
    id               INTEGER PRIMARY KEY, -- snowflake
    name             TEXT    NOT NULL,
    name_folded      TEXT    NOT NULL,
    email            TEXT    NOT NULL,
    email_folded     TEXT    NOT NULL,
    password_hash    TEXT    NOT NULL,
    profile          TEXT,
    token_generation INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX users_email_folded_key ON users (email_folded);
CREATE UNIQUE INDEX users_name_folded_key ON users (name_folded);

CREATE TABLE pending_registrations (
    key_hash      BLOB    PRIMARY KEY,
    name          TEXT    NOT NULL,
    name_folded   TEXT    NOT NULL,
    email         TEXT    NOT NULL,
    email_folded  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
-- A new registration replaces older ones by name or email; a sweeper
-- deletes by expiry.
CREATE INDEX pending_registrations_name_folded_idx ON pending_registrations (name_folded);
CREATE INDEX pending_registrations_email_folded_idx ON pending_registrations (email_folded);
CREATE INDEX pending_registrations_expires_at_idx ON pending_registrations (expires_at);

-- Secrets the server generates once and keeps across restarts.
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

CREATE TABLE friend_requests (
    from_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    to_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (from_id, to_id),
    CHECK (from_id <> to_id)
) STRICT;
-- "Who asked me"; "whom did I ask" is the primary key.
CREATE INDEX friend_requests_to_id_idx ON friend_requests (to_id);

-- Each friendship is two rows, one per direction, so "friends of X" is one
-- primary-key range.
CREATE TABLE friendships (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    friend_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id),
    CHECK (user_id <> friend_id)
) STRICT;

-- kind 1 is a DM. Its members are ordered so that the unique key makes
-- "the DM of A and B" one row, whoever opens it first.
CREATE TABLE rooms (
    id          INTEGER PRIMARY KEY, -- snowflake
    kind        INTEGER NOT NULL,
    member_low  INTEGER NOT NULL REFERENCES users (id),
    member_high INTEGER NOT NULL REFERENCES users (id),
    created_at  INTEGER NOT NULL,
    UNIQUE (kind, member_low, member_high),
    CHECK (member_low < member_high)
) STRICT;

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY, -- snowflake
    room_id    INTEGER NOT NULL REFERENCES rooms (id),
    author_id  INTEGER NOT NULL REFERENCES users (id),
    content    TEXT    NOT NULL,
    nonce      TEXT,
    created_at INTEGER NOT NULL,
    edited_at  INTEGER,
    deleted_at INTEGER
) STRICT;
-- History: the newest N messages of one room before a (created_at, id) cursor.
CREATE INDEX messages_room_created_idx ON messages (room_id, created_at DESC, id DESC);
-- Send idempotency: a retried send with the same nonce finds the stored message.
CREATE UNIQUE INDEX messages_author_nonce_key ON messages (author_id, nonce) WHERE nonce IS NOT NULL;
