package clustertest_test

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/clustertest"
)

func TestMain(m *testing.M) { os.Exit(clustertest.Main(m)) }

// TestHarness: nodes start on the shared database and answer /readyz; a
// DM sent on one is stored once (a retry with its nonce too) and
// readable from the other; a node sent SIGTERM closes its sessions with
// 1001 and exits 0, one killed with SIGKILL is reaped at once, and
// neither leaves a process behind.
func TestHarness(t *testing.T) {
	c := clustertest.New(t)
	nodes := c.StartNodes(1, 2)
	for _, n := range nodes {
		t.Logf("%s ready %v after its start", n, n.ReadyAfter.Round(time.Millisecond))
	}
	users := c.NewAccounts("h", 2)
	c.Befriend(users[0], users[1])

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	a, err := clustertest.Connect(ctx, nodes[0], users[0], 2)
	require.NoError(t, err)
	defer a.Close()
	b, err := clustertest.Connect(ctx, nodes[1], users[1], 2)
	require.NoError(t, err)
	defer b.Close()
	chat := clustertest.ChatID(users[0], users[1])
	sent := time.Now()
	echo, err := a.Send(ctx, chat, "hello", "h-1")
	require.NoError(t, err)
	t.Logf("first send echoed after %v", time.Since(sent).Round(time.Millisecond))
	again, err := a.Send(ctx, chat, "hello", "h-1")
	require.NoError(t, err)
	require.Equal(t, echo.ID, again.ID, "a retry with the same nonce answers the stored message")

	history, err := b.History(ctx, chat)
	require.NoError(t, err)
	require.Len(t, history, 1)
	require.Equal(t, echo.ID, history[0].ID)
	stored, err := c.Stored(ctx, users[0].ID, users[1].ID)
	require.NoError(t, err)
	require.Len(t, stored, 1)

	pid := nodes[0].PID()
	term := time.Now()
	nodes[0].Signal(syscall.SIGTERM)
	code, err := nodes[0].WaitExit(clustertest.StopTimeout)
	require.NoError(t, err)
	t.Logf("%s exited %d %v after SIGTERM", nodes[0], code, time.Since(term).Round(time.Millisecond))
	require.Equal(t, 0, code, "SIGTERM: exit 0")
	require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH)
	select {
	case <-a.Gone():
	case <-time.After(10 * time.Second):
		t.Fatal("the stopped node's session did not end")
	}
	require.Equal(t, 1001, a.CloseCode(), "SIGTERM closes sessions with 1001")
	pid = nodes[1].PID()
	nodes[1].Kill()
	require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "killed and reaped")
	select {
	case <-b.Gone():
	case <-time.After(10 * time.Second):
		t.Fatal("the killed node's session did not end")
	}
	require.True(t, b.ClosedByServer())

	require.Empty(t, c.Live())
}
