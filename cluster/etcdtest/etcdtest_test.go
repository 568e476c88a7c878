package etcdtest_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/cluster/etcdtest"
)

// TestEtcdAvailable reports on one line whether this run has the etcd the
// cluster tests need; the Makefile can show it.
func TestEtcdAvailable(t *testing.T) {
	v, err := etcdtest.Available()
	switch {
	case err == nil:
		fmt.Printf("etcd: ran the cluster tests with %s %s\n", etcdtest.Binary(), v)
	case etcdtest.Required():
		fmt.Printf("etcd: REQUIRED (CI=true or REWIND_REQUIRE_ETCD=1) but %s cannot run: %v\n", etcdtest.Binary(), err)
		t.FailNow()
	default:
		fmt.Printf("etcd: SKIPPED the cluster tests (%s cannot run: %v; apt-get install etcd-server)\n", etcdtest.Binary(), err)
	}
}

// TestStartAnswersAndStopLeavesNothing: Start returns a healthy member,
// and Stop leaves no process behind.
func TestStartAnswersAndStopLeavesNothing(t *testing.T) {
	e := etcdtest.Start(t)
	resp, err := http.Get(e.Endpoint + "/health")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	pid := e.PID()
	e.Stop()
	// Reaped: no such process (and no zombie) any more.
	require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH)
	_, err = http.Get(e.Endpoint + "/health")
	require.Error(t, err)
}

// TestMissingBinarySkipsOrFails runs Start with REWIND_ETCD pointing at
// nothing in a child test binary, and checks that it skips, or fails when
// CI=true.
func TestMissingBinarySkipsOrFails(t *testing.T) {
	if os.Getenv("ETCDTEST_CHILD") == "1" {
		etcdtest.Start(t)
		t.Fatal("Start returned without etcd")
	}
	for _, tc := range []struct {
		name, ci string
		fails    bool
	}{{"local", "", false}, {"ci", "true", true}} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := childTest(t, "TestMissingBinarySkipsOrFails",
				"ETCDTEST_CHILD=1", "REWIND_ETCD=/nonexistent/etcd", "CI="+tc.ci, "REWIND_REQUIRE_ETCD=")
			if tc.fails {
				require.Error(t, err, "%s", out)
				require.Contains(t, out, "requires them")
			} else {
				require.NoError(t, err, "%s", out)
				require.Contains(t, out, "SKIP")
				require.Contains(t, out, "apt-get install etcd-server")
			}
		})
	}
}

// childTest runs one test of this binary in a child process with env
// added, and returns its output.
func childTest(t *testing.T, name string, env ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
