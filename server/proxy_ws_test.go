package server_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/net/clientaddr"
	"github.com/rewind-chat/rewind/server"
)

// upgradeFrom opens /ws with the X-Forwarded-For header xff (none when
// empty), as a reverse proxy forwards an upgrade, and leaves the
// connection open and unauthenticated.
func upgradeFrom(t *testing.T, n *node, xff string) error {
	t.Helper()
	d := ws.Dialer{}
	if xff != "" {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"X-Forwarded-For": {xff}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, _, _, err := d.Dial(ctx, "ws://"+n.srv.Addr()+"/ws")
	if err == nil {
		t.Cleanup(func() { conn.Close() })
	}
	return err
}

var errTooMany = ws.StatusError(http.StatusTooManyRequests)

// Behind a trusted proxy every client has its own bucket of
// REWIND_WS_MAX_UNAUTHENTICATED_PER_IP, named by X-Forwarded-For the way
// the HTTP limits read it (TestTrustedProxiesNameTheClient).
func TestTrustedProxyNamesTheWebSocketClient(t *testing.T) {
	proxies, err := clientaddr.ParseProxies("127.0.0.0/8")
	require.NoError(t, err)
	n := startNode(t, sqliteURL(t), func(c *server.Config) {
		c.TrustedProxies = proxies
		c.Gateway.MaxUnauthenticatedPerIP = 1
	})
	require.NoError(t, upgradeFrom(t, n, "203.0.113.1"))
	require.NoError(t, upgradeFrom(t, n, "203.0.113.2"), "another client behind the same proxy has its own bucket")
	require.Equal(t, errTooMany, upgradeFrom(t, n, "203.0.113.1"))
	require.Equal(t, errTooMany, upgradeFrom(t, n, "198.51.100.7, 203.0.113.1"), "a spoofed left part is not the client")
	require.Equal(t, errTooMany, upgradeFrom(t, n, "203.0.113.2, 127.0.0.9"), "trusted hops are skipped")
	require.NoError(t, upgradeFrom(t, n, "2001:db8:1::1"))
	require.Equal(t, errTooMany, upgradeFrom(t, n, "2001:db8:1::2"), "an IPv6 client is counted by its /64")
	require.NoError(t, upgradeFrom(t, n, ""), "the proxy itself")
	require.Equal(t, errTooMany, upgradeFrom(t, n, ""))
}

// From a peer that is not a trusted proxy, X-Forwarded-For is ignored:
// whatever it claims, every upgrade is the peer's and shares its bucket.
func TestUntrustedPeerCannotNameAnotherWebSocketClient(t *testing.T) {
	elsewhere, err := clientaddr.ParseProxies("10.0.0.0/8")
	require.NoError(t, err)
	for name, proxies := range map[string]clientaddr.Proxies{"no proxies": nil, "other proxies": elsewhere} {
		t.Run(name, func(t *testing.T) {
			n := startNode(t, sqliteURL(t), func(c *server.Config) {
				c.TrustedProxies = proxies
				c.Gateway.MaxUnauthenticatedPerIP = 1
			})
			require.NoError(t, upgradeFrom(t, n, "203.0.113.1"))
			require.Equal(t, errTooMany, upgradeFrom(t, n, "203.0.113.2"))
			require.Equal(t, errTooMany, upgradeFrom(t, n, "10.0.0.1"), "naming a trusted proxy does not help")
			require.Equal(t, errTooMany, upgradeFrom(t, n, ""))
		})
	}
}
