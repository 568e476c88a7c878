// Package certs serves the TLS certificate named by REWIND_TLS_CERT and
// REWIND_TLS_KEY (protocol.md §1, "Registration hardening") and reads the
// files again when they change, so that a renewed certificate is served
// without a restart.
//
// A handshake looks at the files (two stats) at most once per CheckEvery;
// when their modification time, size or identity changed it loads them,
// and new handshakes get the new certificate. A pair that does not load (a
// renewal half written, a key that does not match) is logged and the last
// good certificate stays; it is tried again when the files change again.
package certs

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Config of a Reloader.
type Config struct {
	CertFile string // PEM certificate chain, leaf first
	KeyFile  string // PEM private key
	// CheckEvery is how often at most a handshake looks at the files;
	// default 2s.
	CheckEvery time.Duration
	// Logger receives reloads (info) and failed reloads (warn).
	Logger zerolog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Reloader holds the current certificate. Its GetCertificate goes into a
// tls.Config.
type Reloader struct {
	cfg  Config
	cert atomic.Pointer[tls.Certificate]
	next atomic.Int64 // Unix nanoseconds: no look at the files before

	mu   sync.Mutex // held by the handshake that looks at the files
	seen files      // as they were when last loaded, well or not
}

// files is what tells that the files changed.
type files struct{ cert, key os.FileInfo }

func (f files) same(g files) bool {
	return f.cert != nil && g.cert != nil && sameFile(f.cert, g.cert) && sameFile(f.key, g.key)
}

// sameFile: a renewal either rewrites a file (time, size) or puts another
// in its place (a rename, a symbolic link moved as certbot does).
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// New loads the pair; an error means there is no certificate to serve.
func New(cfg Config) (*Reloader, error) {
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Reloader{cfg: cfg}
	f, err := r.stat()
	if err != nil {
		return nil, err
	}
	cert, err := Load(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	r.cert.Store(cert)
	r.seen = f
	r.next.Store(cfg.Now().Add(cfg.CheckEvery).UnixNano())
	return r, nil
}

// Load reads a certificate and its key from PEM files.
func Load(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s, key %s: %w", certFile, keyFile, err)
	}
	return &cert, nil
}

func (r *Reloader) stat() (files, error) {
	c, err := os.Stat(r.cfg.CertFile)
	if err != nil {
		return files{}, err
	}
	k, err := os.Stat(r.cfg.KeyFile)
	if err != nil {
		return files{}, err
	}
	return files{cert: c, key: k}, nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate,
// after a look at the files when one is due.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := r.cfg.Now()
	// Handshakes arriving while one looks go on with the current
	// certificate rather than queue behind the file system.
	if now.UnixNano() >= r.next.Load() && r.mu.TryLock() {
		r.next.Store(now.Add(r.cfg.CheckEvery).UnixNano())
		r.reload()
		r.mu.Unlock()
	}
	return r.cert.Load(), nil
}

// reload loads the files if they changed since last seen. Lock must be held.
func (r *Reloader) reload() {
	f, err := r.stat()
	if err != nil {
		// A renewal may be replacing them right now: look again next time.
		r.cfg.Logger.Warn().Err(err).Msg("TLS certificate files unreadable; serving the last good certificate")
		return
	}
	if f.same(r.seen) {
		return
	}
	// Stat before the read: a change while we read shows next time.
	r.seen = f
	cert, err := Load(r.cfg.CertFile, r.cfg.KeyFile)
	if err != nil {
		r.cfg.Logger.Warn().Err(err).Msg("TLS certificate reload failed; serving the last good certificate")
		return
	}
	r.cert.Store(cert)
	ev := r.cfg.Logger.Info()
	if cert.Leaf != nil {
		ev = ev.Str("serial", cert.Leaf.SerialNumber.String()).Time("not_after", cert.Leaf.NotAfter)
	}
	ev.Msg("TLS certificate reloaded")
}
