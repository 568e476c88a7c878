-- Guilds (protocol.md §3; the persistence package comment). A channel is
-- a room of kind 2 with its guild in rooms.guild_id and its name in
-- rooms.name; a DM (kind 1) keeps its two members.

CREATE TABLE guilds (
    id           BIGINT      PRIMARY KEY, -- snowflake
    name         TEXT        NOT NULL,
    owner_id     BIGINT      NOT NULL REFERENCES users (id),
    -- guild_members' rows of the guild, kept by the transactions that
    -- change them under this row's lock.
    member_count INTEGER     NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE guild_members (
    guild_id  BIGINT      NOT NULL REFERENCES guilds (id) ON DELETE CASCADE,
    user_id   BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);
-- A user's guilds, oldest membership first: GuildsOf, the guild limit,
-- the channel branch of Chats.
CREATE INDEX guild_members_user_idx ON guild_members (user_id, joined_at, guild_id);

CREATE TABLE invites (
    code       TEXT        PRIMARY KEY,
    guild_id   BIGINT      NOT NULL REFERENCES guilds (id) ON DELETE CASCADE,
    created_by BIGINT      NOT NULL REFERENCES users (id),
    max_uses   INTEGER     NOT NULL, -- 0: unlimited
    uses       INTEGER     NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX invites_guild_idx ON invites (guild_id);

-- The CHECK keeps every DM as it was (two members, low < high, no guild)
-- and gives every channel a guild, a name and no members; the UNIQUE key
-- still makes "the DM of A and B" one row (channels, whose member columns
-- are NULL, are distinct in it). Adding the CHECK reads rooms once, under
-- the ALTER's lock.
ALTER TABLE rooms
    ALTER COLUMN member_low DROP NOT NULL,
    ALTER COLUMN member_high DROP NOT NULL,
    ADD COLUMN guild_id BIGINT REFERENCES guilds (id),
    ADD COLUMN name TEXT,
    DROP CONSTRAINT rooms_check,
    ADD CONSTRAINT rooms_kind_check CHECK (
        (kind = 1 AND member_low IS NOT NULL AND member_high IS NOT NULL AND member_low < member_high
            AND guild_id IS NULL AND name IS NULL)
        OR (kind = 2 AND member_low IS NULL AND member_high IS NULL AND guild_id IS NOT NULL AND name IS NOT NULL));

-- A guild's channels, oldest first (and the foreign key from guilds).
CREATE INDEX rooms_guild_idx ON rooms (guild_id, created_at, id) WHERE guild_id IS NOT NULL;
-- Chats' channel branch: each guild's channels by recent activity, read
-- from the cursor on, as the DM branches read theirs.
CREATE INDEX rooms_channel_activity_idx ON rooms (guild_id, activity_at DESC, id DESC) WHERE kind = 2 AND seq > 0;
-- A room's read states, for the cascade when a channel is deleted (the
-- primary key leads with the user).
CREATE INDEX read_states_room_idx ON read_states (room_id);
