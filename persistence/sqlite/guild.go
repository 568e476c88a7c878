package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/rewind-chat/rewind/persistence"
)

// The guild statements. The single write transaction at a time orders
// every change of guilds, members, invites and channels: a limit that a
// transaction checks cannot be passed by another before it commits.
const (
	guildColumns   = `id, name, owner_id, member_count, created_at`
	channelColumns = `id, guild_id, name, seq, created_at`
	guildByID      = `SELECT ` + guildColumns + ` FROM guilds WHERE id = ?`
	// guildChannels reads rooms_guild_idx in its order.
	guildChannels = `SELECT ` + channelColumns + ` FROM rooms WHERE guild_id = ? AND kind = 2 ORDER BY created_at, id`
	channelByID   = `SELECT ` + channelColumns + ` FROM rooms WHERE id = ? AND kind = 2`
	// userGuilds are user ?1's guilds, oldest membership first, through
	// guild_members_user_idx.
	userGuilds = `SELECT g.id, g.name, g.owner_id, g.member_count, g.created_at
		FROM guild_members m JOIN guilds g ON g.id = m.guild_id
		WHERE m.user_id = ?1 ORDER BY m.joined_at, m.guild_id`
	userChannels = `SELECT r.id, r.guild_id, r.name, r.seq, r.created_at
		FROM guild_members m JOIN rooms r ON r.guild_id = m.guild_id AND r.kind = 2
		WHERE m.user_id = ?1 ORDER BY r.guild_id, r.created_at, r.id`
	isMember = `SELECT EXISTS (SELECT 1 FROM guild_members WHERE guild_id = ? AND user_id = ?)`
	// guildCount counts user ?1's guilds up to ?2, through
	// guild_members_user_idx.
	guildCount = `SELECT count(*) FROM (SELECT 1 FROM guild_members WHERE user_id = ?1 LIMIT ?2)`
	// channelCount counts guild ?1's channels, through rooms_guild_idx.
	channelCount  = `SELECT count(*) FROM rooms WHERE guild_id = ?1 AND kind = 2`
	insertMember  = `INSERT INTO guild_members (guild_id, user_id, joined_at) VALUES (?, ?, ?)`
	insertChannel = `INSERT INTO rooms (id, kind, guild_id, name, created_at) VALUES (?, 2, ?, ?, ?)`
	// memberIDsQuery reads the primary key of guild_members in its order.
	memberIDsQuery = `SELECT user_id FROM guild_members WHERE guild_id = ? ORDER BY user_id`
	// membersPage is a page of guild ?1's members after user ?2, ?3 of
	// them, along the primary key of guild_members.
	membersPage = `SELECT u.id, u.name, u.email, u.password_hash, u.profile, u.token_generation, u.created_at
		FROM guild_members m CROSS JOIN users u
		WHERE m.guild_id = ?1 AND m.user_id > ?2 AND u.id = m.user_id ORDER BY m.user_id LIMIT ?3`
	inviteByCode = `SELECT code, guild_id, created_by, max_uses, uses, expires_at, created_at FROM invites WHERE code = ?`
	// forgetReads removes user ?1's read positions in guild ?2's channels.
	forgetReads = `DELETE FROM read_states WHERE user_id = ?1
		AND room_id IN (SELECT id FROM rooms WHERE guild_id = ?2 AND kind = 2)`
)

// queryer is *sql.DB or *sql.Tx.
type queryer interface {
	querier
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func scanGuild(row scanner) (persistence.Guild, error) {
	var g persistence.Guild
	var created int64
	if err := row.Scan(&g.ID, &g.Name, &g.OwnerID, &g.MemberCount, &created); err != nil {
		return g, translate(err)
	}
	g.CreatedAt = fromMicros(created)
	return g, nil
}

func scanChannel(row scanner) (persistence.Channel, error) {
	var c persistence.Channel
	var created int64
	if err := row.Scan(&c.ID, &c.GuildID, &c.Name, &c.Seq, &created); err != nil {
		return c, translate(err)
	}
	c.CreatedAt = fromMicros(created)
	return c, nil
}

func scanChannels(rows *sql.Rows, err error) ([]persistence.Channel, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cs []persistence.Channel
	for rows.Next() {
		c, err := scanChannel(rows)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, rows.Err()
}

// loadGuild reads guild id with its channels; ErrNotFound when there is none.
func loadGuild(ctx context.Context, db queryer, id int64) (persistence.Guild, error) {
	g, err := scanGuild(db.QueryRowContext(ctx, guildByID, id))
	if err != nil {
		return g, err
	}
	g.Channels, err = scanChannels(db.QueryContext(ctx, guildChannels, id))
	return g, err
}

func (s *Store) CreateGuild(ctx context.Context, g persistence.Guild, channelID int64, maxGuilds int) (persistence.Guild, error) {
	if g.CreatedAt.IsZero() {
		g.CreatedAt = time.Now()
	}
	var out persistence.Guild
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if maxGuilds > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, guildCount, g.OwnerID, maxGuilds).Scan(&n); err != nil {
				return err
			}
			if n >= maxGuilds {
				return persistence.ErrTooManyGuilds
			}
		}
		at := micros(g.CreatedAt)
		if _, err := tx.ExecContext(ctx, `INSERT INTO guilds (id, name, owner_id, member_count, created_at) VALUES (?, ?, ?, 1, ?)`,
			g.ID, g.Name, g.OwnerID, at); err != nil {
			return translate(err)
		}
		if _, err := tx.ExecContext(ctx, insertMember, g.ID, g.OwnerID, at); err != nil {
			return translate(err)
		}
		if _, err := tx.ExecContext(ctx, insertChannel, channelID, g.ID, persistence.GeneralChannel, at); err != nil {
			return translate(err)
		}
		var err error
		out, err = loadGuild(ctx, tx, g.ID)
		return err
	})
	if err != nil {
		return persistence.Guild{}, err
	}
	return out, nil
}

func (s *Store) Guild(ctx context.Context, guildID int64) (persistence.Guild, error) {
	var g persistence.Guild
	err := s.readTx(ctx, func(tx *sql.Tx) (err error) {
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
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, userGuilds, userID)
		if err != nil {
			return err
		}
		defer rows.Close()
		at := map[int64]int{}
		for rows.Next() {
			g, err := scanGuild(rows)
			if err != nil {
				return err
			}
			at[g.ID] = len(gs)
			gs = append(gs, g)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		cs, err := scanChannels(tx.QueryContext(ctx, userChannels, userID))
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
	err := s.read.QueryRowContext(ctx, isMember, guildID, userID).Scan(&ok)
	return ok, err
}

// guildExists answers ErrNotFound when there is no guild id.
func guildExists(ctx context.Context, db querier, id int64) error {
	var ok bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM guilds WHERE id = ?)`, id).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return persistence.ErrNotFound
	}
	return nil
}

func (s *Store) GuildMemberIDs(ctx context.Context, guildID int64) ([]int64, error) {
	var ids []int64
	err := s.readTx(ctx, func(tx *sql.Tx) error {
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

// memberIDs reads the primary key of guild_members in its order.
func memberIDs(ctx context.Context, db queryer, guildID int64) ([]int64, error) {
	rows, err := db.QueryContext(ctx, memberIDsQuery, guildID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (s *Store) Members(ctx context.Context, guildID, after int64, limit int) ([]persistence.User, error) {
	if limit <= 0 {
		return nil, errors.New("sqlite: members limit not positive")
	}
	var us []persistence.User
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		if err := guildExists(ctx, tx, guildID); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, membersPage, guildID, after, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			u, err := scanUser(rows)
			if err != nil {
				return err
			}
			us = append(us, u)
		}
		return rows.Err()
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
	_, err := s.write.ExecContext(ctx, `INSERT INTO invites (code, guild_id, created_by, max_uses, uses, expires_at, created_at)
		VALUES (?, ?, ?, ?, 0, ?, ?)`, inv.Code, inv.GuildID, inv.CreatedBy, inv.MaxUses, micros(inv.ExpiresAt), micros(inv.CreatedAt))
	return translate(err)
}

func (s *Store) InviteByCode(ctx context.Context, code string) (persistence.Invite, error) {
	var inv persistence.Invite
	var expires, created int64
	err := s.read.QueryRowContext(ctx, inviteByCode, code).Scan(&inv.Code, &inv.GuildID, &inv.CreatedBy, &inv.MaxUses, &inv.Uses, &expires, &created)
	if err != nil {
		return persistence.Invite{}, translate(err)
	}
	inv.ExpiresAt, inv.CreatedAt = fromMicros(expires), fromMicros(created)
	return inv, nil
}

func (s *Store) JoinGuild(ctx context.Context, code string, userID int64, now time.Time, maxMembers, maxGuilds int) (persistence.Guild, bool, error) {
	var g persistence.Guild
	var joined bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var guildID, expires int64
		var maxUses, uses int
		err := tx.QueryRowContext(ctx, `SELECT guild_id, max_uses, uses, expires_at FROM invites WHERE code = ?`, code).
			Scan(&guildID, &maxUses, &uses, &expires)
		if errors.Is(err, sql.ErrNoRows) {
			return persistence.ErrInviteNotFound
		}
		if err != nil {
			return err
		}
		var member bool
		if err := tx.QueryRowContext(ctx, isMember, guildID, userID).Scan(&member); err != nil {
			return err
		}
		if !member {
			if expires <= micros(now) || (maxUses > 0 && uses >= maxUses) {
				return persistence.ErrInviteNotFound
			}
			if err := s.admit(ctx, tx, guildID, userID, maxMembers, maxGuilds); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, insertMember, guildID, userID, micros(now)); err != nil {
				return translate(err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE guilds SET member_count = member_count + 1 WHERE id = ?`, guildID); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE invites SET uses = uses + 1 WHERE code = ?`, code); err != nil {
				return err
			}
		}
		joined = !member
		g, err = loadGuild(ctx, tx, guildID)
		return err
	})
	if err != nil {
		return persistence.Guild{}, false, err
	}
	return g, joined, nil
}

// admit checks the limits of userID joining guildID.
func (s *Store) admit(ctx context.Context, tx *sql.Tx, guildID, userID int64, maxMembers, maxGuilds int) error {
	var members int
	if err := tx.QueryRowContext(ctx, `SELECT member_count FROM guilds WHERE id = ?`, guildID).Scan(&members); err != nil {
		return translate(err)
	}
	if maxMembers > 0 && members >= maxMembers {
		return persistence.ErrGuildFull
	}
	if maxGuilds > 0 {
		var n int
		if err := tx.QueryRowContext(ctx, guildCount, userID, maxGuilds).Scan(&n); err != nil {
			return err
		}
		if n >= maxGuilds {
			return persistence.ErrTooManyGuilds
		}
	}
	return nil
}

func (s *Store) LeaveGuild(ctx context.Context, guildID, userID int64) error {
	return s.removeMember(ctx, guildID, userID)
}

func (s *Store) KickMember(ctx context.Context, guildID, userID int64) error {
	return s.removeMember(ctx, guildID, userID)
}

// removeMember removes userID, not the owner, from guildID, with the read
// positions in its channels.
func (s *Store) removeMember(ctx context.Context, guildID, userID int64) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var owner int64
		if err := tx.QueryRowContext(ctx, `SELECT owner_id FROM guilds WHERE id = ?`, guildID).Scan(&owner); err != nil {
			return translate(err)
		}
		if owner == userID {
			return persistence.ErrOwner
		}
		err := mustChange(changed(tx.ExecContext(ctx, `DELETE FROM guild_members WHERE guild_id = ? AND user_id = ?`, guildID, userID)))
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE guilds SET member_count = member_count - 1 WHERE id = ?`, guildID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, forgetReads, userID, guildID)
		return err
	})
}

func (s *Store) RenameGuild(ctx context.Context, guildID int64, name string) (persistence.Guild, error) {
	var g persistence.Guild
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		err := mustChange(changed(tx.ExecContext(ctx, `UPDATE guilds SET name = ? WHERE id = ?`, name, guildID)))
		if err != nil {
			return err
		}
		g, err = loadGuild(ctx, tx, guildID)
		return err
	})
	if err != nil {
		return persistence.Guild{}, err
	}
	return g, nil
}

// deleteChannelMessages removes the messages of guild ?'s channels; the
// rooms' deletion then cascades into read_states.
const deleteChannelMessages = `DELETE FROM messages WHERE room_id IN (SELECT id FROM rooms WHERE guild_id = ? AND kind = 2)`

func (s *Store) DeleteGuild(ctx context.Context, guildID int64) ([]int64, error) {
	var ids []int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := guildExists(ctx, tx, guildID); err != nil {
			return err
		}
		var err error
		if ids, err = memberIDs(ctx, tx, guildID); err != nil {
			return err
		}
		for _, q := range []string{
			deleteChannelMessages,
			`DELETE FROM rooms WHERE guild_id = ? AND kind = 2`,
			`DELETE FROM guilds WHERE id = ?`, // members and invites cascade
		} {
			if _, err := tx.ExecContext(ctx, q, guildID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

func (s *Store) CreateChannel(ctx context.Context, guildID, channelID int64, name string, now time.Time, maxChannels int) (persistence.Channel, error) {
	var c persistence.Channel
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if err := guildExists(ctx, tx, guildID); err != nil {
			return err
		}
		if maxChannels > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, channelCount, guildID).Scan(&n); err != nil {
				return err
			}
			if n >= maxChannels {
				return persistence.ErrTooManyChannels
			}
		}
		if _, err := tx.ExecContext(ctx, insertChannel, channelID, guildID, name, micros(now)); err != nil {
			return translate(err)
		}
		var err error
		c, err = scanChannel(tx.QueryRowContext(ctx, channelByID, channelID))
		return err
	})
	if err != nil {
		return persistence.Channel{}, err
	}
	return c, nil
}

func (s *Store) DeleteChannel(ctx context.Context, channelID int64) (persistence.Channel, error) {
	var c persistence.Channel
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if c, err = scanChannel(tx.QueryRowContext(ctx, channelByID, channelID)); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, channelCount, c.GuildID).Scan(&n); err != nil {
			return err
		}
		if n <= 1 {
			return persistence.ErrLastChannel
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE room_id = ?`, channelID); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM rooms WHERE id = ?`, channelID) // read_states cascade
		return err
	})
	if err != nil {
		return persistence.Channel{}, err
	}
	return c, nil
}

func (s *Store) ChannelByID(ctx context.Context, channelID int64) (persistence.Channel, error) {
	return scanChannel(s.read.QueryRowContext(ctx, channelByID, channelID))
}
