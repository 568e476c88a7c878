package server_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/cluster/etcdtest"
)

// TestClusterUnfriendThenSendAcrossNodes: once a delete of a friendship
// on one node is answered ok, a send into the DM from another node is
// refused 4005 (protocol.md §2.5: changes are stored before the answer),
// though the friendship change and the send reach the room by different
// paths: the user grain answers only after the room took the change in.
// Several rounds, each with the room loaded (a send) before the delete.
func TestClusterUnfriendThenSendAcrossNodes(t *testing.T) {
	if etcdtest.WithoutRace(t) {
		return
	}
	nodes := startCluster(t, 3)
	for round := range 6 {
		ann, bob := nodes[0].newAccount(fmt.Sprintf("ua%d", round)), nodes[0].newAccount(fmt.Sprintf("ub%d", round))
		ann1, _ := nodes[0].connect(ann, 2) // deletes, on node 1
		ann2, _ := nodes[1].connect(ann, 2) // sends, on node 2
		bob3, _ := nodes[2].connect(bob, 2)
		befriend(t, ann1, ann, bob3, bob)
		dm := chatID(ann, bob)
		sendEcho(t, ann2, dm, "while friends") // the room is loaded, friends
		drain(ann1)
		require.Equal(t, "ok", call(t, ann1, "mutual_users", map[string]string{"type": "delete", "name": bob.Name}).Type)
		requireError(t, call(t, ann2, "chat", map[string]string{"type": "send", "chat_id": dm, "content": "after the delete"}), 4005, "Not a mutual user.")
		requireError(t, call(t, bob3, "chat", map[string]string{"type": "send", "chat_id": dm, "content": "after the delete"}), 4005, "Not a mutual user.")
	}
}
