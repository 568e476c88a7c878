package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/net/certs/certstest"
	"github.com/rewind-chat/rewind/net/client"
	"github.com/rewind-chat/rewind/persistence"
	"github.com/rewind-chat/rewind/server"
)

// startTLSNode starts a node serving pair from files it returns.
func startTLSNode(t *testing.T, pair certstest.Pair) (n *node, certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = pair.Files(t)
	n = startNode(t, sqliteURL(t), func(c *server.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	return n, certFile, keyFile
}

// httpsGet gets path over HTTPS, trusting pool; the client offers HTTP/2.
func httpsGet(t *testing.T, n *node, pool *x509.CertPool, path string) *http.Response {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	t.Cleanup(c.CloseIdleConnections)
	res, err := c.Get("https://" + n.srv.Addr() + path)
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, res.Body)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	return res
}

// servedSerial does a fresh handshake and returns the serial number of the
// certificate the node served.
func servedSerial(n *node, pool *x509.CertPool) (string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", n.srv.Addr(), &tls.Config{RootCAs: pool})
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// wssConn is a WebSocket over TLS. net/client dials with the system's
// roots only, so these tests speak the frames themselves.
type wssConn struct {
	t    *testing.T
	conn net.Conn
	rw   io.ReadWriter // reads from the handshake's buffer first; answers pings
}

func dialWSS(t *testing.T, n *node, pool *x509.CertPool) *wssConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, br, _, err := ws.Dialer{TLSConfig: &tls.Config{RootCAs: pool}}.Dial(ctx, "wss://"+n.srv.Addr()+"/ws")
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	var r io.Reader = conn
	if br != nil {
		r = br
	}
	_, isTLS := conn.(*tls.Conn)
	require.True(t, isTLS)
	return &wssConn{t: t, conn: conn, rw: struct {
		io.Reader
		io.Writer
	}{bufio.NewReader(r), conn}}
}

func (c *wssConn) send(typ string, payload any, nonce string) {
	c.t.Helper()
	b, err := json.Marshal(map[string]any{"type": typ, "payload": payload, "nonce": nonce})
	require.NoError(c.t, err)
	require.NoError(c.t, wsutil.WriteClientMessage(c.conn, ws.OpText, b))
}

func (c *wssConn) next() client.Frame {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(wait)))
	data, err := wsutil.ReadServerText(c.rw)
	require.NoError(c.t, err)
	var f client.Frame
	require.NoError(c.t, json.Unmarshal(data, &f), "%s", data)
	return f
}

// login heartbeats and authenticates as a.
func (c *wssConn) login(a account) {
	c.t.Helper()
	c.send("heartbeat", map[string]int{"count": 0}, "")
	require.Equal(c.t, "heartbeat", c.next().Type)
	c.send("auth", map[string]string{"auth": a.Token}, "")
	f := c.next()
	require.Equal(c.t, "auth", f.Type, string(f.Payload))
}

// makeFriends stores a friendship of a and b, as accepting a request does.
func makeFriends(t *testing.T, n *node, a, b account) {
	t.Helper()
	ctx := context.Background()
	_, err := n.srv.Store().RequestFriend(ctx, a.ID, b.ID, time.Now())
	require.NoError(t, err)
	r, err := n.srv.Store().RequestFriend(ctx, b.ID, a.ID, time.Now())
	require.NoError(t, err)
	require.Equal(t, persistence.FriendAccepted, r)
}

// With REWIND_TLS_CERT and REWIND_TLS_KEY one listener serves HTTPS and
// WSS: TLS 1.2 or later, HTTP/1.1 (an HTTP/2 stream cannot be hijacked for
// /ws), and the default public URL is https.
func TestTLSServesHTTPSAndWSS(t *testing.T) {
	pair := certstest.New(t)
	n, _, _ := startTLSNode(t, pair)
	pool := pair.Pool()

	res := httpsGet(t, n, pool, "/healthz")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "HTTP/1.1", res.Proto, "h2 was offered and declined")
	require.GreaterOrEqual(t, res.TLS.Version, uint16(tls.VersionTLS12))
	port := n.srv.Addr()[len("127.0.0.1:"):]
	require.Contains(t, n.log.String(), fmt.Sprintf(`"public_url":"https://localhost:%s"`, port))

	_, err := tls.DialWithDialer(&net.Dialer{Timeout: wait}, "tcp", n.srv.Addr(),
		&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	require.Error(t, err, "TLS 1.1 is refused")
	require.Eventually(t, func() bool {
		return regexp.MustCompile(`{"level":"debug",[^}]*"message":"http: TLS handshake error`).MatchString(n.log.String())
	}, wait, 10*time.Millisecond, "failed handshakes are logged, as debug: a public port sees them all day")
	plain, err := http.Get("http://" + n.srv.Addr() + "/healthz")
	require.NoError(t, err)
	plain.Body.Close()
	require.Equal(t, http.StatusBadRequest, plain.StatusCode, "plain HTTP on the TLS port")

	alice, bob := n.newAccount("tls-alice"), n.newAccount("tls-bob")
	makeFriends(t, n, alice, bob)
	ca, cb := dialWSS(t, n, pool), dialWSS(t, n, pool)
	ca.login(alice)
	cb.login(bob)
	ca.send("chat", map[string]string{"type": "send", "chat_id": chatID(alice, bob), "content": "over TLS"}, "n1")
	echo := ca.next()
	require.Equal(t, "chat", echo.Type, string(echo.Payload))
	require.Equal(t, "n1", echo.Nonce)
	pushed := cb.next()
	require.Equal(t, "chat", pushed.Type)
	require.Equal(t, chatOf(t, echo), chatOf(t, pushed))
	require.Equal(t, "over TLS", chatOf(t, pushed).Content)
	// Read by their serving goroutines (the poller cannot watch a TLS
	// socket): both keep answering.
	cb.send("heartbeat", 1, "")
	require.Equal(t, "heartbeat", cb.next().Type)
}

// Renewed certificate files are served to new handshakes without a
// restart, while open sessions go on; a broken replacement keeps the last
// good certificate.
func TestTLSCertificateRenewalWithoutRestart(t *testing.T) {
	first, second := certstest.New(t), certstest.New(t)
	n, certFile, keyFile := startTLSNode(t, first)
	pool := first.Pool()
	pool.AddCert(second.Cert)
	serial, err := servedSerial(n, pool)
	require.NoError(t, err)
	require.Equal(t, first.Cert.SerialNumber.String(), serial)
	alice := n.newAccount("renewal")
	open := dialWSS(t, n, pool)
	open.login(alice)

	second.Write(t, certFile, keyFile)
	require.Eventually(t, func() bool {
		serial, err := servedSerial(n, pool)
		return err == nil && serial == second.Cert.SerialNumber.String()
	}, wait, 50*time.Millisecond, "new handshakes get the renewed certificate")
	require.Contains(t, n.log.String(), "TLS certificate reloaded")
	open.send("heartbeat", 2, "")
	require.Equal(t, "heartbeat", open.next().Type, "a session opened before the renewal goes on")

	certstest.WriteFile(t, certFile, []byte("not a certificate"))
	require.Eventually(t, func() bool {
		_, err := servedSerial(n, pool)
		return err == nil && strings.Contains(n.log.String(), "TLS certificate reload failed")
	}, wait, 50*time.Millisecond, "the broken files are looked at")
	serial, err = servedSerial(n, pool)
	require.NoError(t, err)
	require.Equal(t, second.Cert.SerialNumber.String(), serial, "the last good certificate stays")
	require.Equal(t, http.StatusOK, httpsGet(t, n, pool, "/healthz").StatusCode)
}

// TLS takes both files, and files that load; the node does not start
// otherwise.
func TestTLSNeedsALoadableCertificateAndKey(t *testing.T) {
	pair := certstest.New(t)
	certFile, keyFile := pair.Files(t)
	for name, c := range map[string]struct{ cert, key, want string }{
		"certificate alone": {certFile, "", "both REWIND_TLS_CERT and REWIND_TLS_KEY"},
		"key alone":         {"", keyFile, "both REWIND_TLS_CERT and REWIND_TLS_KEY"},
		"key as both":       {keyFile, keyFile, "failed to find certificate PEM data"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := server.Start(context.Background(), server.Config{
				Addr: "127.0.0.1:0", DatabaseURL: sqliteURL(t), TLSCert: c.cert, TLSKey: c.key,
			})
			require.ErrorContains(t, err, c.want)
		})
	}
}
