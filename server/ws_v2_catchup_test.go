package server_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// v1Payload is a v2 chat frame's payload as version 1 shows it: without
// seq (which it must have) and edit_seq (protocol.md §2.9, §4.1).
func v1Payload(t *testing.T, raw json.RawMessage) map[string]any {
	t.Helper()
	p := payloadOf(t, raw)
	require.Contains(t, p, "seq", "a v2 chat object carries its seq: %s", raw)
	delete(p, "seq")
	delete(p, "edit_seq")
	return p
}
