package legacy

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rewind-chat/rewind/persistence"
)

func (m messageRow) fields() []Field {
	return []Field{
		{Name: "id", Value: m.ID}, {Name: "room", Value: m.Room}, {Name: "author", Value: m.Author},
		{Name: "created_at", Value: m.CreatedAt}, nullField("content", m.Content),
	}
}

// importDMs takes every DM_<chat id> table of WIND_chat.db, in name order;
// other tables there are reported as unused.
func (im *importer) importDMs(ctx context.Context) error {
	names, err := tableNames(ctx, im.src.chat)
	if err != nil {
		return fmt.Errorf("legacy: read chat tables: %w", err)
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !strings.HasPrefix(name, dmPrefix) {
			if err := im.unusedTable(ctx, im.src.chat, name, "WIND_chat.db holds DM tables only"); err != nil {
				return err
			}
			continue
		}
		im.chatIDs[name] = true
		if err := im.importDM(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// pending is a row of a DM table that can be imported, and the notes to
// report once its fate is known.
type pending struct {
	row   messageRow
	msg   persistence.Message
	notes []Item
}

func (im *importer) importDM(ctx context.Context, table string) error {
	rows, err := im.src.messages(ctx, table)
	if err != nil {
		return err
	}
	t := im.res.table(table)
	t.Read = len(rows)
	im.prog.begin(table, len(rows))
	defer im.prog.end()
	skip := func(row messageRow, kind Kind, why string) {
		t.Skipped++
		im.report(t, Item{Kind: kind, Key: "id=" + row.ID, Done: "not imported", Why: why, Row: row.fields()})
	}
	skipAll := func(kind Kind, why string) {
		for _, row := range rows {
			skip(row, kind, why)
		}
		im.prog.add(len(rows))
	}

	chat, err := parseID(strings.TrimPrefix(table, dmPrefix))
	if err != nil {
		skipAll(KindBadTable, "the table's chat id "+err.Error())
		return nil
	}
	lo, hi, why := im.members(chat, rows)
	if lo == nil {
		skipAll(KindBadTable, why)
		return nil
	}
	for _, u := range []*user{lo, hi} {
		if !u.ok {
			skipAll(KindDepends, fmt.Sprintf("the DM's member %d is not imported: %s", u.id, u.why))
			return nil
		}
	}

	var todo []*pending
	for _, row := range rows {
		id, err := parseID(row.ID)
		if err != nil {
			skip(row, KindBadID, "id "+err.Error())
			continue
		}
		if other, ok := im.msgIDs[id]; ok {
			skip(row, KindConflict, "a row of "+other+" has the same id")
			continue
		}
		author, err := parseID(row.Author)
		if err != nil || (author != lo.id && author != hi.id) {
			skip(row, KindUnknownAuthor, fmt.Sprintf("the author is neither member (%d, %d)", lo.id, hi.id))
			continue
		}
		created, err := im.parseTime(row.CreatedAt)
		if err != nil {
			skip(row, KindBadTime, "created_at "+err.Error())
			continue
		}
		content := repair(row.Content.String)
		if content == "" {
			skip(row, KindEmptyContent, "the content is NULL or empty: REWIND keeps no message without text")
			continue
		}
		im.msgIDs[id] = table
		p := &pending{row: row, msg: persistence.Message{ID: id, AuthorID: author, Content: content, CreatedAt: created}}
		if content != row.Content.String {
			p.notes = append(p.notes, Item{Kind: KindBadText, Why: "the content is not valid UTF-8 or holds U+0000: invalid bytes became U+FFFD, U+0000 was removed"})
		}
		if row.Room != strconv.FormatInt(chat, 10) {
			p.notes = append(p.notes, Item{Kind: KindRoomMismatch, Why: "the room column is not the table's chat id; the table decides"})
		}
		todo = append(todo, p)
	}
	im.prog.add(t.Skipped)
	// History orders by (created_at, id); write in that order too.
	slices.SortFunc(todo, func(a, b *pending) int {
		if c := a.msg.CreatedAt.Compare(b.msg.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.msg.ID, b.msg.ID)
	})
	return im.writeDM(ctx, t, lo.id, hi.id, todo)
}

// members finds the two users of DM chat: a pair of users whose ids XOR
// to chat. Should several pairs do so, the one that holds every author
// is it. lo is nil when there is none; why says so.
func (im *importer) members(chat int64, rows []messageRow) (lo, hi *user, why string) {
	var pairs [][2]*user
	for _, u := range im.order {
		if v := im.users[chat^u.id]; v != nil && v.id > u.id {
			pairs = append(pairs, [2]*user{u, v})
		}
	}
	if len(pairs) > 1 {
		pairs = slices.DeleteFunc(pairs, func(p [2]*user) bool {
			for _, row := range rows {
				a, err := parseID(row.Author)
				if err == nil && a != p[0].id && a != p[1].id {
					return true
				}
			}
			return false
		})
	}
	switch len(pairs) {
	case 0:
		return nil, nil, "no two users' ids XOR to the table's chat id"
	case 1:
		return pairs[0][0], pairs[0][1], ""
	}
	return nil, nil, "several pairs of users' ids XOR to the table's chat id, and the authors do not tell which"
}

// writeDM writes todo into the DM room of lo and hi in batches, each one
// transaction, skipping what is there already.
func (im *importer) writeDM(ctx context.Context, t *Table, lo, hi int64, todo []*pending) error {
	room, err := im.r.FindDMRoom(ctx, lo, hi)
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		room = 0
	case err != nil:
		return fmt.Errorf("legacy: %s: find room: %w", t.Name, err)
	}
	var stored map[int64]persistence.Message
	if room != 0 {
		if stored, err = im.history(ctx, room); err != nil {
			return fmt.Errorf("legacy: %s: %w", t.Name, err)
		}
	}
	for start := 0; start < len(todo); start += im.opts.BatchSize {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := todo[start:min(start+im.opts.BatchSize, len(todo))]
		var ops []persistence.MessageOp
		var sent []*pending
		for _, p := range batch {
			m, ok := stored[p.msg.ID]
			if !ok && room != 0 {
				// History leaves deleted messages out; a message deleted
				// since an earlier run is there all the same.
				switch m, err = im.r.MessageByID(ctx, room, p.msg.ID); {
				case err == nil:
					ok = true
				case !errors.Is(err, persistence.ErrNotFound):
					return fmt.Errorf("legacy: %s: look up message %d: %w", t.Name, p.msg.ID, err)
				}
			}
			if ok {
				im.present(t, p, m)
				continue
			}
			ops = append(ops, persistence.MessageOp{Kind: persistence.OpSend, Message: p.msg})
			sent = append(sent, p)
		}
		if err := im.send(ctx, t, lo, hi, &room, ops, sent); err != nil {
			return err
		}
		im.prog.add(len(batch))
	}
	return nil
}

// send writes one batch in one transaction (nothing, in a dry run),
// creating the room first when there is none.
func (im *importer) send(ctx context.Context, t *Table, lo, hi int64, room *int64, ops []persistence.MessageOp, sent []*pending) error {
	if im.w == nil || len(ops) == 0 {
		for _, p := range sent {
			im.imported(t, p)
		}
		return nil
	}
	if *room == 0 {
		id, err := im.w.EnsureDMRoom(writeCtx(ctx), lo, hi, im.opts.NewID())
		if err != nil {
			return fmt.Errorf("legacy: %s: create room: %w", t.Name, err)
		}
		*room = id
	}
	for i := range ops {
		ops[i].Message.RoomID = *room
	}
	results, err := im.w.WriteMessages(writeCtx(ctx), ops)
	if errors.Is(err, persistence.ErrOutcomeUnknown) {
		return fmt.Errorf("legacy: %s: the store may or may not have committed a batch (run again: it finds what is there): %w", t.Name, err)
	}
	if err != nil {
		return fmt.Errorf("legacy: %s: write messages: %w", t.Name, err)
	}
	for i, r := range results {
		p := sent[i]
		switch {
		case r.Err == nil:
			im.imported(t, p)
		case errors.Is(r.Err, persistence.ErrRefused):
			t.Skipped++
			im.report(t, Item{Kind: KindRefused, Key: "id=" + p.row.ID, Done: "not imported", Why: r.Err.Error(), Row: p.row.fields()})
		default:
			return fmt.Errorf("legacy: %s: write message %d: %w", t.Name, p.msg.ID, r.Err)
		}
	}
	return nil
}

func (im *importer) imported(t *Table, p *pending) {
	t.Imported++
	im.notes(t, p, "imported")
}

// present counts p, found in the store as m: the same message, or one a
// member edited or deleted since. A different message with p's id there
// is a conflict.
func (im *importer) present(t *Table, p *pending, m persistence.Message) {
	same := m.AuthorID == p.msg.AuthorID && m.CreatedAt.Equal(p.msg.CreatedAt)
	if !same || (m.Content != p.msg.Content && m.EditedAt == nil) {
		t.Skipped++
		im.report(t, Item{Kind: KindConflict, Key: "id=" + p.row.ID, Done: "not imported",
			Why: fmt.Sprintf("the DM holds another message with this id (author %d, created %s)", m.AuthorID, m.CreatedAt.In(time.UTC).Format(time.RFC3339Nano)),
			Row: p.row.fields()})
		return
	}
	t.Present++
	done := "already present"
	switch {
	case m.DeletedAt != nil:
		done = "already present, deleted since"
	case m.EditedAt != nil:
		done = "already present, edited since"
	}
	im.notes(t, p, done)
}

func (im *importer) notes(t *Table, p *pending, done string) {
	for _, n := range p.notes {
		n.Key, n.Done, n.Row = "id="+p.row.ID, done, p.row.fields()
		im.report(t, n)
	}
}

// history reads every message of room (deleted ones aside) by id.
func (im *importer) history(ctx context.Context, room int64) (map[int64]persistence.Message, error) {
	const page = 500
	out := map[int64]persistence.Message{}
	cur := persistence.Cursor{Time: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)} // past any message
	for {
		ms, err := im.r.History(ctx, room, cur, page)
		if err != nil {
			return nil, fmt.Errorf("read history: %w", err)
		}
		for _, m := range ms {
			out[m.ID] = m
		}
		if len(ms) < page {
			return out, nil
		}
		last := ms[len(ms)-1]
		cur = persistence.Cursor{Time: last.CreatedAt, ID: last.ID}
	}
}

// checkDMList compares dm_list with the DM tables: each should name the
// other. The DM tables are imported either way.
func (im *importer) checkDMList(ctx context.Context) error {
	names, err := tableNames(ctx, im.src.main)
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	if slices.Contains(names, "dm_list") {
		rows, err := anyRows(ctx, im.src.main, "dm_list")
		if err != nil {
			return err
		}
		t := im.res.table("dm_list")
		t.Read = len(rows)
		for _, row := range rows {
			id := row[0].Value
			listed[dmPrefix+id] = true
			if im.chatIDs[dmPrefix+id] {
				t.Checked++
				continue
			}
			t.Skipped++
			im.report(t, Item{Kind: KindDMList, Key: "id=" + id, Done: "nothing to import",
				Why: "WIND_chat.db has no table " + dmPrefix + id, Row: row})
		}
	}
	for _, t := range im.res.Tables {
		if im.chatIDs[t.Name] && !listed[t.Name] {
			im.report(t, Item{Kind: KindDMList, Key: "(table)", Done: "imported all the same", Why: "dm_list does not name this table"})
		}
	}
	return nil
}

// reportUnused reports, row by row, the tables of WIND_main.db that
// REWIND has no place for: room, room_list and ban (guilds were never
// built), snowflake_counter (REWIND makes its own ids), and any other.
func (im *importer) reportUnused(ctx context.Context) error {
	names, err := tableNames(ctx, im.src.main)
	if err != nil {
		return err
	}
	for _, name := range names {
		if slices.Contains(mainTables, name) {
			continue
		}
		why := "the original never used it"
		if name == "snowflake_counter" {
			why = "REWIND makes its own ids"
		}
		if err := im.unusedTable(ctx, im.src.main, name, why); err != nil {
			return err
		}
	}
	return nil
}

// unusedTable reports every row of table in db as not imported, for why.
func (im *importer) unusedTable(ctx context.Context, db *sql.DB, table, why string) error {
	rows, err := anyRows(ctx, db, table)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return nil
	}
	t := im.res.table(table)
	t.Read, t.Skipped = len(rows), len(rows)
	for _, row := range rows {
		key := "row"
		if len(row) > 0 && !row[0].Null {
			key = row[0].Name + "=" + row[0].Value
		}
		im.report(t, Item{Kind: KindUnused, Key: key, Done: "not imported", Why: why, Row: row})
	}
	return nil
}
