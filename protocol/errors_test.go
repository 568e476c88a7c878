package protocol_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/net/gateway"
	"github.com/rewind-chat/rewind/protocol"
)

// The gateway closes a connection whose write timed out with its own copy
// of the slow-consumer close (it knows no chat protocol); it must be the
// one a session closes with when its queue overflows (protocol.md §2.1).
func TestGatewaySlowConsumerIsCloseSlow(t *testing.T) {
	require.Equal(t, protocol.CloseSlow, gateway.CloseSlowConsumer)
	require.Equal(t, protocol.ReasonSlow, gateway.SlowConsumerReason)
}
