package storetest

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rewind-chat/rewind/persistence"
	"github.com/stretchr/testify/require"
)

// The tests of persistence.ChatStore, added to Run's list.
var chatTests = []struct {
	name string
	test func(t *testing.T, open func(t *testing.T) persistence.Store)
}{
	{"DMRooms", testDMRooms},
	{"DMRoomConcurrent", testDMRoomConcurrent},
	{"OpenDMs", testOpenDMs},
	{"OpenDMsMany", testOpenDMsMany},
	{"OpenDMsRepeated", testOpenDMsRepeated},
	{"OpenDMsConcurrent", testOpenDMsConcurrent},
	{"Send", testSend},
	{"SendDuplicate", testSendDuplicate},
	{"SendConcurrentNonce", testSendConcurrentNonce},
	{"SendNoncePerRoom", testSendNoncePerRoom},
	{"Edit", testEdit},
	{"EditAuthorInBatch", testEditAuthorInBatch},
	{"WriteOrder", testWriteOrder},
	{"WriteAtomic", testWriteAtomic},
	{"WriteRefusedAlone", testWriteRefusedAlone},
	{"WriteRefusedMany", testWriteRefusedMany},
	{"History", testHistory},
	{"HistoryPaging", testHistoryPaging},
	{"RequestFriend", testRequestFriend},
	{"AcceptFriend", testAcceptFriend},
	{"RemoveFriendRequest", testRemoveFriendRequest},
	{"DeleteFriend", testDeleteFriend},
	{"FriendLists", testFriendLists},
	{"FriendsConcurrent", testFriendsConcurrent},
	{"SetProfile", testSetProfile},
}

// createUsers creates users with ids, named "user<id>".
func createUsers(t *testing.T, s persistence.Store, ids ...int64) {
	t.Helper()
	for _, id := range ids {
		createUser(t, s, user(id, fmt.Sprint("user", id), fmt.Sprint("user", id, "@example.com")))
	}
}

func ensureDMRoom(t *testing.T, s persistence.Store, a, b, newID int64) int64 {
	t.Helper()
	id, err := s.EnsureDMRoom(t.Context(), a, b, newID)
	require.NoError(t, err)
	return id
}

func send(roomID, authorID, id int64, content, nonce string, at time.Time) persistence.MessageOp {
	return persistence.MessageOp{Kind: persistence.OpSend, Message: persistence.Message{
		ID: id, RoomID: roomID, AuthorID: authorID, Content: content, Nonce: nonce, CreatedAt: at,
	}}
}

func edit(roomID, id int64, content string, at time.Time) persistence.MessageOp {
	return persistence.MessageOp{Kind: persistence.OpEdit, Message: persistence.Message{
		ID: id, RoomID: roomID, Content: content, EditedAt: &at,
	}}
}

// editBy is edit on behalf of authorID, whom the store checks is the author.
func editBy(roomID, authorID, id int64, content string, at time.Time) persistence.MessageOp {
	op := edit(roomID, id, content, at)
	op.Message.AuthorID = authorID
	return op
}

// befriend makes users a and b friends.
func befriend(t *testing.T, s persistence.Store, a, b int64) {
	t.Helper()
	_, err := s.RequestFriend(t.Context(), a, b, now)
	require.NoError(t, err)
	require.NoError(t, s.AcceptFriend(t.Context(), b, a, now))
}

func openDMs(t *testing.T, s persistence.Store, dms ...persistence.DMOpen) []persistence.DMState {
	t.Helper()
	states, err := s.OpenDMs(t.Context(), dms)
	require.NoError(t, err)
	require.Len(t, states, len(dms))
	return states
}

// requireDMRoom checks that the DM room of a and b is id, or that there is
// none when id is 0.
func requireDMRoom(t *testing.T, s persistence.Store, a, b, id int64) {
	t.Helper()
	got, err := s.FindDMRoom(t.Context(), a, b)
	if id == 0 {
		require.ErrorIs(t, err, persistence.ErrNotFound, "room of %d and %d", a, b)
		return
	}
	require.NoError(t, err)
	require.Equal(t, id, got, "room of %d and %d", a, b)
}

// sent is what a store keeps of the send op, numbered seq in its room.
func sent(op persistence.MessageOp, seq int64) persistence.Message {
	m := op.Message
	m.CreatedAt = stored(m.CreatedAt)
	m.Seq = seq
	return m
}

// edited is m after the edit op, numbered editSeq in its room.
func edited(m persistence.Message, op persistence.MessageOp, editSeq int64) persistence.Message {
	at := stored(*op.Message.EditedAt)
	m.Content, m.EditedAt, m.EditSeq = op.Message.Content, &at, editSeq
	if m.Content == "" {
		m.DeletedAt = &at
	}
	return m
}

func write(t *testing.T, s persistence.Store, ops ...persistence.MessageOp) []persistence.MessageResult {
	t.Helper()
	results, err := s.WriteMessages(t.Context(), ops)
	require.NoError(t, err)
	require.Len(t, results, len(ops))
	return results
}

// requireMessage checks that message want.ID of want.RoomID is stored as want.
func requireMessage(t *testing.T, s persistence.Store, want persistence.Message) {
	t.Helper()
	got, err := s.MessageByID(t.Context(), want.RoomID, want.ID)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func requireNoMessage(t *testing.T, s persistence.Store, roomID, id int64) {
	t.Helper()
	_, err := s.MessageByID(t.Context(), roomID, id)
	require.ErrorIs(t, err, persistence.ErrNotFound)
}

// chatRooms creates users 1, 2 and 3 and returns their DM rooms 1–2 (id 100)
// and 1–3 (id 200).
func chatRooms(t *testing.T, s persistence.Store) (r12, r13 int64) {
	t.Helper()
	createUsers(t, s, 1, 2, 3)
	return ensureDMRoom(t, s, 1, 2, 100), ensureDMRoom(t, s, 1, 3, 200)
}

func testDMRooms(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3)
	require.EqualValues(t, 100, ensureDMRoom(t, s, 1, 2, 100), "created with newID")

	tests := []struct {
		name    string
		do      func() (int64, error)
		want    int64
		wantErr error
	}{
		{"ensure again", func() (int64, error) { return s.EnsureDMRoom(t.Context(), 1, 2, 101) }, 100, nil},
		{"ensure other order", func() (int64, error) { return s.EnsureDMRoom(t.Context(), 2, 1, 102) }, 100, nil},
		{"find", func() (int64, error) { return s.FindDMRoom(t.Context(), 1, 2) }, 100, nil},
		{"find other order", func() (int64, error) { return s.FindDMRoom(t.Context(), 2, 1) }, 100, nil},
		{"find missing", func() (int64, error) { return s.FindDMRoom(t.Context(), 2, 3) }, 0, persistence.ErrNotFound},
		{"find with oneself", func() (int64, error) { return s.FindDMRoom(t.Context(), 1, 1) }, 0, persistence.ErrNotFound},
		{"ensure with unknown user", func() (int64, error) { return s.EnsureDMRoom(t.Context(), 9, 1, 103) }, 0, persistence.ErrNotFound},
		{"ensure another pair", func() (int64, error) { return s.EnsureDMRoom(t.Context(), 3, 1, 104) }, 104, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.do()
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}

	t.Run("with oneself", func(t *testing.T) {
		_, err := s.EnsureDMRoom(t.Context(), 1, 1, 105)
		require.Error(t, err)
		_, err = s.FindDMRoom(t.Context(), 1, 1)
		require.ErrorIs(t, err, persistence.ErrNotFound)
	})
}

func testDMRoomConcurrent(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2)
	ids := make([]int64, 8)
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i := range ids {
		a, b := int64(1+i%2), int64(2-i%2) // both orders
		wg.Go(func() { ids[i], errs[i] = s.EnsureDMRoom(t.Context(), a, b, int64(100+i)) })
	}
	wg.Wait()
	for i := range ids {
		require.NoError(t, errs[i])
		require.Equal(t, ids[0], ids[i], "caller %d got another room", i)
	}
	id, err := s.FindDMRoom(t.Context(), 2, 1)
	require.NoError(t, err)
	require.Equal(t, ids[0], id)
}

func testOpenDMs(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3, 4)
	befriend(t, s, 1, 2)
	befriend(t, s, 1, 3)
	befriend(t, s, 1, 4)
	ensureDMRoom(t, s, 1, 2, 100)

	steps := []struct { // in order: each step builds on the last
		name string
		dm   persistence.DMOpen
		want persistence.DMState
	}{
		{"strangers", persistence.DMOpen{Low: 2, High: 3, NewID: 300}, persistence.DMState{Members: true}},
		{"friends without a room", persistence.DMOpen{Low: 1, High: 3, NewID: 301}, persistence.DMState{Members: true, Friends: true, RoomID: 301}},
		{"friends with a room", persistence.DMOpen{Low: 1, High: 2, NewID: 302}, persistence.DMState{Members: true, Friends: true, RoomID: 100}},
		{"the room created before", persistence.DMOpen{Low: 1, High: 3, NewID: 303}, persistence.DMState{Members: true, Friends: true, RoomID: 301}},
		{"unknown user", persistence.DMOpen{Low: 1, High: 9, NewID: 304}, persistence.DMState{}},
		{"unknown users", persistence.DMOpen{Low: 8, High: 9, NewID: 305}, persistence.DMState{}},
	}
	for _, st := range steps {
		require.Equal(t, []persistence.DMState{st.want}, openDMs(t, s, st.dm), st.name)
		requireDMRoom(t, s, st.dm.Low, st.dm.High, st.want.RoomID)
	}

	t.Run("unfriended", func(t *testing.T) {
		require.NoError(t, s.DeleteFriend(t.Context(), 1, 2))
		got := openDMs(t, s, persistence.DMOpen{Low: 1, High: 2, NewID: 306})
		require.Equal(t, []persistence.DMState{{Members: true, RoomID: 100}}, got, "the room stays")
	})
	t.Run("low not below high", func(t *testing.T) {
		for _, bad := range []persistence.DMOpen{{Low: 2, High: 1, NewID: 307}, {Low: 1, High: 1, NewID: 308}} {
			_, err := s.OpenDMs(t.Context(), []persistence.DMOpen{{Low: 1, High: 4, NewID: 309}, bad})
			require.Error(t, err)
		}
		requireDMRoom(t, s, 1, 4, 0) // nothing of the call applied
	})
	t.Run("none", func(t *testing.T) {
		got, err := s.OpenDMs(t.Context(), nil)
		require.NoError(t, err)
		require.Empty(t, got)
	})
}

// testOpenDMsMany opens 50 DMs of every kind in one call, out of id order.
func testOpenDMsMany(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1)
	// User k is, by k%4: a stranger, a friend without a room, a friend
	// with room 1000+k, a former friend with room 1000+k.
	for k := int64(2); k <= 51; k++ {
		createUsers(t, s, k)
		if k%4 != 0 {
			befriend(t, s, 1, k)
		}
		if k%4 >= 2 {
			ensureDMRoom(t, s, 1, k, 1000+k)
		}
		if k%4 == 3 {
			require.NoError(t, s.DeleteFriend(t.Context(), k, 1))
		}
	}
	var dms []persistence.DMOpen
	var want []persistence.DMState
	for i := range int64(50) {
		k := 51 - i
		if i%10 == 9 { // a user that does not exist
			dms = append(dms, persistence.DMOpen{Low: k, High: 100 + k, NewID: 5000 + i})
			want = append(want, persistence.DMState{})
			continue
		}
		dms = append(dms, persistence.DMOpen{Low: 1, High: k, NewID: 5000 + i})
		switch k % 4 {
		case 0:
			want = append(want, persistence.DMState{Members: true})
		case 1:
			want = append(want, persistence.DMState{Members: true, Friends: true, RoomID: 5000 + i})
		case 2:
			want = append(want, persistence.DMState{Members: true, Friends: true, RoomID: 1000 + k})
		case 3:
			want = append(want, persistence.DMState{Members: true, RoomID: 1000 + k})
		}
	}
	require.Equal(t, want, openDMs(t, s, dms...))
	for i, dm := range dms {
		requireDMRoom(t, s, dm.Low, dm.High, want[i].RoomID)
	}
	require.Equal(t, want, openDMs(t, s, dms...), "again")
}

// testOpenDMsRepeated opens the same DMs twice in one call.
func testOpenDMsRepeated(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3, 4)
	befriend(t, s, 1, 2)
	befriend(t, s, 1, 3)
	ensureDMRoom(t, s, 1, 3, 100)
	got := openDMs(t, s,
		persistence.DMOpen{Low: 1, High: 2, NewID: 200},
		persistence.DMOpen{Low: 1, High: 3, NewID: 201},
		persistence.DMOpen{Low: 2, High: 3, NewID: 202},
		persistence.DMOpen{Low: 1, High: 2, NewID: 203},
		persistence.DMOpen{Low: 1, High: 3, NewID: 204},
		persistence.DMOpen{Low: 2, High: 3, NewID: 205},
	)
	room12 := got[0].RoomID
	require.Contains(t, []int64{200, 203}, room12)
	require.Equal(t, []persistence.DMState{
		{Members: true, Friends: true, RoomID: room12},
		{Members: true, Friends: true, RoomID: 100},
		{Members: true},
		{Members: true, Friends: true, RoomID: room12},
		{Members: true, Friends: true, RoomID: 100},
		{Members: true},
	}, got)
	requireDMRoom(t, s, 1, 2, room12)
	requireDMRoom(t, s, 2, 3, 0)
}

// testOpenDMsConcurrent has 8 callers open the same three DMs of friends at
// once, each in another order, over several fresh trios: each DM gets one
// room.
func testOpenDMsConcurrent(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	for trio := range int64(10) {
		a, b, c := 3*trio+1, 3*trio+2, 3*trio+3
		createUsers(t, s, a, b, c)
		befriend(t, s, a, b)
		befriend(t, s, a, c)
		befriend(t, s, b, c)
		pairs := [][2]int64{{a, b}, {a, c}, {b, c}}
		rooms := make([]map[[2]int64]int64, 8)
		errs := make([]error, len(rooms))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range rooms {
			var dms []persistence.DMOpen
			for j := range pairs {
				p := pairs[(i+j)%len(pairs)]
				dms = append(dms, persistence.DMOpen{Low: p[0], High: p[1], NewID: 1000*(trio+1) + int64(10*i+j)})
			}
			wg.Go(func() {
				<-start
				states, err := s.OpenDMs(t.Context(), dms)
				if errs[i] = err; err != nil {
					return
				}
				rooms[i] = make(map[[2]int64]int64)
				for j, st := range states {
					if !st.Members || !st.Friends || st.RoomID == 0 {
						errs[i] = fmt.Errorf("state %+v of %+v", st, dms[j])
					}
					rooms[i][[2]int64{dms[j].Low, dms[j].High}] = st.RoomID
				}
			})
		}
		close(start)
		wg.Wait()
		for i := range rooms {
			require.NoError(t, errs[i])
			require.Equal(t, rooms[0], rooms[i], "caller %d got other rooms", i)
		}
		for p, id := range rooms[0] {
			requireDMRoom(t, s, p[0], p[1], id)
		}
	}
}

func testSend(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, r13 := chatRooms(t, s)
	ops := []persistence.MessageOp{
		send(r12, 1, 10, "hi", "n1", now),
		send(r12, 2, 11, "without nonce", "", now.Add(time.Nanosecond)),
		send(r12, 2, 12, "again without nonce", "", now),
		send(r12, 2, 13, "another author's nonce", "n1", now),
		send(r13, 1, 14, "another room, another nonce", "n2", now.Add(-time.Hour)),
	}
	seqs := []int64{1, 2, 3, 4, 1} // each room numbers its own
	results := write(t, s, ops...)
	for i, op := range ops {
		want := persistence.MessageResult{Message: sent(op, seqs[i])}
		require.Equal(t, want, results[i], "op %d", i)
		requireMessage(t, s, want.Message)
	}
	requireNoMessage(t, s, r13, 10) // another room's message
	require.Empty(t, write(t, s), "no ops")
}

func testSendDuplicate(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, _ := chatRooms(t, s)
	earlier := send(r12, 1, 10, "first", "n", now)
	write(t, s, earlier)

	at := now.Add(time.Minute)
	retry := send(r12, 1, 11, "retry", "n", at)
	m1, m2 := send(r12, 1, 12, "in batch", "m", at), send(r12, 1, 13, "in batch again", "m", at)
	other := send(r12, 2, 14, "other author", "n", at)
	results := write(t, s, retry, m1, m2, other)
	require.Equal(t, []persistence.MessageResult{
		{Message: sent(earlier, 1), Duplicate: true},
		{Message: sent(m1, 2)},
		{Message: sent(m1, 2), Duplicate: true},
		{Message: sent(other, 3)},
	}, results, "a duplicate takes no number")
	requireNoMessage(t, s, r12, 11)
	requireNoMessage(t, s, r12, 13)
	requireMessage(t, s, sent(earlier, 1))

	t.Run("shows the batch's edits", func(t *testing.T) {
		k := send(r12, 2, 20, "k", "k", at)
		editK := edit(r12, 20, "k edited", at.Add(time.Second))
		kAgain := send(r12, 2, 21, "k again", "k", at)
		retryAgain := send(r12, 1, 22, "retry again", "n", at)
		deleteEarlier := edit(r12, 10, "", at.Add(time.Second))
		results := write(t, s, k, editK, kAgain, retryAgain, deleteEarlier)
		require.Equal(t, []persistence.MessageResult{
			{Message: sent(k, 4)},
			{Message: edited(sent(k, 4), editK, 5)},
			{Message: edited(sent(k, 4), editK, 5), Duplicate: true},
			{Message: edited(sent(earlier, 1), deleteEarlier, 6), Duplicate: true}, // deleted later in the batch
			{Message: edited(sent(earlier, 1), deleteEarlier, 6)},
		}, results)
	})
}

// testSendConcurrentNonce sends one nonce in concurrent batches: one stores
// it, every other batch gets it back as a duplicate.
func testSendConcurrentNonce(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, _ := chatRooms(t, s)
	results := make([][]persistence.MessageResult, 8)
	errs := make([]error, len(results))
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			results[i], errs[i] = s.WriteMessages(t.Context(), []persistence.MessageOp{
				send(r12, 1, int64(10+i), fmt.Sprint("try ", i), "n", now),
				send(r12, 2, int64(20+i), "unrelated", "", now),
			})
		})
	}
	wg.Wait()
	var stored []persistence.Message
	for i, rs := range results {
		require.NoError(t, errs[i])
		require.False(t, rs[1].Duplicate)
		if !rs[0].Duplicate {
			stored = append(stored, rs[0].Message)
		}
	}
	require.Len(t, stored, 1, "one batch stores the nonce")
	for _, rs := range results {
		require.Equal(t, stored[0], rs[0].Message)
	}
}

// testSendNoncePerRoom checks that a nonce is the idempotency key of a send
// per author and room (protocol.md §2.3): the same nonce in another room is
// a new message, and a retry in each room answers that room's message.
func testSendNoncePerRoom(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, r13 := chatRooms(t, s)
	in12 := send(r12, 1, 10, "to two", "n", now)
	require.Equal(t, []persistence.MessageResult{{Message: sent(in12, 1)}}, write(t, s, in12))

	at := now.Add(time.Minute)
	in13 := send(r13, 1, 11, "to three", "n", at)
	retry12, retry13 := send(r12, 1, 12, "retry to two", "n", at), send(r13, 1, 13, "retry to three", "n", at)
	other12 := send(r12, 2, 14, "another author", "n", at)
	require.Equal(t, []persistence.MessageResult{
		{Message: sent(in13, 1)},
		{Message: sent(in12, 1), Duplicate: true},
		{Message: sent(in13, 1), Duplicate: true},
		{Message: sent(other12, 2)},
	}, write(t, s, in13, retry12, retry13, other12))
	requireMessage(t, s, sent(in12, 1))
	requireMessage(t, s, sent(in13, 1))
	requireNoMessage(t, s, r12, 12)
	requireNoMessage(t, s, r13, 13)
}

func testEdit(t *testing.T, open func(t *testing.T) persistence.Store) {
	at := now.Add(time.Minute)
	tests := []struct {
		name    string
		op      persistence.MessageOp
		wantErr error // else the op applies to message 10
	}{
		{"edit", edit(100, 10, "new", at), nil},
		{"delete", edit(100, 10, "", at), nil},
		{"in another room", edit(200, 10, "new", at), persistence.ErrNotFound},
		{"unknown message", edit(100, 99, "new", at), persistence.ErrNotFound},
		{"deleted message", edit(100, 11, "new", at), persistence.ErrNotFound},
		{"delete deleted message", edit(100, 11, "", at), persistence.ErrNotFound},
		{"by its author", editBy(100, 2, 10, "new", at), nil},
		{"delete by its author", editBy(100, 2, 10, "", at), nil},
		{"by another user", editBy(100, 1, 10, "new", at), persistence.ErrNotAuthor},
		{"delete by another user", editBy(100, 1, 10, "", at), persistence.ErrNotAuthor},
		{"by an unknown user", editBy(100, 9, 10, "new", at), persistence.ErrNotAuthor},
		{"deleted message by another user", editBy(100, 2, 11, "new", at), persistence.ErrNotFound},
		{"deleted message by its author", editBy(100, 1, 11, "new", at), persistence.ErrNotFound},
		{"in another room by its author", editBy(200, 2, 10, "new", at), persistence.ErrNotFound},
		{"unknown message by a user", editBy(100, 2, 99, "new", at), persistence.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			r12, _ := chatRooms(t, s)
			m10, m11 := send(r12, 2, 10, "old", "", now), send(r12, 1, 11, "to delete", "", now)
			deleteM11 := edit(r12, 11, "", now.Add(time.Second))
			write(t, s, m10, m11, deleteM11)
			other := send(r12, 1, 12, "in the same batch", "", at)

			results := write(t, s, tt.op, other)
			otherSeq := int64(5) // after the edit's 4
			if tt.wantErr != nil {
				otherSeq = 4 // a failed edit takes no number
			}
			require.Equal(t, persistence.MessageResult{Message: sent(other, otherSeq)}, results[1], "the other op applies")
			requireMessage(t, s, sent(other, otherSeq))
			requireMessage(t, s, edited(sent(m11, 2), deleteM11, 3)) // deleted, still there
			if tt.wantErr != nil {
				require.ErrorIs(t, results[0].Err, tt.wantErr)
				require.Zero(t, results[0].Message)
				requireMessage(t, s, sent(m10, 1))
				return
			}
			want := edited(sent(m10, 1), tt.op, 4)
			require.Equal(t, persistence.MessageResult{Message: want}, results[0])
			requireMessage(t, s, want)
		})
	}
}

// testEditAuthorInBatch mixes edits by authors and by others with sends: an
// edit by another changes nothing, and the ops around it still apply.
func testEditAuthorInBatch(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, _ := chatRooms(t, s)
	m10 := send(r12, 2, 10, "old", "n10", now)
	write(t, s, m10)

	at := now.Add(time.Minute)
	m20, m21 := send(r12, 1, 20, "twenty", "", at), send(r12, 2, 21, "twenty-one", "n21", at)
	byAuthor20, byOther20 := editBy(r12, 1, 20, "twenty edited", at), editBy(r12, 2, 20, "not mine", at)
	byOther10, byAuthor10 := editBy(r12, 1, 10, "", at), editBy(r12, 2, 10, "ten edited", at)
	byOther21 := editBy(r12, 1, 21, "not mine either", at)
	retry10, retry21 := send(r12, 2, 22, "retry", "n10", at), send(r12, 2, 23, "retry", "n21", at)
	results := write(t, s, m20, byOther20, byAuthor20, m21, byOther10, byAuthor10, byOther21, retry10, retry21)

	want20, want10 := edited(sent(m20, 2), byAuthor20, 3), edited(sent(m10, 1), byAuthor10, 5)
	require.Equal(t, persistence.MessageResult{Message: sent(m20, 2)}, results[0])
	require.Equal(t, persistence.MessageResult{Err: persistence.ErrNotAuthor}, results[1])
	require.Equal(t, persistence.MessageResult{Message: want20}, results[2])
	require.Equal(t, persistence.MessageResult{Message: sent(m21, 4)}, results[3])
	require.Equal(t, persistence.MessageResult{Err: persistence.ErrNotAuthor}, results[4])
	require.Equal(t, persistence.MessageResult{Message: want10}, results[5])
	require.Equal(t, persistence.MessageResult{Err: persistence.ErrNotAuthor}, results[6])
	require.Equal(t, persistence.MessageResult{Message: want10, Duplicate: true}, results[7])
	require.Equal(t, persistence.MessageResult{Message: sent(m21, 4), Duplicate: true}, results[8])
	requireMessage(t, s, want20)
	requireMessage(t, s, want10)
	requireMessage(t, s, sent(m21, 4))
}

// testWriteOrder checks that ops apply in order within a batch.
func testWriteOrder(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, _ := chatRooms(t, s)
	at := now.Add(time.Minute)
	m10, m11 := send(r12, 1, 10, "ten", "a", now), send(r12, 1, 11, "eleven", "b", now)
	edit10, edit11 := edit(r12, 10, "ten edited", at), edit(r12, 11, "eleven edited", at)
	delete10, edit10Again := edit(r12, 10, "", at.Add(time.Second)), edit(r12, 10, "too late", at.Add(2*time.Second))
	results := write(t, s, m10, edit10, edit11, m11, delete10, edit10Again)

	require.Equal(t, persistence.MessageResult{Message: sent(m10, 1)}, results[0])
	require.Equal(t, persistence.MessageResult{Message: edited(sent(m10, 1), edit10, 2)}, results[1], "edit after the send")
	require.ErrorIs(t, results[2].Err, persistence.ErrNotFound, "edit before the send")
	require.Equal(t, persistence.MessageResult{Message: sent(m11, 3)}, results[3])
	require.Equal(t, persistence.MessageResult{Message: edited(edited(sent(m10, 1), edit10, 2), delete10, 4)}, results[4])
	require.ErrorIs(t, results[5].Err, persistence.ErrNotFound, "edit after the delete")
	requireMessage(t, s, results[4].Message)
	requireMessage(t, s, sent(m11, 3))
}

// testWriteAtomic checks that an op the caller got wrong fails its batch,
// which leaves nothing, and that such an error is not an unknown outcome.
func testWriteAtomic(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, _ := chatRooms(t, s)
	kept := send(r12, 1, 10, "kept", "n", now)
	write(t, s, kept)

	at := now.Add(time.Minute)
	tests := []struct {
		name string
		bad  persistence.MessageOp
	}{
		{"edit without EditedAt", persistence.MessageOp{Kind: persistence.OpEdit, Message: persistence.Message{ID: 10, RoomID: r12}}},
		{"unknown kind", persistence.MessageOp{Kind: 99, Message: persistence.Message{ID: 21, RoomID: r12, AuthorID: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.WriteMessages(t.Context(), []persistence.MessageOp{
				send(r12, 2, 30, "before", "", at),
				edit(r12, 10, "edited", at),
				tt.bad,
				send(r12, 2, 31, "after", "", at),
			})
			require.Error(t, err)
			require.NotErrorIs(t, err, persistence.ErrOutcomeUnknown)
			requireNoMessage(t, s, r12, 30)
			requireNoMessage(t, s, r12, 31)
			requireMessage(t, s, sent(kept, 1))
		})
	}
}

// testWriteRefusedAlone checks that an op the database refuses fails alone
// (protocol.md §2.3: one user's input never fails another's write): its
// result carries ErrRefused, it changes nothing, and the ops around it,
// in the same multi-row insert or not, apply.
func testWriteRefusedAlone(t *testing.T, open func(t *testing.T) persistence.Store) {
	at := now.Add(time.Minute)
	tests := []struct {
		name string
		bad  func(r12 int64) persistence.MessageOp
	}{
		{"content with U+0000", func(r12 int64) persistence.MessageOp { return send(r12, 1, 20, "a\x00b", "bad", at) }},
		{"content not UTF-8", func(r12 int64) persistence.MessageOp { return send(r12, 1, 20, "a\xffb", "bad", at) }},
		{"nonce with U+0000", func(r12 int64) persistence.MessageOp { return send(r12, 1, 20, "fine", "n\x00", at) }},
		{"nonce not UTF-8", func(r12 int64) persistence.MessageOp { return send(r12, 1, 20, "fine", "n\xc3", at) }},
		{"edit with U+0000", func(r12 int64) persistence.MessageOp { return editBy(r12, 2, 10, "x\x00", at) }},
		{"edit not UTF-8", func(r12 int64) persistence.MessageOp { return edit(r12, 10, "\xed\xa0\x80", at) }},
		{"unknown room", func(int64) persistence.MessageOp { return send(999, 1, 20, "x", "", at) }},
		{"unknown author", func(r12 int64) persistence.MessageOp { return send(r12, 9, 20, "x", "", at) }},
		{"id taken", func(r12 int64) persistence.MessageOp { return send(r12, 1, 10, "x", "other nonce", at) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			r12, r13 := chatRooms(t, s)
			m10 := send(r12, 2, 10, "ten", "n10", now)
			write(t, s, m10)
			bad := tt.bad(r12)
			before, editTen := send(r12, 2, 30, "before", "b", at), editBy(r12, 2, 10, "ten edited", at)
			neighbour, after := send(r12, 1, 31, "beside", "", at), send(r13, 3, 32, "after", "", at)
			retry := send(r12, 2, 33, "retry", "n10", at)
			ops := []persistence.MessageOp{before, bad, neighbour, editTen, retry, after}
			results, err := s.WriteMessages(t.Context(), ops)
			require.NoError(t, err, "a refused op must not fail its batch")
			require.Len(t, results, len(ops))
			require.ErrorIs(t, results[1].Err, persistence.ErrRefused)
			require.Zero(t, results[1].Message)
			require.False(t, results[1].Duplicate)
			want10 := edited(sent(m10, 1), editTen, 4)
			require.Equal(t, persistence.MessageResult{Message: sent(before, 2)}, results[0])
			require.Equal(t, persistence.MessageResult{Message: sent(neighbour, 3)}, results[2], "a refused op takes no number")
			require.Equal(t, persistence.MessageResult{Message: want10}, results[3])
			require.Equal(t, persistence.MessageResult{Message: want10, Duplicate: true}, results[4])
			require.Equal(t, persistence.MessageResult{Message: sent(after, 1)}, results[5])
			for _, r := range []persistence.MessageResult{results[0], results[2], results[5]} {
				requireMessage(t, s, r.Message)
			}
			requireMessage(t, s, want10)
			requireNoMessage(t, s, r12, 33)
			if bad.Message.ID == 20 {
				requireNoMessage(t, s, r12, 20)
			}
		})
	}
}

// testWriteRefusedMany refuses several ops spread over a large batch, a few
// in one run of sends: each fails alone, every other op applies once.
func testWriteRefusedMany(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	r12, r13 := chatRooms(t, s)
	at := now.Add(time.Minute)
	var ops []persistence.MessageOp
	bad := map[int]bool{3: true, 4: true, 40: true, 99: true}
	for i := range 100 {
		room, author := r12, int64(1+i%2)
		if i%3 == 0 {
			room, author = r13, 3
		}
		content := fmt.Sprint("message ", i)
		if bad[i] {
			content += "\x00"
		}
		ops = append(ops, send(room, author, int64(1000+i), content, fmt.Sprint("n", i), at))
	}
	results := write(t, s, ops...)
	seqs := map[int64]int64{} // room → its last number
	for i, op := range ops {
		if bad[i] {
			require.ErrorIs(t, results[i].Err, persistence.ErrRefused, "op %d", i)
			requireNoMessage(t, s, op.Message.RoomID, op.Message.ID)
			continue
		}
		seqs[op.Message.RoomID]++
		want := sent(op, seqs[op.Message.RoomID])
		require.Equal(t, persistence.MessageResult{Message: want}, results[i], "op %d", i)
		requireMessage(t, s, want)
	}
}

// historyRoom fills room 100 of users 1 and 2 and returns its messages that
// are not deleted, newest first. Several share a created_at, and ids do not
// follow times.
func historyRoom(t *testing.T, s persistence.Store) []persistence.Message {
	t.Helper()
	r12, r13 := chatRooms(t, s)
	t0 := stored(now)
	t1, t2 := t0.Add(time.Microsecond), t0.Add(time.Second)
	ops := []persistence.MessageOp{
		send(r12, 1, 10, "a", "", t0),
		send(r12, 2, 11, "b", "", t1),
		send(r12, 1, 12, "c", "", t1),
		send(r12, 2, 13, "d", "", t1),
		send(r12, 1, 5, "e", "", t1), // older id, same time
		send(r12, 1, 14, "deleted", "", t1),
		send(r12, 2, 15, "f", "", t2),
		send(r13, 1, 16, "another room", "", t1),
		edit(r12, 14, "", t2),
		edit(r12, 11, "b edited", t2),
	}
	results := write(t, s, ops...)
	byID := func(id int64) persistence.Message {
		i := slices.IndexFunc(ops, func(op persistence.MessageOp) bool { return op.Message.ID == id })
		return results[i].Message
	}
	return []persistence.Message{byID(15), byID(13), byID(12), results[9].Message, byID(5), byID(10)}
}

func testHistory(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	all := historyRoom(t, s) // 15@t2, 13@t1, 12@t1, 11@t1, 5@t1, 10@t0
	t0 := stored(now)
	t1 := t0.Add(time.Microsecond)
	tests := []struct {
		name   string
		room   int64
		before persistence.Cursor
		limit  int
		want   []persistence.Message
	}{
		{"all", 100, persistence.Cursor{Time: now.Add(time.Hour)}, 100, all},
		{"limit", 100, persistence.Cursor{Time: now.Add(time.Hour)}, 2, all[:2]},
		{"older than a time", 100, persistence.Cursor{Time: t1}, 100, all[5:]},
		{"older than a time between microseconds", 100, persistence.Cursor{Time: t1.Add(time.Nanosecond)}, 100, all[1:]},
		{"older than a message", 100, persistence.Cursor{Time: t1, ID: 12}, 100, all[3:]},
		{"older than the smallest id of a time", 100, persistence.Cursor{Time: t1, ID: 5}, 100, all[5:]},
		{"older than a deleted message", 100, persistence.Cursor{Time: t1, ID: 14}, 100, all[1:]},
		{"zone of the cursor", 100, persistence.Cursor{Time: t1.In(time.FixedZone("UTC-5", -5*3600)), ID: 12}, 1, all[3:4]},
		{"nothing older", 100, persistence.Cursor{Time: t0}, 100, nil},
		{"another room", 200, persistence.Cursor{Time: now.Add(time.Hour)}, 100, []persistence.Message{{
			ID: 16, RoomID: 200, AuthorID: 1, Content: "another room", CreatedAt: t1, Seq: 1,
		}}},
		{"unknown room", 999, persistence.Cursor{Time: now.Add(time.Hour)}, 100, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.History(t.Context(), tt.room, tt.before, tt.limit)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}

	t.Run("limit not positive", func(t *testing.T) {
		_, err := s.History(t.Context(), 100, persistence.Cursor{Time: now}, 0)
		require.Error(t, err)
	})
}

// testHistoryPaging pages with the cursor of each page's last message:
// equal times never make a page skip or repeat a message.
func testHistoryPaging(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	all := historyRoom(t, s)
	for limit := 1; limit <= len(all); limit++ {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			var got []persistence.Message
			before := persistence.Cursor{Time: now.Add(time.Hour)}
			for range len(all) + 1 {
				page, err := s.History(t.Context(), 100, before, limit)
				require.NoError(t, err)
				if len(page) == 0 {
					break
				}
				require.LessOrEqual(t, len(page), limit)
				got = append(got, page...)
				last := page[len(page)-1]
				before = persistence.Cursor{Time: last.CreatedAt, ID: last.ID}
			}
			require.Equal(t, all, got)
		})
	}
}

// requireLists checks the friend lists of userID by user ids.
func requireLists(t *testing.T, s persistence.Store, userID int64, incoming, outgoing, friends []int64) {
	t.Helper()
	ids := func(us []persistence.User) []int64 {
		var ids []int64
		for _, u := range us {
			ids = append(ids, u.ID)
		}
		return ids
	}
	in, out, fr, err := s.FriendLists(t.Context(), userID)
	require.NoError(t, err)
	require.Equal(t, incoming, ids(in), "incoming of %d", userID)
	require.Equal(t, outgoing, ids(out), "outgoing of %d", userID)
	require.Equal(t, friends, ids(fr), "friends of %d", userID)
	fr, err = s.Friends(t.Context(), userID)
	require.NoError(t, err)
	require.Equal(t, friends, ids(fr), "Friends of %d", userID)
}

func requireFriends(t *testing.T, s persistence.Store, a, b int64, want bool) {
	t.Helper()
	for _, pair := range [][2]int64{{a, b}, {b, a}} {
		got, err := s.AreFriends(t.Context(), pair[0], pair[1])
		require.NoError(t, err)
		require.Equal(t, want, got, "AreFriends(%d, %d)", pair[0], pair[1])
	}
}

func testRequestFriend(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2)
	steps := []struct {
		name     string
		from, to int64
		want     persistence.FriendResult
		wantErr  error
	}{
		{"request", 1, 2, persistence.FriendRequested, nil},
		{"repeat", 1, 2, persistence.FriendRequestRepeated, nil},
		{"crossing request accepts", 2, 1, persistence.FriendAccepted, nil},
		{"friends already", 1, 2, 0, persistence.ErrAlreadyFriends},
		{"friends already, other side", 2, 1, 0, persistence.ErrAlreadyFriends},
		{"unknown recipient", 1, 9, 0, persistence.ErrNotFound},
		{"unknown sender", 9, 1, 0, persistence.ErrNotFound},
	}
	for _, st := range steps { // in order: each step builds on the last
		got, err := s.RequestFriend(t.Context(), st.from, st.to, now)
		if st.wantErr != nil {
			require.ErrorIs(t, err, st.wantErr, st.name)
			continue
		}
		require.NoError(t, err, st.name)
		require.Equal(t, st.want, got, st.name)
		if st.want == persistence.FriendRequested {
			requireLists(t, s, 1, nil, []int64{2}, nil)
			requireLists(t, s, 2, []int64{1}, nil, nil)
		}
	}
	requireFriends(t, s, 1, 2, true)
	requireLists(t, s, 1, nil, nil, []int64{2})
	requireLists(t, s, 2, nil, nil, []int64{1})

	_, err := s.RequestFriend(t.Context(), 1, 1, now)
	require.Error(t, err, "to oneself")
	requireLists(t, s, 1, nil, nil, []int64{2})
}

func testAcceptFriend(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3)
	_, err := s.RequestFriend(t.Context(), 1, 2, now)
	require.NoError(t, err)

	require.ErrorIs(t, s.AcceptFriend(t.Context(), 1, 2, now), persistence.ErrNotFound, "my own request")
	require.ErrorIs(t, s.AcceptFriend(t.Context(), 2, 3, now), persistence.ErrNotFound, "no request")
	require.ErrorIs(t, s.AcceptFriend(t.Context(), 2, 9, now), persistence.ErrNotFound, "unknown user")
	requireFriends(t, s, 1, 2, false)

	require.NoError(t, s.AcceptFriend(t.Context(), 2, 1, now))
	requireFriends(t, s, 1, 2, true)
	requireLists(t, s, 1, nil, nil, []int64{2})
	requireLists(t, s, 2, nil, nil, []int64{1})
	require.ErrorIs(t, s.AcceptFriend(t.Context(), 2, 1, now), persistence.ErrNotFound, "accepted already")
}

func testRemoveFriendRequest(t *testing.T, open func(t *testing.T) persistence.Store) {
	tests := []struct {
		name      string
		me, other int64
	}{
		{"decline", 2, 1},
		{"take back", 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			createUsers(t, s, 1, 2, 3)
			_, err := s.RequestFriend(t.Context(), 1, 2, now)
			require.NoError(t, err)
			_, err = s.RequestFriend(t.Context(), 3, 2, now)
			require.NoError(t, err)

			require.NoError(t, s.RemoveFriendRequest(t.Context(), tt.me, tt.other))
			requireLists(t, s, 1, nil, nil, nil)
			requireLists(t, s, 2, []int64{3}, nil, nil) // another request stays
			requireFriends(t, s, 1, 2, false)
			require.ErrorIs(t, s.RemoveFriendRequest(t.Context(), tt.me, tt.other), persistence.ErrNotFound, "removed already")
		})
	}

	t.Run("friends", func(t *testing.T) {
		s := open(t)
		createUsers(t, s, 1, 2)
		_, err := s.RequestFriend(t.Context(), 1, 2, now)
		require.NoError(t, err)
		require.NoError(t, s.AcceptFriend(t.Context(), 2, 1, now))
		require.ErrorIs(t, s.RemoveFriendRequest(t.Context(), 2, 1), persistence.ErrNotFound)
		requireFriends(t, s, 1, 2, true)
	})
}

func testDeleteFriend(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3)
	for _, other := range []int64{2, 3} {
		_, err := s.RequestFriend(t.Context(), 1, other, now)
		require.NoError(t, err)
		require.NoError(t, s.AcceptFriend(t.Context(), other, 1, now))
	}
	_, err := s.RequestFriend(t.Context(), 2, 3, now)
	require.NoError(t, err)

	require.NoError(t, s.DeleteFriend(t.Context(), 2, 1))
	requireFriends(t, s, 1, 2, false)
	requireFriends(t, s, 1, 3, true)
	requireLists(t, s, 2, nil, []int64{3}, nil)
	require.ErrorIs(t, s.DeleteFriend(t.Context(), 1, 2), persistence.ErrNotFound, "deleted already")
	require.ErrorIs(t, s.DeleteFriend(t.Context(), 2, 3), persistence.ErrNotFound, "only asked")

	got, err := s.RequestFriend(t.Context(), 1, 2, now)
	require.NoError(t, err)
	require.Equal(t, persistence.FriendRequested, got, "asking again after")
}

func testFriendLists(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1, 2, 3, 4, 5, 6, 7, 8, 9)
	at := func(us int) time.Time { return now.Add(time.Duration(us) * time.Microsecond) }
	request := func(from, to int64, when time.Time) {
		t.Helper()
		_, err := s.RequestFriend(t.Context(), from, to, when)
		require.NoError(t, err)
	}
	request(4, 1, at(2))
	request(5, 1, at(1))
	request(3, 1, at(1))
	request(1, 6, at(3))
	request(1, 7, at(0))
	request(1, 9, at(5)) // accepted first, but later
	require.NoError(t, s.AcceptFriend(t.Context(), 9, 1, at(5)))
	request(8, 1, at(4))
	request(1, 8, at(4))
	request(2, 1, at(0))
	require.NoError(t, s.AcceptFriend(t.Context(), 1, 2, at(4)))

	requireLists(t, s, 1, []int64{3, 5, 4}, []int64{7, 6}, []int64{2, 8, 9})
	requireLists(t, s, 3, nil, []int64{1}, nil)
	requireLists(t, s, 99, nil, nil, nil)

	in, _, friends, err := s.FriendLists(t.Context(), 1)
	require.NoError(t, err)
	require.Equal(t, user(3, "user3", "user3@example.com"), in[0], "whole users")
	require.Equal(t, user(2, "user2", "user2@example.com"), friends[0], "whole users")
}

// testFriendsConcurrent has two users ask each other at the same moment, over
// many fresh pairs: they must always end as friends with no request left.
func testFriendsConcurrent(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	for pair := range int64(40) {
		a, b := 2*pair+1, 2*pair+2
		createUsers(t, s, a, b)
		var results [2]persistence.FriendResult
		var errs [2]error
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, from := range []int64{a, b} {
			wg.Go(func() {
				<-start
				results[i], errs[i] = s.RequestFriend(t.Context(), from, a+b-from, now)
			})
		}
		close(start)
		wg.Wait()
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		require.ElementsMatch(t, []persistence.FriendResult{persistence.FriendRequested, persistence.FriendAccepted}, results[:])
		requireFriends(t, s, a, b, true)
		requireLists(t, s, a, nil, nil, []int64{b})
		requireLists(t, s, b, nil, nil, []int64{a})
	}
}

func testSetProfile(t *testing.T, open func(t *testing.T) persistence.Store) {
	s := open(t)
	createUsers(t, s, 1)
	url, other := "https://example.com/a.png", "http://example.com/b.png"
	tests := []struct {
		name    string
		profile *string
	}{
		{"set", &url},
		{"replace", &other},
		{"clear", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := user(1, "user1", "user1@example.com")
			want.Profile = tt.profile
			got, err := s.SetProfile(t.Context(), 1, tt.profile)
			require.NoError(t, err)
			require.Equal(t, want, got)
			got, err = s.UserByID(t.Context(), 1)
			require.NoError(t, err)
			require.Equal(t, want, got)
		})
	}

	t.Run("unknown user", func(t *testing.T) {
		_, err := s.SetProfile(t.Context(), 9, &url)
		require.ErrorIs(t, err, persistence.ErrNotFound)
	})
}

// BenchWriteMessages measures s.WriteMessages, as the group commit calls it:
// batches of batch sends with nonces, spread over 20 DM rooms. At 5,000
// messages/s the writer commits about 12 per transaction; 100 is a burst.
func BenchWriteMessages(b *testing.B, s persistence.Store, batch int) {
	type room struct{ id, author int64 }
	var rooms []room
	createUser := func(id int64) {
		require.NoError(b, s.CreateUser(b.Context(), user(id, fmt.Sprint("user", id), fmt.Sprint("user", id, "@example.com"))))
	}
	createUser(1)
	for other := int64(2); other <= 21; other++ {
		createUser(other)
		id, err := s.EnsureDMRoom(b.Context(), 1, other, 1000+other)
		require.NoError(b, err)
		rooms = append(rooms, room{id, 1 + other%2*(other-1)}) // either member writes
	}

	ops := make([]persistence.MessageOp, batch)
	next := int64(1)
	for b.Loop() {
		for i := range ops {
			r := rooms[i%len(rooms)]
			ops[i] = send(r.id, r.author, next, "a message of about the usual length", strconv.FormatInt(next, 36),
				now.Add(time.Duration(next)*time.Microsecond))
			next++
		}
		if _, err := s.WriteMessages(b.Context(), ops); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(next-1)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchOpenDMs measures s.OpenDMs of n DMs of friends that have their room,
// as room actors activating at once would call it.
func BenchOpenDMs(b *testing.B, s persistence.Store, n int) {
	require.NoError(b, s.CreateUser(b.Context(), user(1, "user1", "user1@example.com")))
	dms := make([]persistence.DMOpen, n)
	for i := range dms {
		other := int64(2 + i)
		require.NoError(b, s.CreateUser(b.Context(), user(other, fmt.Sprint("user", other), fmt.Sprint("user", other, "@example.com"))))
		_, err := s.RequestFriend(b.Context(), 1, other, now)
		require.NoError(b, err)
		require.NoError(b, s.AcceptFriend(b.Context(), other, 1, now))
		dms[i] = persistence.DMOpen{Low: 1, High: other, NewID: 1000 + other}
	}
	if _, err := s.OpenDMs(b.Context(), dms); err != nil { // creates the rooms
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.OpenDMs(b.Context(), dms); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "dms/s")
}
