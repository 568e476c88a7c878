-- Guilds (protocol.md §3; the persistence package comment). A channel is
-- a room of kind 2 with its guild in rooms.guild_id; a DM (kind 1) keeps
-- its two members. member_low and member_high become nullable, which in
-- SQLite means rebuilding rooms (the "twelve steps" of
-- https://www.sqlite.org/lang_altertable.html#otheralter): this migration
-- runs with foreign keys off (noForeignKeys in sqlite.go), so that dropping
-- the old table neither fails on the messages that refer to it nor
-- cascades into read_states, and PRAGMA foreign_key_check must find
-- nothing before it commits.

CREATE TABLE guilds (
    id           INTEGER PRIMARY KEY, -- snowflake
    name         TEXT    NOT NULL,
    owner_id     INTEGER NOT NULL REFERENCES users (id),
    -- guild_members' rows of the guild, kept by the transactions that
    -- change them (the single writer orders them).
    member_count INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE guild_members (
    guild_id  INTEGER NOT NULL REFERENCES guilds (id) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) STRICT, WITHOUT ROWID;
-- A user's guilds, oldest membership first: GuildsOf, the guild limit,
-- the channel branch of Chats.
CREATE INDEX guild_members_user_idx ON guild_members (user_id, joined_at, guild_id);

CREATE TABLE invites (
    code       TEXT    PRIMARY KEY,
    guild_id   INTEGER NOT NULL REFERENCES guilds (id) ON DELETE CASCADE,
    created_by INTEGER NOT NULL REFERENCES users (id),
    max_uses   INTEGER NOT NULL, -- 0: unlimited
    uses       INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX invites_guild_idx ON invites (guild_id);

-- rooms, rebuilt: the columns of 0001 and 0005 in their order, then
-- guild_id. The CHECK keeps every DM as it was (two members, low < high,
-- no guild) and gives every channel a guild and no members; the UNIQUE
-- key still makes "the DM of A and B" one row (channels, whose member
-- columns are NULL, are distinct in it).
CREATE TABLE rooms_new (
    id          INTEGER PRIMARY KEY, -- snowflake
    kind        INTEGER NOT NULL,
    member_low  INTEGER REFERENCES users (id),
    member_high INTEGER REFERENCES users (id),
    created_at  INTEGER NOT NULL,
    seq         INTEGER NOT NULL DEFAULT 0,
    activity_at INTEGER,
    guild_id    INTEGER REFERENCES guilds (id),
    name        TEXT,
    UNIQUE (kind, member_low, member_high),
    CHECK ((kind = 1 AND member_low IS NOT NULL AND member_high IS NOT NULL AND member_low < member_high
            AND guild_id IS NULL AND name IS NULL)
        OR (kind = 2 AND member_low IS NULL AND member_high IS NULL AND guild_id IS NOT NULL AND name IS NOT NULL))
) STRICT;
INSERT INTO rooms_new (id, kind, member_low, member_high, created_at, seq, activity_at)
    SELECT id, kind, member_low, member_high, created_at, seq, activity_at FROM rooms;
DROP TABLE rooms;
ALTER TABLE rooms_new RENAME TO rooms;

-- The indexes of 0005, as they were.
CREATE INDEX rooms_low_activity_idx ON rooms (member_low, activity_at DESC, id DESC) WHERE kind = 1 AND seq > 0;
CREATE INDEX rooms_high_activity_idx ON rooms (member_high, activity_at DESC, id DESC) WHERE kind = 1 AND seq > 0;
-- A guild's channels, oldest first (and the foreign key from guilds).
CREATE INDEX rooms_guild_idx ON rooms (guild_id, created_at, id) WHERE guild_id IS NOT NULL;
-- Chats' channel branch: each guild's channels by recent activity, read
-- from the cursor on, as the DM branches read theirs.
CREATE INDEX rooms_channel_activity_idx ON rooms (guild_id, activity_at DESC, id DESC) WHERE kind = 2 AND seq > 0;

-- A room's read states, for the cascade when a channel is deleted (the
-- primary key leads with the user).
CREATE INDEX read_states_room_idx ON read_states (room_id);
