// Package etcdtest is the support of the cluster tests. Start runs a real
// etcd for a test: one member on free loopback ports with its data in a
// temporary directory, answering within StartTimeout, stopped (its process
// group killed, and reaped) when the test ends. WithoutRace runs a test
// that starts protoactor's cluster without the race detector.
//
// The binary is Debian's etcd-server, /usr/bin/etcd (REWIND_ETCD names
// another). Without it tests skip, unless CI=true or REWIND_REQUIRE_ETCD=1
// (as .ci/run sets) makes them fail instead. TestEtcdAvailable prints one
// line saying which, for the Makefile to show.
package etcdtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultBinary is where Debian's etcd-server package installs etcd.
const DefaultBinary = "/usr/bin/etcd"

// StartTimeout bounds how long Start waits for etcd to answer.
const StartTimeout = 20 * time.Second

// Binary is the etcd that Start runs: $REWIND_ETCD, or DefaultBinary.
func Binary() string {
	if b := os.Getenv("REWIND_ETCD"); b != "" {
		return b
	}
	return DefaultBinary
}

// Required reports whether tests must fail rather than skip without etcd:
// CI=true or REWIND_REQUIRE_ETCD=1.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("REWIND_REQUIRE_ETCD") == "1"
}

// version runs the binary once per test binary.
var version = sync.OnceValues(func() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, Binary(), "--version").Output()
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(out)) {
		if v, ok := strings.CutPrefix(line, "etcd Version: "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no version in %q", out)
})

// Available returns the binary's version, or why it cannot be run.
func Available() (string, error) { return version() }

// Etcd is a running etcd member.
type Etcd struct {
	// Endpoint is its client URL, http://127.0.0.1:<port>.
	Endpoint string
	// Version is the binary's version, e.g. 3.4.23.
	Version string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been waited for
	log  string        // its log file
}

// Endpoints is the one endpoint as a client configuration wants it.
func (e *Etcd) Endpoints() []string { return []string{e.Endpoint} }

// Start runs an etcd for t and returns once it answers /health, within
// StartTimeout. It skips t when the binary is missing (fails it when
// Required). t's cleanup kills etcd's process group and waits for it.
func Start(t testing.TB) *Etcd {
	t.Helper()
	v, err := Available()
	if err != nil {
		reason := fmt.Sprintf("etcd %s cannot run (%v): the cluster tests need Debian's etcd-server (apt-get install etcd-server)", Binary(), err)
		if Required() {
			t.Fatalf("%s; CI=true or REWIND_REQUIRE_ETCD=1 requires them", reason)
		}
		t.Skipf("%s; skipped (CI=true or REWIND_REQUIRE_ETCD=1 fails instead)", reason)
	}
	deadline := time.Now().Add(StartTimeout)
	// Two free ports are found by listening and closing; another process
	// may take one before etcd binds it, so a start that fails early is
	// tried again with new ports.
	for attempt := 1; ; attempt++ {
		e, early, err := start(t, v, deadline)
		if err == nil {
			return e
		}
		if !early || attempt == 3 || time.Now().After(deadline) {
			t.Fatalf("etcdtest: %v", err)
		}
		t.Logf("etcdtest: attempt %d: %v; trying new ports", attempt, err)
	}
}

// start makes one attempt; early reports that etcd exited by itself (a
// port taken, most likely) rather than not answering in time.
func start(t testing.TB, version string, deadline time.Time) (_ *Etcd, early bool, _ error) {
	ports, err := FreePorts(2)
	if err != nil {
		return nil, false, err
	}
	dir, err := os.MkdirTemp("", "rewind-etcd-")
	if err != nil {
		return nil, false, err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	logPath := filepath.Join(dir, "etcd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, false, err
	}
	cmd := exec.Command(Binary(),
		"--name", "test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test="+peer,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", filepath.Base(dir),
		// A single member elects itself after one election timeout; a
		// shorter one starts it faster. The shortest lease etcd grants
		// follows from these (1.5 election timeouts, here 0.75 s).
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so that cleanup kills whatever it started;
	// and killed with the test binary should that die first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(dir)
		return nil, false, err
	}
	logFile.Close() // the child has its own descriptor
	e := &Etcd{Endpoint: client, Version: version, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); close(e.done) }()
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("etcd log (%s):\n%s", logPath, tail(logPath, 4096))
		}
		os.RemoveAll(dir)
	})

	hc := &http.Client{Timeout: time.Second}
	for {
		if ok, _ := healthy(hc, client); ok {
			return e, false, nil
		}
		select {
		case <-e.done:
			e.stop()
			return nil, true, fmt.Errorf("etcd exited while starting (%v); its log:\n%s", cmd.ProcessState, tail(logPath, 2048))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			e.stop()
			return nil, false, fmt.Errorf("etcd at %s did not answer within %v; its log:\n%s", client, StartTimeout, tail(logPath, 2048))
		}
	}
}

// healthy asks etcd's /health, which answers {"health":"true"} once the
// member has a leader.
func healthy(hc *http.Client, endpoint string) (bool, error) {
	resp, err := hc.Get(endpoint + "/health")
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return false, err
	}
	return resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(`"health":"true"`)), nil
}

// PID is etcd's process id (and its process group's).
func (e *Etcd) PID() int { return e.cmd.Process.Pid }

// Stop ends etcd now (tests of a lost etcd use it); cleanup does it anyway.
func (e *Etcd) Stop() { e.stop() }

// stop kills the process group, SIGTERM first, SIGKILL after 5 s, and
// waits for etcd to be reaped. Calling it again does nothing.
func (e *Etcd) stop() {
	select {
	case <-e.done:
		return
	default:
	}
	pgid := e.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-e.done
	}
	// Not signalled again once reaped: the group id could be reused.
}

// FreePorts returns n loopback ports that were free a moment ago (etcd's
// and, in clustertest, each node's).
func FreePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// tail returns the last max bytes of the file at path.
func tail(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
