package legacy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rewind-chat/rewind/persistence"
)

// pairOf is the unordered pair of users a and b, lower id first.
func pairOf(a, b int64) [2]int64 { return [2]int64{min(a, b), max(a, b)} }

// listIDs reads a mutual_users or mutual_requests value: a JSON list whose
// entries are user objects with an "id", or ids (strings or numbers).
// NULL and "" are the empty list. It returns each entry's id as text.
func listIDs(v string) ([]string, error) {
	if emptyList(v) {
		return nil, nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal([]byte(v), &entries); err != nil {
		return nil, errors.New("is not a JSON list")
	}
	ids := make([]string, len(entries))
	for i, e := range entries {
		var obj struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(e, &obj) == nil && obj.ID != nil {
			e = obj.ID
		}
		var s string
		if json.Unmarshal(e, &s) != nil {
			s = string(e) // a number, or whatever it is: parseID judges
		}
		ids[i] = s
	}
	return ids, nil
}

// entries reads list (a column of u's row, named column) into the ids of
// users it names. Entries that name no user are reported to t, as is a
// value that is not a list; each counts as read and not imported.
// Repeated entries count once.
func (im *importer) entries(t *Table, u *user, column, list string) []int64 {
	raw, err := listIDs(list)
	if err != nil {
		t.Read++
		t.Skipped++
		im.report(t, Item{Kind: KindBadList, Key: u.key(), Done: "not imported",
			Why: column + " " + err.Error(), Row: u.row.fields()})
		return nil
	}
	var ids []int64
	seen := map[int64]bool{}
	for _, e := range raw {
		bad := func(kind Kind, why string) {
			t.Read++
			t.Skipped++
			im.report(t, Item{Kind: kind, Key: u.key() + " entry=" + strconv.Quote(e), Done: "not imported",
				Why: why, Row: u.row.fields()})
		}
		id, err := parseID(e)
		switch {
		case err != nil:
			bad(KindBadID, "the entry's id "+err.Error())
		case id == u.id:
			bad(KindUnknownUser, "the entry names the user itself")
		case im.users[id] == nil:
			bad(KindUnknownUser, "no user has this id")
		case !seen[id]:
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// importFriendships makes friends of the users who list each other in
// mutual_users. The original's delete wrote each side's list into the
// other's row, so a one-sided entry is no friendship: it is reported.
// The unit counted is the pair.
func (im *importer) importFriendships(ctx context.Context) error {
	t := im.res.table("user.mutual_users")
	lists := map[[2]int64]int{} // bit 1: the lower id lists the higher; bit 2: the other way
	var pairs [][2]int64
	for _, u := range im.order {
		for _, id := range im.entries(t, u, "mutual_users", u.row.MutualUsers.String) {
			p := pairOf(u.id, id)
			if lists[p] == 0 {
				pairs = append(pairs, p)
			}
			if u.id == p[0] {
				lists[p] |= 1
			} else {
				lists[p] |= 2
			}
		}
	}
	t.Read += len(pairs)
	im.prog.begin(t.Name, t.Read)
	defer im.prog.end()
	im.prog.add(t.Read - len(pairs)) // the entries reported while reading
	for _, p := range pairs {
		if err := ctx.Err(); err != nil {
			return err
		}
		lo, hi := im.users[p[0]], im.users[p[1]]
		if lists[p] != 3 {
			from, to := lo, hi
			if lists[p] == 2 {
				from, to = hi, lo
			}
			t.Skipped++
			im.report(t, Item{Kind: KindOneSided, Key: fmt.Sprintf("id=%s lists id=%s", from.row.ID, to.row.ID),
				Done: "not imported", Why: fmt.Sprintf("user %d does not list user %d", to.id, from.id), Row: from.row.fields()})
			im.prog.add(1)
			continue
		}
		im.friends[p] = true
		if _, err := im.befriendPair(ctx, t, lo, hi, func(done, why string) Item {
			return Item{Kind: KindDepends, Key: fmt.Sprintf("id=%s and id=%s", lo.row.ID, hi.row.ID), Done: done, Why: why, Row: lo.row.fields()}
		}); err != nil {
			return err
		}
		im.prog.add(1)
	}
	return nil
}

// outcome is what became of one unit of a table.
type outcome uint8

const (
	outImported outcome = iota + 1
	outPresent
	outSkipped
)

// befriendPair makes lo and hi friends unless they are (present) or one
// of them is not imported (skipped, reported with the item notDone makes;
// a caller that checked both passes nil).
func (im *importer) befriendPair(ctx context.Context, t *Table, lo, hi *user, notDone func(done, why string) Item) (outcome, error) {
	for _, u := range []*user{lo, hi} {
		if !u.ok {
			t.Skipped++
			im.report(t, notDone("not imported", fmt.Sprintf("user %d is not imported: %s", u.id, u.why)))
			return outSkipped, nil
		}
	}
	friends, err := im.r.AreFriends(ctx, lo.id, hi.id)
	if err != nil {
		return 0, fmt.Errorf("legacy: look up friends %d, %d: %w", lo.id, hi.id, err)
	}
	if friends {
		t.Present++
		return outPresent, nil
	}
	if err := im.befriend(ctx, lo, hi); err != nil {
		return 0, err
	}
	t.Imported++
	return outImported, nil
}

// befriend makes a and b friends in two transactions: a's request, then
// b's acceptance. A run stopped between them leaves the request, which
// the next run finds (RequestFriend answers "repeated") and accepts.
func (im *importer) befriend(ctx context.Context, a, b *user) error {
	if im.w == nil {
		return nil
	}
	at := later(a, b)
	res, err := im.w.RequestFriend(writeCtx(ctx), a.id, b.id, at)
	if errors.Is(err, persistence.ErrAlreadyFriends) {
		return nil
	}
	if err == nil && res != persistence.FriendAccepted {
		err = im.w.AcceptFriend(writeCtx(ctx), b.id, a.id, at)
	}
	if err != nil {
		return fmt.Errorf("legacy: make friends %d, %d: %w", a.id, b.id, err)
	}
	return nil
}

// later is the time of a friendship or request of a and b: the original
// kept none, and none can be older than the younger user.
func later(a, b *user) time.Time {
	if b.created.After(a.created) {
		return b.created
	}
	return a.created
}

// importRequests carries over the pending friend requests: mutual_requests
// of a user lists the ids of those who asked that user. A request between
// friends is reported and dropped; requests both ways are reported and
// made a friendship, as REWIND does when a request crosses another. The
// unit counted is the request.
func (im *importer) importRequests(ctx context.Context) error {
	t := im.res.table("user.mutual_requests")
	type request struct{ from, to *user }
	var reqs []request
	asked := map[[2]int64]bool{} // from, to
	for _, u := range im.order {
		for _, id := range im.entries(t, u, "mutual_requests", u.row.MutualRequests.String) {
			reqs = append(reqs, request{from: im.users[id], to: u})
			asked[[2]int64{id, u.id}] = true
		}
	}
	t.Read += len(reqs)
	im.prog.begin(t.Name, t.Read)
	defer im.prog.end()
	im.prog.add(t.Read - len(reqs)) // the entries reported while reading
	for _, q := range reqs {
		if err := ctx.Err(); err != nil {
			return err
		}
		item := func(kind Kind, done, why string) Item {
			return Item{Kind: kind, Key: fmt.Sprintf("id=%s asked by id=%s", q.to.row.ID, q.from.row.ID), Done: done, Why: why, Row: q.to.row.fields()}
		}
		var err error
		switch {
		case !q.from.ok || !q.to.ok:
			u := q.from
			if u.ok {
				u = q.to
			}
			t.Skipped++
			im.report(t, item(KindDepends, "not imported", fmt.Sprintf("user %d is not imported: %s", u.id, u.why)))
		case im.friends[pairOf(q.from.id, q.to.id)]:
			t.Skipped++
			im.report(t, item(KindFriendRequest, "not imported", "they are friends (both list each other in mutual_users)"))
		case asked[[2]int64{q.to.id, q.from.id}]:
			err = im.crossed(ctx, t, q.from, q.to, item)
		default:
			err = im.request(ctx, t, q.from, q.to, item)
		}
		if err != nil {
			return err
		}
		im.prog.add(1)
	}
	return nil
}

// crossed handles one of two requests between from and to, each way.
func (im *importer) crossed(ctx context.Context, t *Table, from, to *user, item func(kind Kind, done, why string) Item) error {
	const why = "both asked each other"
	lo, hi := from, to
	if lo.id > hi.id {
		lo, hi = hi, lo
	}
	p := pairOf(lo.id, hi.id)
	out, seen := im.crossedPairs[p]
	if seen { // the request the other way made the friendship
		if out == outImported {
			t.Imported++
		} else {
			t.Present++
		}
	} else {
		var err error
		if out, err = im.befriendPair(ctx, t, lo, hi, nil); err != nil {
			return err
		}
		im.crossedPairs[p] = out
	}
	done := "imported as a friendship"
	if out == outPresent {
		done = "already present as a friendship"
	}
	im.report(t, item(KindFriendRequest, done, why))
	return nil
}

// request stores from's pending request to to, unless it is there.
func (im *importer) request(ctx context.Context, t *Table, from, to *user, item func(kind Kind, done, why string) Item) error {
	incoming, err := im.incoming(ctx, to.id)
	if err != nil {
		return err
	}
	if incoming[from.id] {
		t.Present++
		return nil
	}
	friends, err := im.r.AreFriends(ctx, from.id, to.id)
	if err != nil {
		return fmt.Errorf("legacy: look up friends %d, %d: %w", from.id, to.id, err)
	}
	if friends {
		t.Skipped++
		im.report(t, item(KindFriendRequest, "not imported", "they are friends in REWIND already"))
		return nil
	}
	if im.w != nil {
		res, err := im.w.RequestFriend(writeCtx(ctx), from.id, to.id, later(from, to))
		if err != nil {
			return fmt.Errorf("legacy: friend request %d to %d: %w", from.id, to.id, err)
		}
		if res == persistence.FriendAccepted {
			t.Imported++
			im.report(t, item(KindFriendRequest, "imported as a friendship",
				fmt.Sprintf("user %d had asked user %d in REWIND, and a crossing request makes friends", to.id, from.id)))
			return nil
		}
	}
	t.Imported++
	return nil
}

// incoming returns the ids of the users who asked to in the store, read
// once per user: the requests of this run go to to's list only after it.
func (im *importer) incoming(ctx context.Context, to int64) (map[int64]bool, error) {
	if ids, ok := im.fresh[to]; ok {
		return ids, nil
	}
	in, _, _, err := im.r.FriendLists(ctx, to)
	if err != nil {
		return nil, fmt.Errorf("legacy: look up requests to %d: %w", to, err)
	}
	ids := map[int64]bool{}
	for _, u := range in {
		ids[u.ID] = true
	}
	im.fresh[to] = ids
	return ids, nil
}
