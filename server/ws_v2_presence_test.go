package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/cluster/etcdtest"
	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/server"
)

// Typing (protocol.md §4.3) and presence (§4.4), v2 only, over real
// WebSockets. Typing passes through the DM's room, which throttles it per
// author; presence is counted by the user's actor (the user grain in a
// cluster), whose friends' v2 sessions hear of the first session and,
// after the offline delay, of the last.

// testOfflineDelay is the offline delay of the presence tests' nodes
// (protocol.md's 5 s, shortened).
const testOfflineDelay = time.Second

// shortOfflineDelay sets a node's offline delay to testOfflineDelay.
func shortOfflineDelay(c *server.Config) { c.Gateway.OfflineDelay = testOfflineDelay }

// makeFriends makes a and b friends in the store, with no event.
func (n *node) makeFriends(a, b account) {
	n.t.Helper()
	ctx := context.Background()
	_, err := n.srv.Store().RequestFriend(ctx, a.ID, b.ID, time.Now())
	require.NoError(n.t, err)
	require.NoError(n.t, n.srv.Store().AcceptFriend(ctx, b.ID, a.ID, time.Now()))
}

// requireTyping checks that f is the typing event of u in chat.
func requireTyping(t *testing.T, f client.Frame, chat string, u account) {
	t.Helper()
	require.Equal(t, "typing", f.Type, "%s %s", f.Type, f.Payload)
	require.Empty(t, f.Nonce)
	require.Equal(t, map[string]any{"chat_id": chat, "user_id": u.IDString()}, payloadOf(t, f.Payload))
}

// requirePresence checks that f is the presence event of u with status.
func requirePresence(t *testing.T, f client.Frame, u account, status string) {
	t.Helper()
	require.Equal(t, "presence", f.Type, "%s %s", f.Type, f.Payload)
	require.Empty(t, f.Nonce)
	require.Equal(t, map[string]any{"user_id": u.IDString(), "status": status}, payloadOf(t, f.Payload))
}

// pastOnline returns c's next frame, past a presence "online" of u: u's
// first session announces it from u's user actor while c's session
// attaches, so c may get it although its auth answer showed u online.
func pastOnline(t *testing.T, c *client.Client, u account) client.Frame {
	t.Helper()
	f := next(t, c)
	if f.Type == "presence" && reflect.DeepEqual(payloadOf(t, f.Payload), map[string]any{"user_id": u.IDString(), "status": "online"}) {
		return next(t, c)
	}
	return f
}

// quiet requires that c receives nothing for d.
func quiet(t *testing.T, c *client.Client, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	f, err := c.Next(ctx)
	require.Error(t, err, "unexpected %s %s", f.Type, f.Payload)
}

// friendStatuses reads a v2 auth answer's mutual_users as id → status.
func friendStatuses(t *testing.T, auth json.RawMessage) map[string]any {
	t.Helper()
	var p struct {
		Friends []map[string]any `json:"mutual_users"`
	}
	require.NoError(t, json.Unmarshal(auth, &p), "%s", auth)
	out := map[string]any{}
	for _, f := range p.Friends {
		out[f["id"].(string)] = f["status"]
	}
	return out
}

// sendTyping sends a typing request into chat with a fresh nonce.
func sendTyping(t *testing.T, c *client.Client, chat string) {
	t.Helper()
	require.NoError(t, c.Send("typing", map[string]string{"chat_id": chat}, c.NewNonce()))
}

// TestV2TypingReachesTheOtherMember: a typing request has no answer; the
// other member's v2 session gets one typing event per 3 s of the typist,
// whichever of the typist's devices it comes from (the others dropped);
// the typist's other device and the other member's v1 session get none.
// Refused as a send is: 4005 to someone who is no friend, 4004 to no
// one, 4000 without a chat_id. A v1 session does not know the type.
func TestV2TypingReachesTheOtherMember(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, noRateLimit)
		a, b, c := n.newAccount("typist"), n.newAccount("reader"), n.newAccount("stranger")
		n.makeFriends(a, b)
		dm := chatID(a, b)
		a1, _ := n.connect(a, 2)
		a2, _ := n.connect(a, 2) // a's other device
		b2, _ := n.connect(b, 2)
		m := n.dialMobile() // b's v1 device
		m.lobby(b.Token)
		// b's first session told a's devices (not b's: a came first).
		requirePresence(t, next(t, a1), b, "online")
		requirePresence(t, next(t, a2), b, "online")

		// A burst from both of a's devices: one event, no answer (the
		// next frame a1 gets answers its send), nothing to a2 or m. The
		// chat event comes through the room behind the typing events.
		for i := range 6 {
			sendTyping(t, []*client.Client{a1, a2}[i%2], dm)
		}
		echo := sendEcho(t, a1, dm, "after typing")
		requireTyping(t, pastOnline(t, b2, a), dm, a)
		require.Equal(t, echo.ID, chatOf(t, next(t, b2)).ID, "one typing event of six")
		require.Equal(t, echo.ID, chatOf(t, next(t, a2)).ID, "no typing event to the typist's other device")
		requireChat(t, m.next(), "send", a.IDString(), dm, "after typing")
		f := call(t, a2, "heartbeat", 1)
		require.Equal(t, "heartbeat", f.Type, "a typing was answered: %s %s", f.Type, f.Payload)

		// b types back: both of a's devices hear of it.
		sendTyping(t, b2, dm)
		requireTyping(t, next(t, a1), dm, b)
		requireTyping(t, next(t, a2), dm, b)

		// 3 s on, a's other device's typing passes; one from the first
		// device right after it does not.
		time.Sleep(3 * time.Second)
		sendTyping(t, a2, dm)
		sendTyping(t, a1, dm)
		echo = sendEcho(t, a1, dm, "three seconds later")
		requireTyping(t, next(t, b2), dm, a)
		require.Equal(t, echo.ID, chatOf(t, next(t, b2)).ID)
		require.Equal(t, echo.ID, chatOf(t, next(t, a2)).ID)
		requireChat(t, m.next(), "send", a.IDString(), dm, "three seconds later")

		// Refused as a send would be.
		requireError(t, call(t, a1, "typing", map[string]string{"chat_id": chatID(a, c)}), 4005, "Not a mutual user.")
		requireError(t, call(t, a1, "typing", map[string]string{"chat_id": fmt.Sprint(a.ID ^ 987654321)}), 4004, "User not exist.")
		requireError(t, call(t, a1, "typing", map[string]string{}), 4000, "chat_id is not provided.")
		requireError(t, call(t, a1, "typing", map[string]string{"chat_id": "not an id"}), 4000, "chat_id is not provided.")

		// A v1 session: an unknown type.
		m.request("typing", map[string]string{"chat_id": dm})
		m.expect(errorFrame(4000, "Unknown type."))
		quiet(t, a1, 200*time.Millisecond)
	})
}

// TestV2PresenceOnlineOffline: a friend's v2 session hears "online" when
// the user's first session starts and "offline" only once both of its
// devices are closed and the offline delay has passed; a reconnect within
// the delay shows nothing. The v2 auth answer shows each friend's status;
// v1's has no status, and a v1 session gets no presence event.
func TestV2PresenceOnlineOffline(t *testing.T) {
	stores(t, func(t *testing.T, db string) {
		n := startNode(t, db, shortOfflineDelay)
		u, f := n.newAccount("comer"), n.newAccount("watcher")
		n.makeFriends(u, f)
		fv2, auth := n.connect(f, 2)
		require.Equal(t, map[string]any{u.IDString(): "offline"}, friendStatuses(t, auth))
		fm := n.dialMobile() // f's v1 device
		requireListString(t, fm.lobby(f.Token), "mutual_users", []any{v1User(u)})

		u1, auth := n.connect(u, 2)
		require.Equal(t, map[string]any{f.IDString(): "online"}, friendStatuses(t, auth))
		requirePresence(t, next(t, fv2), u, "online")
		u2, _ := n.connect(u, 1) // u's second device, a v1 one: sessions count whatever their version
		again, auth := n.connect(f, 2)
		require.Equal(t, map[string]any{u.IDString(): "online"}, friendStatuses(t, auth))
		requireListString(t, n.dialMobile().lobby(f.Token), "mutual_users", []any{v1User(u)})

		u1.Close()
		quiet(t, fv2, testOfflineDelay+500*time.Millisecond)
		u2.Close()
		closed := time.Now()
		for _, c := range []*client.Client{fv2, again} {
			requirePresence(t, next(t, c), u, "offline")
		}
		require.GreaterOrEqual(t, time.Since(closed), testOfflineDelay, "offline before the delay")
		// The v1 device got none of it: its next frame answers its heartbeat.
		fm.send(`{"type":"heartbeat","payload":{"count":1}}`)
		fm.expect(map[string]any{"type": "heartbeat", "payload": map[string]any{"count": 1.0}})
		_, auth = n.connect(f, 2)
		require.Equal(t, map[string]any{u.IDString(): "offline"}, friendStatuses(t, auth))

		// A quick reconnect: online once, then nothing.
		u3, _ := n.connect(u, 2)
		requirePresence(t, next(t, fv2), u, "online")
		u3.Close()
		time.Sleep(testOfflineDelay / 4)
		u4, _ := n.connect(u, 2)
		time.Sleep(testOfflineDelay + 500*time.Millisecond)
		// u's message to f goes through f's user actor as u's presence
		// does: the next frame being it shows that no presence came first.
		echo := sendEcho(t, u4, chatID(u, f), "still here")
		require.Equal(t, echo.ID, chatOf(t, next(t, fv2)).ID, "a reconnect within the delay showed something")
		requireChat(t, fm.next(), "send", u.IDString(), chatID(u, f), "still here")
		u4.Close()
		requirePresence(t, next(t, fv2), u, "offline")
		fm.send(`{"type":"heartbeat","payload":{"count":2}}`)
		fm.expect(map[string]any{"type": "heartbeat", "payload": map[string]any{"count": 2.0}})
	})
}

// TestClusterPresenceCountsSessionsAcrossNodes: a user's sessions on two
// nodes count as one presence, kept by its one user grain: the friends'
// sessions on both nodes hear "online" once, nothing when one of the two
// sessions ends, and "offline" after the delay once the other ends too. A
// v2 auth on either node shows the status of a friend online on the other
// node (the nodes' directories answer it, no grain is activated).
func TestClusterPresenceCountsSessionsAcrossNodes(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
	nodes := startCluster(t, 2, shortOfflineDelay)
	u, f, idle := nodes[0].newAccount("roamer"), nodes[0].newAccount("friend"), nodes[0].newAccount("idle")
	nodes[0].makeFriends(u, f)
	nodes[0].makeFriends(idle, f)
	f1, auth := nodes[0].connect(f, 2)
	require.Equal(t, map[string]any{u.IDString(): "offline", idle.IDString(): "offline"}, friendStatuses(t, auth))

	u2, _ := nodes[1].connect(u, 2) // on node 2
	requirePresence(t, next(t, f1), u, "online")
	f2, auth := nodes[1].connect(f, 2)
	require.Equal(t, map[string]any{u.IDString(): "online", idle.IDString(): "offline"}, friendStatuses(t, auth))
	u1, _ := nodes[0].connect(u, 2) // and on node 1
	_, auth = nodes[0].connect(f, 2)
	require.Equal(t, map[string]any{u.IDString(): "online", idle.IDString(): "offline"}, friendStatuses(t, auth))

	u2.Close()
	quiet(t, f1, testOfflineDelay+500*time.Millisecond)
	quiet(t, f2, 0)
	u1.Close()
	closed := time.Now()
	requirePresence(t, next(t, f1), u, "offline")
	requirePresence(t, next(t, f2), u, "offline")
	require.GreaterOrEqual(t, time.Since(closed), testOfflineDelay)
	quiet(t, f1, 300*time.Millisecond)
	for _, nd := range nodes {
		_, auth = nd.connect(f, 2)
		require.Equal(t, map[string]any{u.IDString(): "offline", idle.IDString(): "offline"}, friendStatuses(t, auth))
	}
}

// TestClusterPresenceAfterANodeIsLost: a user whose only session is on a
// node that is lost (its member key taken out of etcd, as its lease would
// end if it died) is told offline to a friend on another node the offline
// delay after the others see the member leave, not when the user's grain
// would forget the session (ReattachForget re-attach intervals, minutes
// in these tests).
func TestClusterPresenceAfterANodeIsLost(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
	nodes := startCluster(t, 3, shortOfflineDelay, func(c *server.Config) {
		c.Cluster.OnLost = func() {} // node 3, expelled, stays up until the test stops it
	})
	f := nodes[0].newAccount("stayer")
	var u account
	for i := 0; ; i++ {
		require.Less(t, i, 40, "every user's grain on node 3")
		u = nodes[0].newAccount(fmt.Sprintf("lost%d", i))
		if placedOn(t, nodes, directory.UserKind, directory.UserIdentity(u.ID)) != 3 {
			break
		}
	}
	nodes[0].makeFriends(u, f)
	cf, _ := nodes[0].connect(f, 2)
	nodes[2].connect(u, 2) // u's only session
	requirePresence(t, next(t, cf), u, "online")

	cfg := nodes[2].cfg.Cluster
	etcd, err := clientv3.New(clientv3.Config{Endpoints: cfg.Etcd, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer etcd.Close()
	deleted, err := etcd.Delete(t.Context(), nodes[2].srv.Node().MemberKey())
	require.NoError(t, err)
	require.EqualValues(t, 1, deleted.Deleted, "node 3's member key")
	waitUntil(t, 5*time.Second, "nodes 1 and 2 see node 3 gone", func() bool {
		return nodes[0].srv.Node().Members() == 2 && nodes[1].srv.Node().Members() == 2
	})
	gone := time.Now()
	requirePresence(t, next(t, cf), u, "offline")
	require.GreaterOrEqual(t, time.Since(gone), testOfflineDelay-100*time.Millisecond, "after the offline delay")
	t.Logf("offline %v after the others saw node 3 leave", time.Since(gone).Round(time.Millisecond))
}
