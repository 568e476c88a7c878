package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/stretchr/testify/require"
)

// The tests of chat sequence numbers, catch-up, the chats list and read
// state (protocol.md §4.1, §4.2), added to Run's list.
var seqTests = []struct {
	name string
	test func(t *testing.T, open func(t *testing.T) persistence.Store)
}{
	{"SeqMixedBatch", testSeqMixedBatch},
	{"SeqConcurrentSends", testSeqConcurrentSends},
	{"SeqConcurrentMixed", testSeqConcurrentMixed},
	{"SeqOpenDMs", testSeqOpenDMs},
	{"Changes", testChanges},
	{"ChangesPaging", testChangesPaging},
	{"Chats", testChats},
	{"ChatsUnreadCap", testChatsUnreadCap},
	{"MarkRead", testMarkRead},
	{"MarkReadConcurrent", testMarkReadConcurrent},
}

// current is the number of room's latest change, as Changes tells it.
func current(t *testing.T, s persistence.Store, room int64) int64 {
	t.Helper()
	_, cur, err := s.Changes(t.Context(), room, 0, 1)
	require.NoError(t, err)
	return cur
}

// requireNumbers checks the numbers that the messages ids of room hold now
// (Seq, and EditSeq when set): each is used once, none is above the room's
// counter, and, when exact, they are 1..counter.
func requireNumbers(t *testing.T, s persistence.Store, room int64, ids []int64, exact bool) {
	t.Helper()
	used := map[int64]int64{} // number → message
	for _, id := range ids {
		m, err := s.MessageByID(t.Context(), room, id)
		require.NoError(t, err)
		numbers := []int64{m.Seq}
		if m.EditSeq != 0 {
			numbers = append(numbers, m.EditSeq)
		}
		for _, n := range numbers {
			prev, dup := used[n]
			require.False(t, dup, "number %d of messages %d and %d", n, prev, id)
			used[n] = id
		}
	}
	cur := current(t, s, room)
	for n := range used {
		require.True(t, n >= 1 && n <= cur, "number %d beyond the counter %d", n, cur)
	}
	if exact {
		require.Len(t, used, int(cur), "numbers 1..%d without a gap", cur)
	}
}

// testSeqMixedBatch numbers a batch of two rooms mixing sends, edits,
// deletes, refused ops and nonce duplicates: the ops that change a message
// take their room's next numbers in op order, the others none.
func testSeqMixedBatch(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, r13 := chatRooms(t, s)
	stored10 := send(r12, 1, 10, "stored", "n10", now)
	require.Equal(t, []persistence.MessageResult{{Message: sent(stored10, 1)}}, write(t, s, stored10))

	at := now.Add(time.Minute)
	ops := []persistence.MessageOp{
		send(r12, 2, 20, "a", "n20", at),             // 0: r12 #2
		send(r13, 3, 21, "b", "", at),                // 1: r13 #1
		send(r12, 1, 22, "bad \xff", "", at),         // 2: refused
		edit(r12, 20, "a edited", at),                // 3: r12 #3
		send(r12, 1, 23, "retry", "n10", at),         // 4: duplicate of stored 10
		send(r12, 2, 24, "again", "n20", at),         // 5: duplicate of op 0
		send(r12, 9, 25, "nobody", "", at),           // 6: refused, no such author
		send(r12, 1, 26, "c", "", at),                // 7: r12 #4
		edit(r12, 10, "", at),                        // 8: r12 #5, deletes 10
		send(r13, 1, 27, "nul \x00", "", at),         // 9: refused
		editBy(r13, 1, 21, "not mine", at),           // 10: not the author
		edit(r12, 99, "nothing", at),                 // 11: not found
		edit(r12, 10, "deleted already", at),         // 12: not found
		send(r13, 1, 28, "d", "n28", at),             // 13: r13 #2
		editBy(r13, 3, 21, "b edited", at),           // 14: r13 #3
		send(r12, 2, 29, "e", "", at.Add(time.Hour)), // 15: r12 #6
	}
	results := write(t, s, ops...)
	want20 := edited(sent(ops[0], 2), ops[3], 3)
	want10 := edited(sent(stored10, 1), ops[8], 5)
	want21 := edited(sent(ops[1], 1), ops[14], 3)
	for i, want := range map[int]persistence.MessageResult{
		0: {Message: sent(ops[0], 2)}, 1: {Message: sent(ops[1], 1)}, 3: {Message: want20},
		4: {Message: want10, Duplicate: true}, 5: {Message: want20, Duplicate: true},
		7: {Message: sent(ops[7], 4)}, 8: {Message: want10},
		13: {Message: sent(ops[13], 2)}, 14: {Message: want21}, 15: {Message: sent(ops[15], 6)},
	} {
		require.Equal(t, want, results[i], "op %d", i)
	}
	for _, i := range []int{2, 6, 9} {
		require.ErrorIs(t, results[i].Err, persistence.ErrRefused, "op %d", i)
	}
	require.ErrorIs(t, results[10].Err, persistence.ErrNotAuthor)
	for _, i := range []int{11, 12} {
		require.ErrorIs(t, results[i].Err, persistence.ErrNotFound, "op %d", i)
	}

	require.EqualValues(t, 6, current(t, s, r12))
	require.EqualValues(t, 3, current(t, s, r13))
	requireNumbers(t, s, r12, []int64{10, 20, 26, 29}, true)
	requireNumbers(t, s, r13, []int64{21, 28}, true)
	requireMessage(t, s, want10)
	requireMessage(t, s, want21)

	// The next batch goes on from the counters.
	next := send(r12, 1, 30, "next", "", at)
	require.Equal(t, []persistence.MessageResult{{Message: sent(next, 7)}}, write(t, s, next))
}

// writers has 6 goroutines write batches at once (the writer's concurrent
// transactions, or two activations of a room), each batch built by batch(g,
// b) for goroutine g's b-th batch, and returns every result with its op.
func writers(t *testing.T, s persistence.Store, batches int, batch func(g, b int) []persistence.MessageOp) (
	[]persistence.MessageOp, []persistence.MessageResult) {
	t.Helper()
	const goroutines = 6
	ops := make([][]persistence.MessageOp, goroutines)
	results := make([][]persistence.MessageResult, goroutines)
	errs := make([]error, goroutines)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			<-start
			for b := range batches {
				bops := batch(g, b)
				rs, err := s.WriteMessages(t.Context(), bops)
				if err != nil {
					errs[g] = err
					return
				}
				ops[g], results[g] = append(ops[g], bops...), append(results[g], rs...)
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	return slices.Concat(ops...), slices.Concat(results...)
}

// requireTaken checks that the numbers the results report as taken in room
// are exactly 1..the room's counter, each once: no hole, no number twice.
func requireTaken(t *testing.T, s persistence.Store, room int64, ops []persistence.MessageOp, results []persistence.MessageResult) {
	t.Helper()
	var taken []int64
	for i, op := range ops {
		r := results[i]
		switch {
		case op.Message.RoomID != room || r.Err != nil || r.Duplicate:
		case op.Kind == persistence.OpSend:
			taken = append(taken, r.Message.Seq)
		default:
			taken = append(taken, r.Message.EditSeq)
		}
	}
	slices.Sort(taken)
	cur := current(t, s, room)
	want := make([]int64, cur)
	for i := range want {
		want[i] = int64(i + 1)
	}
	require.Equal(t, want, taken, "room %d", room)
}

// testSeqConcurrentSends has 6 goroutines send into two rooms at once,
// with nonces that several of them use (each stored once) and sends that
// the database refuses: the numbers stored are exactly 1..N per room.
func testSeqConcurrentSends(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, r13 := chatRooms(t, s)
	ops, results := writers(t, s, 15, func(g, b int) []persistence.MessageOp {
		var ops []persistence.MessageOp
		for k := range 6 {
			id := int64(1000*(g+1) + 10*b + k)
			room, author := r12, int64(1+k%2)
			if (g+k)%3 == 0 {
				room, author = r13, 3
			}
			switch nonce := fmt.Sprint("b", b, "k", k); {
			case k == 5 && b%4 == 0:
				ops = append(ops, send(room, author, id, "refused \x00", "", now))
			case k < 2: // the same nonce in every goroutine: one stores it
				ops = append(ops, send(room, author, id, "shared", nonce, now))
			default:
				ops = append(ops, send(room, author, id, "own", fmt.Sprint(nonce, "g", g), now))
			}
		}
		slices.Reverse(ops[:3]) // not always in room order
		return ops
	})
	ids := map[int64][]int64{}
	for i, op := range ops {
		r := results[i]
		if r.Err == nil && !r.Duplicate {
			ids[op.Message.RoomID] = append(ids[op.Message.RoomID], op.Message.ID)
		}
	}
	for _, room := range []int64{r12, r13} {
		requireTaken(t, s, room, ops, results)
		requireNumbers(t, s, room, ids[room], true)
	}
}

// testSeqConcurrentMixed has 6 goroutines send, edit and delete in one room
// at once, editing some messages several times: every number taken is
// taken once, the numbers taken are 1..counter, and what is stored uses
// each at most once.
func testSeqConcurrentMixed(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, _ := chatRooms(t, s)
	var seed []persistence.MessageOp
	for i := range int64(12) {
		seed = append(seed, send(r12, 1+i%2, 100+i, "seed", "", now))
	}
	seedResults := write(t, s, seed...)
	ops, results := writers(t, s, 12, func(g, b int) []persistence.MessageOp {
		at := now.Add(time.Duration(b) * time.Second)
		own := int64(1000*(g+1) + 10*b)
		target := int64(100 + (g+b)%12) // other goroutines edit it too
		author := int64(1 + target%2)
		ops := []persistence.MessageOp{
			send(r12, 1, own, "own", fmt.Sprint("g", g, "b", b), at),
			editBy(r12, author, target, fmt.Sprint("edit by ", g), at),
			editBy(r12, 3-author, target, "not the author", at),
			send(r12, 2, own+1, "bad \xff", "", at),
			edit(r12, own, "own edited", at),
			send(r12, 1, own+2, "retry", fmt.Sprint("g", g, "b", b), at), // duplicate
		}
		if b%3 == 2 {
			ops = append(ops, edit(r12, target, "", at)) // a delete; later edits of it fail
		}
		return ops
	})
	requireTaken(t, s, r12, slices.Concat(seed, ops), slices.Concat(seedResults, results))
	var ids []int64
	for _, op := range slices.Concat(seed, ops) {
		if _, err := s.MessageByID(t.Context(), r12, op.Message.ID); err == nil && !slices.Contains(ids, op.Message.ID) {
			ids = append(ids, op.Message.ID)
		}
	}
	requireNumbers(t, s, r12, ids, false)
}

// testSeqOpenDMs checks DMState.Seq, the room's counter.
func testSeqOpenDMs(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3)
	befriend(t, s, 1, 2)
	befriend(t, s, 1, 3)
	got := openDMs(t, s, persistence.DMOpen{Low: 1, High: 2, NewID: 100})
	require.Equal(t, []persistence.DMState{{Members: true, Friends: true, RoomID: 100}}, got, "a new room has no change")
	write(t, s, send(100, 1, 10, "a", "", now), send(100, 2, 11, "b", "", now), edit(100, 10, "", now))
	got = openDMs(t, s, persistence.DMOpen{Low: 1, High: 2, NewID: 101}, persistence.DMOpen{Low: 1, High: 3, NewID: 102},
		persistence.DMOpen{Low: 2, High: 3, NewID: 103})
	require.Equal(t, []persistence.DMState{
		{Members: true, Friends: true, RoomID: 100, Seq: 3},
		{Members: true, Friends: true, RoomID: 102},
		{Members: true},
	}, got)
}

// changesRoom writes room 100 of users 1 and 2 and returns the messages of
// its changes, by id, as they are at the end. The changes are:
//
//	1 send 1   2 send 2   3 send 3   4 send 4   5 edit 1   6 delete 2
//	7 send 5   8 send 6   9 delete 6 10 edit 3  11 edit 3  12 send 7
//	13 delete 4
func changesRoom(t *testing.T, s persistence.Store) map[int64]persistence.Message {
	t.Helper()
	r12, r13 := chatRooms(t, s)
	write(t, s, send(r13, 1, 90, "another room", "", now)) // numbered apart
	at := func(k int) time.Time { return now.Add(time.Duration(k) * time.Second) }
	batches := [][]persistence.MessageOp{
		{send(r12, 1, 1, "one", "n1", at(1)), send(r12, 2, 2, "two", "", at(2))},
		{send(r12, 1, 3, "three", "", at(3)), send(r12, 2, 4, "four", "", at(4)), edit(r12, 1, "one edited", at(5))},
		{edit(r12, 2, "", at(6)), send(r12, 1, 5, "five", "", at(7))},
		{send(r12, 2, 6, "six", "", at(8)), edit(r12, 6, "", at(9)), edit(r12, 3, "three edited", at(10))},
		{edit(r12, 3, "three edited again", at(11)), send(r12, 1, 7, "seven", "", at(12)), edit(r12, 4, "", at(13))},
	}
	for _, b := range batches {
		write(t, s, b...)
	}
	ms := map[int64]persistence.Message{}
	for id := range int64(8) {
		if m, err := s.MessageByID(t.Context(), r12, id); err == nil {
			ms[id] = m
		}
	}
	return ms
}

func testChanges(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	ms := changesRoom(t, s)
	require.Equal(t, map[int64][2]int64{1: {1, 5}, 2: {2, 6}, 3: {3, 11}, 4: {4, 13}, 5: {7, 0}, 6: {8, 9}, 7: {12, 0}},
		func() map[int64][2]int64 {
			got := map[int64][2]int64{}
			for id, m := range ms {
				got[id] = [2]int64{m.Seq, m.EditSeq}
			}
			return got
		}(), "seq and edit_seq by message")
	pick := func(ids ...int64) []persistence.Message {
		var want []persistence.Message
		for _, id := range ids {
			want = append(want, ms[id])
		}
		return want
	}
	tests := []struct {
		name  string
		room  int64
		since int64
		limit int
		want  []persistence.Message
		cur   int64
	}{
		// Created after 0: sends, with their current text; 2, 4 and 6
		// are deleted by now and left out.
		{"from the start", 100, 0, 100, pick(1, 5, 3, 7), 13},
		// 1, 2 (deleted), 3 and 4 (deleted) are edits; 5 and 7 sends; 6
		// was created after 4 and is deleted by now.
		{"edits and deletes after since", 100, 4, 100, pick(1, 2, 5, 3, 7, 4), 13},
		{"limit", 100, 4, 2, pick(1, 2), 13},
		{"created and deleted after since", 100, 7, 100, pick(3, 7, 4), 13},
		{"a message changed twice comes once", 100, 10, 100, pick(3, 7, 4), 13},
		{"the last change", 100, 12, 100, pick(4), 13},
		{"caught up", 100, 13, 100, nil, 13},
		{"since beyond the room", 100, 14, 100, nil, 13},
		{"another room", 200, 0, 100, []persistence.Message{{ID: 90, RoomID: 200, AuthorID: 1, Content: "another room",
			CreatedAt: stored(now), Seq: 1}}, 1},
		{"unknown room", 999, 0, 100, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cur, err := s.Changes(t.Context(), tt.room, tt.since, tt.limit)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.cur, cur)
		})
	}
	t.Run("limit not positive", func(t *testing.T) {
		_, _, err := s.Changes(t.Context(), 100, 0, 0)
		require.Error(t, err)
	})
}

// testChangesPaging pages through the changes from every position, as a
// client would (each page from the last change of the one before): the
// pages together are the changes after the position, in order, each once,
// but for deletes of messages that the client never got (created after
// the position, deleted after the page that moved it past their creation):
// a page from a later position sends those as edits, which is redundant,
// not wrong.
func testChangesPaging(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	ms := changesRoom(t, s)
	for since := range int64(14) {
		var all []persistence.Message
		for _, m := range ms {
			if m.ChangeSeq() > since && (m.Seq <= since || m.DeletedAt == nil) {
				all = append(all, m)
			}
		}
		slices.SortFunc(all, func(a, b persistence.Message) int { return int(a.ChangeSeq() - b.ChangeSeq()) })
		for limit := 1; limit <= 3; limit++ {
			var got []persistence.Message
			pos, pages := since, 1
			for ; pages <= 20; pages++ {
				page, cur, err := s.Changes(t.Context(), 100, pos, limit)
				require.NoError(t, err)
				require.EqualValues(t, 13, cur)
				require.LessOrEqual(t, len(page), limit)
				got = append(got, page...)
				if len(page) < limit {
					break
				}
				pos = page[len(page)-1].ChangeSeq()
			}
			var kept []persistence.Message
			for i, m := range got {
				if i > 0 {
					require.Greater(t, m.ChangeSeq(), got[i-1].ChangeSeq(), "since %d, limit %d: in order, once", since, limit)
				}
				if slices.ContainsFunc(all, func(a persistence.Message) bool { return a.ID == m.ID }) {
					kept = append(kept, m)
				} else {
					require.NotNil(t, m.DeletedAt, "since %d, limit %d: message %d", since, limit, m.ID)
				}
			}
			require.Equal(t, all, kept, "since %d, limit %d", since, limit)
			if len(all) > limit {
				require.Greater(t, pages, 1, "since %d, limit %d: more than one page", since, limit)
			}
		}
	}
}

// chatsFixture writes the DMs of users 1–5:
//
//	room 100 (1–2): 2 writes 10, 11, 12 and deletes 12; 1 writes 13; at t+4
//	room 200 (1–3): 3 writes 20 at t+1, then edits it at t+5
//	room 300 (1–4): 4 writes 30 and deletes it, at t+4 (ties with 100)
//	room 400 (1–5): no change
//	room 500 (2–3): 2 writes 50 at t+9
func chatsFixture(t *testing.T, s persistence.Store) (at func(k int) time.Time) {
	t.Helper()
	createUsers(t, s, 1, 2, 3, 4, 5)
	for i, pair := range [][2]int64{{1, 2}, {1, 3}, {1, 4}, {1, 5}, {2, 3}} {
		ensureDMRoom(t, s, pair[0], pair[1], int64(100*(i+1)))
	}
	at = func(k int) time.Time { return stored(now.Add(time.Duration(k) * time.Second)) }
	write(t, s,
		send(100, 2, 10, "ten", "", at(0)), send(100, 2, 11, "eleven", "", at(1)), send(200, 3, 20, "twenty", "", at(1)),
		send(100, 2, 12, "twelve", "", at(2)), send(100, 1, 13, "thirteen", "", at(3)))
	write(t, s, edit(100, 12, "", at(4)), send(300, 4, 30, "thirty", "", at(4)), edit(300, 30, "", at(4)))
	write(t, s, editBy(200, 3, 20, "twenty edited", at(5)), send(500, 2, 50, "fifty", "", at(9)))
	return at
}

func chats(t *testing.T, s persistence.Store, user, before int64, limit int) []persistence.ChatSummary {
	t.Helper()
	got, err := s.Chats(t.Context(), user, before, limit)
	require.NoError(t, err)
	return got
}

func testChats(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	at := chatsFixture(t, s)
	message := func(room, id int64) *persistence.Message {
		m, err := s.MessageByID(t.Context(), room, id)
		require.NoError(t, err)
		return &m
	}
	c200 := persistence.ChatSummary{RoomID: 200, Kind: persistence.KindDM, Low: 1, High: 3, Seq: 2, Unread: 1, LastMessage: message(200, 20), Activity: at(5)}
	c300 := persistence.ChatSummary{RoomID: 300, Kind: persistence.KindDM, Low: 1, High: 4, Seq: 2, Activity: at(4)} // all deleted: no last message
	c100 := persistence.ChatSummary{RoomID: 100, Kind: persistence.KindDM, Low: 1, High: 2, Seq: 5, Unread: 2, LastMessage: message(100, 13), Activity: at(4)}
	require.Equal(t, []persistence.ChatSummary{c200, c300, c100}, chats(t, s, 1, 0, 10),
		"newest activity first, ties by room id descending; a room without a change is not listed")

	tests := []struct {
		name   string
		user   int64
		before int64
		limit  int
		want   []persistence.ChatSummary
	}{
		{"limit", 1, 0, 2, []persistence.ChatSummary{c200, c300}},
		{"after a room", 1, 200, 10, []persistence.ChatSummary{c300, c100}},
		{"after a tie", 1, 300, 10, []persistence.ChatSummary{c100}},
		{"after the last", 1, 100, 10, nil},
		{"after a room without a change", 1, 400, 10, nil},
		{"the other member", 2, 0, 10, []persistence.ChatSummary{
			{RoomID: 500, Kind: persistence.KindDM, Low: 2, High: 3, Seq: 1, LastMessage: message(500, 50), Activity: at(9)},
			{RoomID: 100, Kind: persistence.KindDM, Low: 1, High: 2, Seq: 5, Unread: 1, LastMessage: message(100, 13), Activity: at(4)},
		}},
		{"high member only", 3, 0, 10, []persistence.ChatSummary{
			{RoomID: 500, Kind: persistence.KindDM, Low: 2, High: 3, Seq: 1, Unread: 1, LastMessage: message(500, 50), Activity: at(9)},
			{RoomID: 200, Kind: persistence.KindDM, Low: 1, High: 3, Seq: 2, LastMessage: message(200, 20), Activity: at(5)},
		}},
		{"no change anywhere", 5, 0, 10, nil},
		{"unknown user", 9, 0, 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, chats(t, s, tt.user, tt.before, tt.limit))
		})
	}
	t.Run("before not a room of the user", func(t *testing.T) {
		for _, before := range []int64{500, 999} {
			_, err := s.Chats(t.Context(), 1, before, 10)
			require.ErrorIs(t, err, persistence.ErrNotFound, "before %d", before)
		}
	})
	t.Run("limit not positive", func(t *testing.T) {
		_, err := s.Chats(t.Context(), 1, 0, 0)
		require.Error(t, err)
	})
	t.Run("paging", func(t *testing.T) {
		var got []persistence.ChatSummary
		var before int64
		for range 5 {
			page := chats(t, s, 1, before, 1)
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			before = page[len(page)-1].RoomID
		}
		require.Equal(t, []persistence.ChatSummary{c200, c300, c100}, got)
	})
	t.Run("read state", func(t *testing.T) {
		// User 1 reads room 100 to change 2 (10 and 11): 12 is deleted,
		// 13 is its own. Then a new change moves the room to the top.
		require.Equal(t, int64(2), markRead(t, s, 1, 100, 2, true))
		c := c100
		c.ReadSeq, c.Unread = 2, 0
		require.Equal(t, []persistence.ChatSummary{c200, c300, c}, chats(t, s, 1, 0, 10))
		require.Equal(t, int64(2), markRead(t, s, 1, 100, 1, false), "backwards: nothing changes")
		require.Equal(t, []persistence.ChatSummary{c200, c300, c}, chats(t, s, 1, 0, 10))

		results := write(t, s, send(100, 2, 14, "fourteen", "", at(10)))
		c.Seq, c.Unread, c.LastMessage, c.Activity = 6, 1, &results[0].Message, at(10)
		require.Equal(t, []persistence.ChatSummary{c, c200, c300}, chats(t, s, 1, 0, 10))
		other := chats(t, s, 2, 0, 10)
		require.Equal(t, []int64{100, 500}, []int64{other[0].RoomID, other[1].RoomID}, "for both members")
		require.Equal(t, 1, other[0].Unread, "read state is per user: 2 has not read 13")
	})
}

// markRead marks userID's position in room at seq, checks whether that
// moved it, and returns the position stored.
func markRead(t *testing.T, s persistence.Store, userID, room, seq int64, wantMoved bool) int64 {
	t.Helper()
	read, moved, err := s.MarkRead(t.Context(), userID, room, seq)
	require.NoError(t, err)
	require.Equal(t, wantMoved, moved, "MarkRead(%d, %d, %d) moved", userID, room, seq)
	return read
}

// testChatsUnreadCap writes more than persistence.UnreadCap unread
// messages into one room, in one batch: the count stops at the cap.
func testChatsUnreadCap(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, _ := chatRooms(t, s)
	// 1 (change 1) is user 1's; 2's sends 10.. are changes 2..1003, and
	// the delete of 10 is change 1004.
	ops := []persistence.MessageOp{send(r12, 1, 1, "mine", "", now)}
	for i := range int64(persistence.UnreadCap + 2) {
		ops = append(ops, send(r12, 2, 10+i, fmt.Sprint("unread ", i), "", now))
	}
	ops = append(ops, edit(r12, 10, "", now)) // deleted: not unread
	results := write(t, s, ops...)
	require.EqualValues(t, persistence.UnreadCap+4, results[len(results)-1].Message.EditSeq)
	unread := func(user int64) int {
		c := chats(t, s, user, 0, 10)
		require.Len(t, c, 1)
		return c[0].Unread
	}
	require.Equal(t, persistence.UnreadCap, unread(1), "1,001 unread counted to the cap")
	require.Equal(t, 1, unread(2))
	markRead(t, s, 1, r12, 2, true) // the deleted 10
	require.Equal(t, persistence.UnreadCap, unread(1), "1,001 unread still")
	markRead(t, s, 1, r12, 3, true)
	require.Equal(t, persistence.UnreadCap, unread(1), "1,000 unread: exactly the cap")
	markRead(t, s, 1, r12, 4, true)
	require.Equal(t, persistence.UnreadCap-1, unread(1))
	markRead(t, s, 1, r12, int64(persistence.UnreadCap+3), true)
	require.Equal(t, 0, unread(1))
	markRead(t, s, 1, r12, int64(persistence.UnreadCap+4), true)
	require.Equal(t, 0, unread(1))
}

func testMarkRead(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, r13 := chatRooms(t, s)
	createUsers(t, s, 4)
	r24 := ensureDMRoom(t, s, 2, 4, 300)
	write(t, s, send(r12, 1, 10, "a", "", now), send(r12, 2, 11, "b", "", now), send(r12, 2, 12, "c", "", now),
		send(r24, 2, 20, "d", "", now))

	steps := []struct { // in order: each step builds on the last
		name      string
		user      int64
		room      int64
		seq       int64
		wantRead  int64
		wantMoved bool
		wantErr   error
	}{
		{"nothing to read yet", 1, r13, 0, 0, false, nil},
		{"first", 1, r12, 2, 2, true, nil},
		{"equal", 1, r12, 2, 2, false, nil},
		{"lower", 1, r12, 1, 2, false, nil},
		{"zero", 1, r12, 0, 2, false, nil},
		{"negative", 1, r12, -5, 2, false, nil},
		{"ahead of the room", 1, r12, 4, 0, false, persistence.ErrSeqAhead},
		{"ahead of an empty room", 1, r13, 1, 0, false, persistence.ErrSeqAhead},
		{"the other member", 2, r12, 1, 1, true, nil},
		{"forward to the last change", 1, r12, 3, 3, true, nil},
		{"not a member", 3, r12, 1, 0, false, persistence.ErrNotFound},
		{"not a member of a room with more changes", 1, r24, 1, 0, false, persistence.ErrNotFound},
		{"unknown room", 1, 999, 1, 0, false, persistence.ErrNotFound},
		{"unknown user", 9, r12, 1, 0, false, persistence.ErrNotFound},
	}
	for _, st := range steps {
		read, moved, err := s.MarkRead(t.Context(), st.user, st.room, st.seq)
		if st.wantErr != nil {
			require.ErrorIs(t, err, st.wantErr, st.name)
			continue
		}
		require.NoError(t, err, st.name)
		require.Equal(t, st.wantRead, read, st.name)
		require.Equal(t, st.wantMoved, moved, st.name)
	}
	readSeq := func(user, room int64) int64 {
		t.Helper()
		for _, c := range chats(t, s, user, 0, 10) {
			if c.RoomID == room {
				return c.ReadSeq
			}
		}
		t.Fatalf("room %d not in %d's chats", room, user)
		return 0
	}
	require.EqualValues(t, 3, readSeq(1, r12), "ErrSeqAhead stored nothing")
	require.EqualValues(t, 1, readSeq(2, r12))
	require.EqualValues(t, 0, readSeq(2, r24))
}

// testMarkReadConcurrent marks positions 1..n from as many goroutines at
// once: the position ends at n, and exactly one call moved it to each
// position it reports.
func testMarkReadConcurrent(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, _ := chatRooms(t, s)
	var ops []persistence.MessageOp
	for i := range int64(12) {
		ops = append(ops, send(r12, 2, 10+i, "m", "", now))
	}
	write(t, s, ops...)
	type answer struct {
		read  int64
		moved bool
		err   error
	}
	answers := make([]answer, 12)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			var a answer
			a.read, a.moved, a.err = s.MarkRead(t.Context(), 1, r12, int64(i+1))
			answers[i] = a
		})
	}
	wg.Wait()
	for i, a := range answers {
		require.NoError(t, a.err)
		if a.moved {
			require.EqualValues(t, i+1, a.read)
		} else {
			require.GreaterOrEqual(t, a.read, int64(i+1), "not moved: the stored position is at least the asked one")
		}
	}
	read, moved, err := s.MarkRead(t.Context(), 1, r12, 12)
	require.NoError(t, err)
	require.False(t, moved)
	require.EqualValues(t, 12, read)
}
