package certs_test

import (
	"crypto/tls"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/logtest"
	"github.com/rewind-chat/rewind/net/certs"
	"github.com/rewind-chat/rewind/net/certs/certstest"
)

// clock is a time source the test moves.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

const every = 2 * time.Second

// start serves pair from fresh files.
func start(t *testing.T, pair certstest.Pair) (r *certs.Reloader, certFile, keyFile string, clk *clock, log *logtest.Buffer) {
	t.Helper()
	certFile, keyFile = pair.Files(t)
	clk, log = &clock{}, &logtest.Buffer{}
	r, err := certs.New(certs.Config{
		CertFile: certFile, KeyFile: keyFile, CheckEvery: every,
		Logger: zerolog.New(log), Now: clk.now,
	})
	require.NoError(t, err)
	return r, certFile, keyFile, clk, log
}

// serial is the serial number of the certificate r serves now.
func serial(t *testing.T, r *certs.Reloader) string {
	t.Helper()
	c, err := r.GetCertificate(&tls.ClientHelloInfo{})
	require.NoError(t, err)
	require.NotNil(t, c.Leaf)
	return c.Leaf.SerialNumber.String()
}

func TestReloadsChangedFiles(t *testing.T) {
	a, b := certstest.New(t), certstest.New(t)
	r, certFile, keyFile, clk, log := start(t, a)
	require.Equal(t, a.Cert.SerialNumber.String(), serial(t, r))

	b.Write(t, certFile, keyFile)
	require.Equal(t, a.Cert.SerialNumber.String(), serial(t, r), "the files are looked at once per CheckEvery")
	clk.advance(every)
	require.Equal(t, b.Cert.SerialNumber.String(), serial(t, r))
	require.Contains(t, log.String(), "TLS certificate reloaded")
	require.Contains(t, log.String(), b.Cert.SerialNumber.String())

	// The first pair back, in files of the same size: a renewal's rename
	// is seen all the same.
	clk.advance(every)
	a.Write(t, certFile, keyFile)
	clk.advance(every)
	require.Equal(t, a.Cert.SerialNumber.String(), serial(t, r))
}

func TestBrokenReplacementKeepsTheLastGoodCertificate(t *testing.T) {
	a, b := certstest.New(t), certstest.New(t)
	r, certFile, keyFile, clk, log := start(t, a)
	want := a.Cert.SerialNumber.String()

	certstest.WriteFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"))
	clk.advance(every)
	require.Equal(t, want, serial(t, r))
	require.Contains(t, log.String(), "TLS certificate reload failed")

	// Half a renewal: the new certificate beside the old key.
	certstest.WriteFile(t, certFile, b.CertPEM)
	clk.advance(every)
	require.Equal(t, want, serial(t, r))
	require.Contains(t, log.String(), "private key does not match public key")

	// The other half: now the pair matches.
	certstest.WriteFile(t, keyFile, b.KeyPEM)
	clk.advance(every)
	require.Equal(t, b.Cert.SerialNumber.String(), serial(t, r))

	require.NoError(t, os.Remove(keyFile))
	clk.advance(every)
	require.Equal(t, b.Cert.SerialNumber.String(), serial(t, r), "a missing file keeps it too")
	require.Contains(t, log.String(), "TLS certificate files unreadable")
	a.Write(t, certFile, keyFile)
	clk.advance(every)
	require.Equal(t, want, serial(t, r))
}

func TestNewRefusesFilesThatDoNotLoad(t *testing.T) {
	a, b := certstest.New(t), certstest.New(t)
	certFile, keyFile := a.Files(t)
	_, otherKey := b.Files(t)
	for name, c := range map[string]certs.Config{
		"missing certificate": {CertFile: certFile + ".none", KeyFile: keyFile},
		"missing key":         {CertFile: certFile, KeyFile: keyFile + ".none"},
		"key of another":      {CertFile: certFile, KeyFile: otherKey},
		"key as certificate":  {CertFile: keyFile, KeyFile: keyFile},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := certs.New(c)
			require.Error(t, err)
		})
	}
}

// Real handshakes, many at once, while the files change: each gets one
// whole certificate, and once the change is seen, the new one.
func TestHandshakesWhileTheFilesChange(t *testing.T) {
	a, b := certstest.New(t), certstest.New(t)
	r, certFile, keyFile, clk, _ := start(t, a)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12})
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	pool := a.Pool()
	pool.AddCert(b.Cert)
	handshake := func() (string, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
			&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 8 {
		wg.Go(func() {
			for range 8 {
				if _, err := handshake(); err != nil {
					errs <- err
				}
				clk.advance(every)
			}
		})
	}
	b.Write(t, certFile, keyFile)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	clk.advance(every)
	got, err := handshake()
	require.NoError(t, err)
	require.Equal(t, b.Cert.SerialNumber.String(), got)
}
