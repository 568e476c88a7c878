package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLinksNoServer guards what package load's doc says: the harness
// measures the server from outside and links none of it.
func TestLinksNoServer(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("go list -deps: %v\n%s", err, exit.Stderr)
	}
	require.NoError(t, err)
	for _, pkg := range strings.Fields(string(out)) {
		path, ok := strings.CutPrefix(pkg, "github.com/rewind-chat/rewind/")
		if !ok {
			continue
		}
		server := path == "server" || path == "net/gateway" || path == "net/httpapi" || strings.HasPrefix(path, "actors/")
		require.False(t, server, "rewind-load links %s", pkg)
	}
}
