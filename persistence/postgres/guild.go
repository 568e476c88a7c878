package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rewind-chat/rewind/persistence"
)

// The guild statements. Every change of a guild's members, invites' uses
// and channels happens under the guild row's lock (lockGuild), and every
// addition to a user's guilds under the user row's lock (lockUser), taken
// in that order (guild, then user; a channel's room after its guild):
// a transaction that checks a limit counts what the guild's and the
// user's earlier writers committed, and the next one waits for it to
// commit (the package comment).
const (
	guildColumns   = `id, name, owner_id, member_count, created_at`
	channelColumns = `id, guild_id, name, seq, created_at`
	// lockGuild locks guild $1 against the other writers of its members,
	// invites and channels; FOR NO KEY UPDATE leaves the KEY SHARE locks
	// of foreign key checks alone.
	lockGuild = `SELECT owner_id, member_count FROM guilds WHERE id = $1 FOR NO KEY UPDATE`
	// lockUser locks user $1 against the other writers of its guilds.
	lockUser  = `SELECT FROM users WHERE id = $1 FOR NO KEY UPDATE`
	guildByID = `SELECT ` + guildColumns + ` FROM guilds WHERE id = $1`
	// guildChannels reads rooms_guild_idx in its order.
	guildChannels = `SELECT ` + channelColumns + ` FROM rooms WHERE guild_id = $1 AND kind = 2 ORDER BY created_at, id`
	channelByID   = `SELECT ` + channelColumns + ` FROM rooms WHERE id = $1 AND kind = 2`
	// userGuilds are user $1's guilds, oldest membership first, along
	// guild_members_user_idx, each looked up by key (the LIMIT keeps the
	// lookup a subquery per membership, which a join would let the planner
	// hash with all of guilds).
	userGuilds = `SELECT g.* FROM guild_members m CROSS JOIN LATERAL (
			SELECT ` + guildColumns + ` FROM guilds WHERE id = m.guild_id LIMIT 1
		) AS g
		WHERE m.user_id = $1 ORDER BY m.joined_at, m.guild_id`
	// userChannels are the channels of user $1's guilds, through
	// rooms_guild_idx for the array of the guilds' ids.
	userChannels = `SELECT ` + channelColumns + ` FROM rooms
		WHERE guild_id = ANY (ARRAY(SELECT guild_id FROM guild_members WHERE user_id = $1)) AND kind = 2
		ORDER BY guild_id, created_at, id`
	isMember = `SELECT EXISTS (SELECT FROM guild_members WHERE guild_id = $1 AND user_id = $2)`
	// guildCount counts user $1's guilds up to $2.
	guildCount = `SELECT count(*) FROM (SELECT FROM guild_members WHERE user_id = $1 LIMIT $2) AS g`
	// channelCount counts guild $1's channels up to $2.
	channelCount  = `SELECT count(*) FROM (SELECT FROM rooms WHERE guild_id = $1 AND kind = 2 LIMIT $2) AS c`
	insertMember  = `INSERT INTO guild_members (guild_id, user_id, joined_at) VALUES ($1, $2, $3)`
	insertChannel = `INSERT INTO rooms (id, kind, guild_id, name, created_at) VALUES ($1, 2, $2, $3, $4)`
	// memberIDsQuery reads the primary key of guild_members in its order.
	memberIDsQuery = `SELECT user_id FROM guild_members WHERE guild_id = $1 ORDER BY user_id`
	// membersPage is a page of guild $1's members after user $2, $3 of
	// them, along the primary key of guild_members, each user looked up
	// by key (the LIMIT keeps the lookup a subquery per member, which a
	// join would let the planner merge with all of users).
	membersPage = `SELECT u.* FROM (
			SELECT user_id FROM guild_members WHERE guild_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3
		) AS m CROSS JOIN LATERAL (
			SELECT id, name, email, password_hash, profile, token_generation, created_at FROM users WHERE id = m.user_id LIMIT 1
		) AS u
		ORDER BY m.user_id`
	inviteByCode = `SELECT code, guild_id, created_by, max_uses, uses, expires_at, created_at FROM invites WHERE code = $1`
	// joinState tells whether user $2 is a member of guild $1 and whether
	// invite $3 is live at $4.
	joinState = `SELECT EXISTS (SELECT FROM guild_members WHERE guild_id = $1 AND user_id = $2),
		EXISTS (SELECT FROM invites WHERE code = $3 AND expires_at > $4 AND (max_uses = 0 OR uses < max_uses))`
	// forgetReads removes user $1's read positions in guild $2's channels.
	forgetReads = `DELETE FROM read_states WHERE user_id = $1
		AND room_id = ANY (ARRAY(SELECT id FROM rooms WHERE guild_id = $2 AND kind = 2))`
	deleteRoomsMessages = `DELETE FROM messages WHERE room_id = ANY ($1::bigint[])`
)

func scanGuild(row pgx.Row) (persistence.Guild, error) {
	var g persistence.Guild
	if err := row.Scan(&g.ID, &g.Name, &g.OwnerID, &g.MemberCount, &g.CreatedAt); err != nil {
		return g, translate(err)
	}
	g.CreatedAt = g.CreatedAt.UTC()
	return g, nil
}

func scanChannel(row pgx.Row) (persistence.Channel, error) {
	var c persistence.Channel
	if err := row.Scan(&c.ID, &c.GuildID, &c.Name, &c.Seq, &c.CreatedAt); err != nil {
		return c, translate(err)
	}
	c.CreatedAt = c.CreatedAt.UTC()
	return c, nil
}

// dbtx is *pgxpool.Pool or pgx.Tx.
type dbtx interface {
	querier
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func queryChannels(ctx context.Context, db dbtx, query string, arg int64) ([]persistence.Channel, error) {
	rows, err := db.Query(ctx, query, arg)
	if err != nil {
		return nil, err
	}
	var cs []persistence.Channel
	return pgx.AppendRows(cs, rows, func(row pgx.CollectableRow) (persistence.Channel, error) { return scanChannel(row) })
}

// loadGuild reads guild id with its channels; ErrNotFound when there is none.
func loadGuild(ctx context.Context, db dbtx, id int64) (persistence.Guild, error) {
	g, err := scanGuild(db.QueryRow(ctx, guildByID, id))
	if err != nil {
		return g, err
	}
	g.Channels, err = queryChannels(ctx, db, guildChannels, id)
	return g, err
}

// readTx runs fn in a read-only REPEATABLE READ transaction: one snapshot.
func (s *Store) readTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// underLimit answers limitErr when count (a query of $1 and $2 = max)
// reaches max (> 0).
func underLimit(ctx context.Context, tx pgx.Tx, count string, id int64, max int, limitErr error) error {
	if max <= 0 {
		return nil
	}
	var n int
	if err := tx.QueryRow(ctx, count, id, max).Scan(&n); err != nil {
		return err
	}
	if n >= max {
		return limitErr
	}
	return nil
}

func (s *Store) CreateGuild(ctx context.Context, g persistence.Guild, channelID int64, maxGuilds int) (persistence.Guild, error) {
	if g.CreatedAt.IsZero() {
		g.CreatedAt = time.Now()
	}
	var out persistence.Guild
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := mustChange(tx.Exec(ctx, lockUser, g.OwnerID)); err != nil {
			return err
		}
		if err := underLimit(ctx, tx, guildCount, g.OwnerID, maxGuilds, persistence.ErrTooManyGuilds); err != nil {
			return err
		}
		at := ts(g.CreatedAt)
		if _, err := tx.Exec(ctx, `INSERT INTO guilds (id, name, owner_id, member_count, created_at) VALUES ($1, $2, $3, 1, $4)`,
			g.ID, g.Name, g.OwnerID, at); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, insertMember, g.ID, g.OwnerID, at); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, insertChannel, channelID, g.ID, persistence.GeneralChannel, at); err != nil {
			return err
		}
		var err error
		out, err = loadGuild(ctx, tx, g.ID)
		return err
	})
	if err != nil {
		return persistence.Guild{}, translate(err)
	}
	return out, nil
}

func (s *Store) Guild(ctx context.Context, guildID int64) (persistence.Guild, error) {
	var g persistence.Guild
	err := s.readTx(ctx, func(tx pgx.Tx) (err error) {
		g, err = loadGuild(ctx, tx, guildID)
		return err
	})
	if err != nil {
		return persistence.Guild{}, err
	}
	return g, nil
}

func (s *Store) GuildsOf(ctx context.Context, userID int64) ([]persistence.Guild, error) {
	var gs []persistence.Guild
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, userGuilds, userID)
		if err != nil {
			return err
		}
		gs, err = pgx.AppendRows(gs, rows, func(row pgx.CollectableRow) (persistence.Guild, error) { return scanGuild(row) })
		if err != nil {
			return err
		}
		at := make(map[int64]int, len(gs))
		for i, g := range gs {
			at[g.ID] = i
		}
		cs, err := queryChannels(ctx, tx, userChannels, userID)
		if err != nil {
			return err
		}
		for _, c := range cs {
			g := &gs[at[c.GuildID]]
			g.Channels = append(g.Channels, c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return gs, nil
}

func (s *Store) IsMember(ctx context.Context, guildID, userID int64) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, isMember, guildID, userID).Scan(&ok)
	return ok, err
}

// guildExists answers ErrNotFound when there is no guild id.
func guildExists(ctx context.Context, db querier, id int64) error {
	var ok bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT FROM guilds WHERE id = $1)`, id).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return persistence.ErrNotFound
	}
	return nil
}

// memberIDs reads the primary key of guild_members in its order.
func memberIDs(ctx context.Context, db dbtx, guildID int64) ([]int64, error) {
	rows, err := db.Query(ctx, memberIDsQuery, guildID)
	if err != nil {
		return nil, err
	}
	var ids []int64
	return pgx.AppendRows(ids, rows, pgx.RowTo[int64])
}

func (s *Store) GuildMemberIDs(ctx context.Context, guildID int64) ([]int64, error) {
	var ids []int64
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		if err := guildExists(ctx, tx, guildID); err != nil {
			return err
		}
		var err error
		ids, err = memberIDs(ctx, tx, guildID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

func (s *Store) Members(ctx context.Context, guildID, after int64, limit int) ([]persistence.User, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("postgres: members limit %d", limit)
	}
	var us []persistence.User
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		if err := guildExists(ctx, tx, guildID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, membersPage, guildID, after, limit)
		if err != nil {
			return err
		}
		us, err = pgx.AppendRows(us, rows, func(row pgx.CollectableRow) (persistence.User, error) { return scanUser(row) })
		return err
	})
	if err != nil {
		return nil, err
	}
	return us, nil
}

func (s *Store) CreateInvite(ctx context.Context, inv persistence.Invite) error {
	if inv.CreatedAt.IsZero() {
		inv.CreatedAt = time.Now()
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO invites (code, guild_id, created_by, max_uses, uses, expires_at, created_at)
		VALUES ($1, $2, $3, $4, 0, $5, $6)`, inv.Code, inv.GuildID, inv.CreatedBy, inv.MaxUses, ts(inv.ExpiresAt), ts(inv.CreatedAt))
	return translate(err)
}

func (s *Store) InviteByCode(ctx context.Context, code string) (persistence.Invite, error) {
	var inv persistence.Invite
	err := s.pool.QueryRow(ctx, inviteByCode, code).Scan(&inv.Code, &inv.GuildID, &inv.CreatedBy, &inv.MaxUses, &inv.Uses, &inv.ExpiresAt, &inv.CreatedAt)
	if err != nil {
		return persistence.Invite{}, translate(err)
	}
	inv.ExpiresAt, inv.CreatedAt = inv.ExpiresAt.UTC(), inv.CreatedAt.UTC()
	return inv, nil
}

// JoinGuild finds the invite's guild, locks it, and only then reads the
// invite, the membership and the member count, each a new snapshot in
// READ COMMITTED that holds what the guild's earlier joins committed: the
// joins of a guild, by any of its invites, run one at a time from the
// lock on. Then it locks the user, for the guild limit.
func (s *Store) JoinGuild(ctx context.Context, code string, userID int64, now time.Time, maxMembers, maxGuilds int) (persistence.Guild, bool, error) {
	var g persistence.Guild
	var joined bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var guildID int64
		err := tx.QueryRow(ctx, `SELECT guild_id FROM invites WHERE code = $1`, code).Scan(&guildID)
		if errors.Is(err, pgx.ErrNoRows) {
			return persistence.ErrInviteNotFound
		}
		if err != nil {
			return err
		}
		var owner int64
		var members int
		err = tx.QueryRow(ctx, lockGuild, guildID).Scan(&owner, &members)
		if errors.Is(err, pgx.ErrNoRows) { // deleted meanwhile, with its invites
			return persistence.ErrInviteNotFound
		}
		if err != nil {
			return err
		}
		var member, live bool
		err = tx.QueryRow(ctx, joinState, guildID, userID, code, ts(now)).Scan(&member, &live)
		if err != nil {
			return err
		}
		if !member {
			switch {
			case !live:
				return persistence.ErrInviteNotFound
			case maxMembers > 0 && members >= maxMembers:
				return persistence.ErrGuildFull
			}
			if err := mustChange(tx.Exec(ctx, lockUser, userID)); err != nil {
				return err
			}
			if err := underLimit(ctx, tx, guildCount, userID, maxGuilds, persistence.ErrTooManyGuilds); err != nil {
				return err
			}
			b := &pgx.Batch{}
			b.Queue(insertMember, guildID, userID, ts(now))
			b.Queue(`UPDATE guilds SET member_count = member_count + 1 WHERE id = $1`, guildID)
			b.Queue(`UPDATE invites SET uses = uses + 1 WHERE code = $1`, code)
			if err := tx.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
		}
		joined = !member
		g, err = loadGuild(ctx, tx, guildID)
		return err
	})
	if err != nil {
		return persistence.Guild{}, false, translate(err)
	}
	return g, joined, nil
}

func (s *Store) LeaveGuild(ctx context.Context, guildID, userID int64) error {
	return s.removeMember(ctx, guildID, userID)
}

func (s *Store) KickMember(ctx context.Context, guildID, userID int64) error {
	return s.removeMember(ctx, guildID, userID)
}

// removeMember removes userID, not the owner, from guildID under the
// guild's lock, with the read positions in its channels.
func (s *Store) removeMember(ctx context.Context, guildID, userID int64) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var owner int64
		if err := tx.QueryRow(ctx, lockGuild, guildID).Scan(&owner, new(int)); err != nil {
			return translate(err)
		}
		if owner == userID {
			return persistence.ErrOwner
		}
		if err := mustChange(tx.Exec(ctx, `DELETE FROM guild_members WHERE guild_id = $1 AND user_id = $2`, guildID, userID)); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE guilds SET member_count = member_count - 1 WHERE id = $1`, guildID)
		b.Queue(forgetReads, userID, guildID)
		return tx.SendBatch(ctx, b).Close()
	})
}

func (s *Store) RenameGuild(ctx context.Context, guildID int64, name string) (persistence.Guild, error) {
	var g persistence.Guild
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := mustChange(tx.Exec(ctx, `UPDATE guilds SET name = $2 WHERE id = $1`, guildID, name)); err != nil {
			return err
		}
		var err error
		g, err = loadGuild(ctx, tx, guildID)
		return err
	})
	if err != nil {
		return persistence.Guild{}, translate(err)
	}
	return g, nil
}

// lockChannels locks the rooms of guild $1's channels against every
// writer (FOR UPDATE conflicts with the room locks of WriteMessages and
// with the KEY SHARE locks of the foreign key checks of its inserts and
// of MarkRead), in id order, and returns their ids: a write that got there
// first commits before their messages are deleted, and one that comes
// after finds no room.
const lockChannels = `SELECT id FROM rooms WHERE guild_id = $1 AND kind = 2 ORDER BY id FOR UPDATE`

// DeleteGuild locks the guild as every writer of its members and channels
// does, FOR NO KEY UPDATE, not FOR UPDATE: a transaction that writes a
// channel's room twice (a send and an edit in one batch) holds the room
// and takes KEY SHARE on the guild (PostgreSQL checks rooms.guild_id again
// when it updates a row version of its own), which FOR UPDATE would make
// wait for this transaction while this one waits for the room. The DELETE
// of the guild, last, takes FOR UPDATE when every channel room is locked
// here, so that no such writer is left.
func (s *Store) DeleteGuild(ctx context.Context, guildID int64) ([]int64, error) {
	var ids []int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := mustChange(tx.Exec(ctx, lockGuild, guildID)); err != nil {
			return err
		}
		var err error
		if ids, err = memberIDs(ctx, tx, guildID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, lockChannels, guildID)
		if err != nil {
			return err
		}
		rooms, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(deleteRoomsMessages, rooms)
		b.Queue(`DELETE FROM rooms WHERE id = ANY ($1::bigint[])`, rooms) // read_states cascade
		b.Queue(`DELETE FROM guilds WHERE id = $1`, guildID)              // members and invites cascade
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, translate(err)
	}
	return ids, nil
}

func (s *Store) CreateChannel(ctx context.Context, guildID, channelID int64, name string, now time.Time, maxChannels int) (persistence.Channel, error) {
	var c persistence.Channel
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := mustChange(tx.Exec(ctx, lockGuild, guildID)); err != nil {
			return err
		}
		if err := underLimit(ctx, tx, channelCount, guildID, maxChannels, persistence.ErrTooManyChannels); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, insertChannel, channelID, guildID, name, ts(now)); err != nil {
			return err
		}
		var err error
		c, err = scanChannel(tx.QueryRow(ctx, channelByID, channelID))
		return err
	})
	if err != nil {
		return persistence.Channel{}, translate(err)
	}
	return c, nil
}

func (s *Store) DeleteChannel(ctx context.Context, channelID int64) (persistence.Channel, error) {
	var c persistence.Channel
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var guildID int64
		if err := tx.QueryRow(ctx, `SELECT guild_id FROM rooms WHERE id = $1 AND kind = 2`, channelID).Scan(&guildID); err != nil {
			return translate(err)
		}
		if err := mustChange(tx.Exec(ctx, lockGuild, guildID)); err != nil {
			return err
		}
		// Under the guild's lock, then the room's (as lockChannels): read
		// again, since a concurrent DeleteChannel may have removed it.
		var err error
		if c, err = scanChannel(tx.QueryRow(ctx, channelByID+` FOR UPDATE`, channelID)); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, channelCount, guildID, 2).Scan(&n); err != nil {
			return err
		}
		if n <= 1 {
			return persistence.ErrLastChannel
		}
		b := &pgx.Batch{}
		b.Queue(`DELETE FROM messages WHERE room_id = $1`, channelID)
		b.Queue(`DELETE FROM rooms WHERE id = $1`, channelID) // read_states cascade
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return persistence.Channel{}, translate(err)
	}
	return c, nil
}

func (s *Store) ChannelByID(ctx context.Context, channelID int64) (persistence.Channel, error) {
	return scanChannel(s.pool.QueryRow(ctx, channelByID, channelID))
}
