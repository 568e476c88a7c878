package etcdtest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// ChildTimeout bounds the child `go test` of WithoutRace.
const ChildTimeout = 5 * time.Minute

// WithoutRace runs t without the race detector. protoactor-go's cluster, at
// the version REWIND pins, has data races of its own that -race reports in
// any test that runs it (see the cluster package's doc), so such a test
// starts with
//
//	if etcdtest.WithoutRace(t) {
//		return
//	}
//
// In a binary built with -race, WithoutRace runs t's test again in a child
// `go test` of the same package built without it, logs the child's output,
// fails t if the child failed, skips it if the child skipped, and returns
// true. In a binary without -race it does nothing and returns false: the
// test goes on. A test run by WithoutRace must be a top-level test.
func WithoutRace(t *testing.T) bool {
	t.Helper()
	if !raceEnabled {
		return false
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("etcdtest: %s runs without the race detector in a child `go test`, and there is no go command: %v", t.Name(), err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), ChildTimeout)
	defer cancel()
	// go test runs a test binary in its package's directory: "." is
	// this package.
	cmd := exec.CommandContext(ctx, gobin, "test", "-count=1", "-v", "-timeout", ChildTimeout.String(), "-run", "^"+t.Name()+"$", ".")
	cmd.Env = childEnv()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	output := strings.TrimRight(string(out), "\n")
	switch {
	case err != nil:
		t.Fatalf("%s without the race detector (child go test, %v): %v\n%s", t.Name(), time.Since(start).Round(time.Millisecond), err, output)
	case strings.Contains(output, "--- SKIP: "+t.Name()+" "):
		t.Skipf("%s without the race detector: skipped\n%s", t.Name(), output)
	case !strings.Contains(output, "--- PASS: "+t.Name()+" "):
		t.Fatalf("%s without the race detector: the child ran no such test\n%s", t.Name(), output)
	}
	t.Logf("ran without the race detector (child go test, %v):\n%s", time.Since(start).Round(time.Millisecond), output)
	return true
}

// childEnv is this process's environment with -race taken out of GOFLAGS.
func childEnv() []string {
	env := os.Environ()
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GOFLAGS="); ok {
			var keep []string
			for _, f := range strings.Fields(v) {
				if f != "-race" && f != "-race=true" {
					keep = append(keep, f)
				}
			}
			env[i] = "GOFLAGS=" + strings.Join(keep, " ")
		}
	}
	return env
}
