package mailer

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	netmail "net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/rewind-chat/rewind/logtest"
)

const (
	// Long enough that quoted-printable folds the link across lines.
	testKey      = "k3y0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
	testLink     = "https://rewind.example/verify?key=" + testKey
	testUser     = "mailer@rewind.example"
	testPassword = "pa55-w0rd-secret"
	waitFor      = 10 * time.Second
)

var alice = Verification{To: "alice@example.com", Name: "Alice", Link: testLink}

// received is one mail as the test server got it.
type received struct {
	From string
	To   []string
	Data []byte
	TLS  bool   // the session was encrypted when MAIL FROM came
	User string // the authenticated user, "" without AUTH
}

// testServer is a real SMTP server (go-smtp) that records what reaches it.
type testServer struct {
	user, pass string                  // when set, MAIL FROM requires AUTH PLAIN with these
	rejectRcpt func(attempt int) error // answers RCPT TO in the given attempt (1-based); nil accepts

	mu       sync.Mutex
	auths    int // AUTH commands
	attempts int // MAIL FROM commands
	mails    []received
}

func (ts *testServer) counts() (auths, attempts int, mails []received) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.auths, ts.attempts, append([]received(nil), ts.mails...)
}

// start listens on a free loopback port and returns its address.
func (ts *testServer) start(t *testing.T, mode TLSMode, cert tls.Certificate) *net.TCPAddr {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ts.serve(t, l, mode, cert)
	return l.Addr().(*net.TCPAddr)
}

func (ts *testServer) serve(t *testing.T, l net.Listener, mode TLSMode, cert tls.Certificate) {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{srv: ts, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}}
	switch mode {
	case TLSImplicit:
		l = tls.NewListener(l, tlsConfig)
	case TLSStartTLS:
		srv.TLSConfig = tlsConfig
	case TLSNone:
		srv.AllowInsecureAuth = true // loopback only; go-mail allows PLAIN there too
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

type session struct {
	srv  *testServer
	conn *smtp.Conn
	user string
	mail received
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		s.srv.mu.Lock()
		s.srv.auths++
		s.srv.mu.Unlock()
		if user != s.srv.user || pass != s.srv.pass {
			return smtp.ErrAuthFailed
		}
		s.user = user
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.srv.mu.Lock()
	s.srv.attempts++
	s.srv.mu.Unlock()
	if s.srv.user != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.mail = received{From: from, TLS: isTLS, User: s.user}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.srv.rejectRcpt != nil {
		s.srv.mu.Lock()
		attempt := s.srv.attempts
		s.srv.mu.Unlock()
		if err := s.srv.rejectRcpt(attempt); err != nil {
			return err
		}
	}
	s.mail.To = append(s.mail.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mail.Data = data
	s.srv.mu.Lock()
	s.srv.mails = append(s.srv.mails, s.mail)
	s.srv.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.mail = received{} }
func (s *session) Logout() error { return nil }

// selfSigned makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "rewind test smtp"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	require.NoError(t, err)
	parsed, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(parsed)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: parsed}, pool
}

// harness runs one mailer in its own actor system.
type harness struct {
	root     *actor.RootContext
	pid      *actor.PID
	outcomes chan Outcome
	logs     *logtest.Buffer
}

// startMailer spawns a mailer with cfg plus a captured log and outcome
// channel. At cleanup it stops the mailer and, when SMTP is configured,
// checks that neither the link's key nor the password reached the log.
func startMailer(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{outcomes: make(chan Outcome, 64), logs: &logtest.Buffer{}}
	cfg.Logger = zerolog.New(h.logs)
	cfg.OnOutcome = func(o Outcome) { h.outcomes <- o }
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	h.root = system.Root
	pid, err := Spawn(system.Root, cfg)
	require.NoError(t, err)
	h.pid = pid
	t.Cleanup(func() {
		require.NoError(t, Stop(h.root, h.pid, waitFor)) // a stopped actor answers at once
		system.Shutdown()
		if cfg.Host != "" {
			logs := h.logs.String()
			require.NotContains(t, logs, testKey)
			require.NotContains(t, logs, testPassword)
		}
	})
	return h
}

func (h *harness) send(v Verification) { h.root.Send(h.pid, &v) }

func (h *harness) next(t *testing.T) Outcome {
	t.Helper()
	select {
	case o := <-h.outcomes:
		return o
	case <-time.After(waitFor):
		t.Fatal("no delivery outcome in time")
		return ""
	}
}

func (h *harness) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, Stop(h.root, h.pid, waitFor))
}

// logLines decodes the JSON log, one map per line.
func (h *harness) logLines(t *testing.T) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.Lines(h.logs.String()) {
		var entry map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &entry))
		lines = append(lines, entry)
	}
	return lines
}

// bodies parses a received mail into its header and decoded parts by media type.
func bodies(t *testing.T, data []byte) (netmail.Header, map[string]string) {
	t.Helper()
	msg, err := netmail.ReadMessage(bytes.NewReader(data))
	require.NoError(t, err)
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/alternative", mediaType)
	parts := map[string]string{}
	r := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := r.NextPart() // undoes quoted-printable
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		body, err := io.ReadAll(p)
		require.NoError(t, err)
		partType, _, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		require.NoError(t, err)
		parts[partType] = string(body)
	}
	return msg.Header, parts
}

func TestParseTLSMode(t *testing.T) {
	for in, want := range map[string]TLSMode{
		"": TLSImplicit, "implicit": TLSImplicit, " StartTLS ": TLSStartTLS, "none": TLSNone,
	} {
		got, err := ParseTLSMode(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	_, err := ParseTLSMode("ssl")
	require.Error(t, err)
}

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name     string
		in       Config
		wantPort int
		wantFrom string
	}{
		{"implicit", Config{Host: "smtp.example"}, 465, "rewind@localhost"},
		{"starttls", Config{Host: "smtp.example", TLS: TLSStartTLS}, 587, "rewind@localhost"},
		{"none", Config{Host: "smtp.example", TLS: TLSNone}, 25, "rewind@localhost"},
		{"from username", Config{Host: "h", Username: "me@example.com"}, 465, "me@example.com"},
		{"username without @", Config{Host: "h", Username: "me", Port: 2525}, 2525, "rewind@localhost"},
		{"explicit from", Config{Host: "h", Username: "me@x.org", From: "REWIND <no-reply@x.org>"}, 465, "REWIND <no-reply@x.org>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.withDefaults()
			require.NoError(t, err)
			require.Equal(t, tt.wantPort, got.Port)
			require.Equal(t, tt.wantFrom, got.From)
			require.Equal(t, tt.in.Host, got.TLSConfig.ServerName)
			require.Equal(t, 15*time.Second, got.Timeout)
			require.Equal(t, 6, got.MaxAttempts)
			require.Equal(t, 2*time.Second, got.BaseBackoff)
		})
	}
	for _, bad := range []Config{{TLS: "ssl"}, {Port: 70000}, {From: "not an address"}} {
		_, err := bad.withDefaults()
		require.Error(t, err, "%+v", bad)
	}
}

func TestBackoffDoublesUpToCap(t *testing.T) {
	cfg := Config{BaseBackoff: time.Second}
	require.Equal(t, time.Second, cfg.backoff(1))
	require.Equal(t, 2*time.Second, cfg.backoff(2))
	require.Equal(t, 16*time.Second, cfg.backoff(5))
	require.Equal(t, maxBackoff, cfg.backoff(10))
	require.Equal(t, maxBackoff, cfg.backoff(1000))
}

func TestDelivery(t *testing.T) {
	tests := []struct {
		mode TLSMode
		auth bool
	}{
		{TLSNone, false},
		{TLSNone, true}, // go-mail allows PLAIN in clear to loopback only
		{TLSStartTLS, false},
		{TLSStartTLS, true},
		{TLSImplicit, false},
		{TLSImplicit, true},
	}
	for _, tt := range tests {
		name := string(tt.mode)
		if tt.auth {
			name += " with auth"
		}
		t.Run(name, func(t *testing.T) {
			cert, pool := selfSigned(t)
			ts := &testServer{}
			cfg := Config{Host: "127.0.0.1", TLS: tt.mode, TLSConfig: &tls.Config{RootCAs: pool}}
			if tt.auth {
				ts.user, ts.pass = testUser, testPassword
				cfg.Username, cfg.Password = testUser, testPassword
			}
			cfg.Port = ts.start(t, tt.mode, cert).Port
			h := startMailer(t, cfg)

			h.send(alice)
			require.Equal(t, OutcomeSent, h.next(t))

			auths, attempts, mails := ts.counts()
			require.Equal(t, 1, attempts)
			require.Len(t, mails, 1)
			got := mails[0]
			require.Equal(t, tt.mode != TLSNone, got.TLS)
			if tt.auth {
				require.Equal(t, 1, auths)
				require.Equal(t, testUser, got.User)
				require.Equal(t, testUser, got.From) // From defaults to an address-like username
			} else {
				require.Zero(t, auths)
				require.Equal(t, "rewind@localhost", got.From)
			}
			require.Equal(t, []string{alice.To}, got.To)

			header, parts := bodies(t, got.Data)
			require.Equal(t, "Verify your REWIND account", header.Get("Subject"))
			require.Contains(t, header.Get("To"), "<alice@example.com>")
			require.Contains(t, parts["text/plain"], "Hello Alice,")
			require.Contains(t, parts["text/plain"], testLink)
			require.Contains(t, parts["text/html"], "Hello Alice,")
			require.Contains(t, parts["text/html"], `href="`+testLink+`"`)
		})
	}
}

func TestTransientFailuresAreRetried(t *testing.T) {
	ts := &testServer{rejectRcpt: func(attempt int) error {
		switch attempt {
		case 1:
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}
		case 2:
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}
		}
		return nil
	}}
	cfg := Config{Host: "127.0.0.1", TLS: TLSNone, BaseBackoff: 10 * time.Millisecond}
	cfg.Port = ts.start(t, TLSNone, tls.Certificate{}).Port
	h := startMailer(t, cfg)

	h.send(alice)
	require.Equal(t, OutcomeRetry, h.next(t))
	require.Equal(t, OutcomeRetry, h.next(t))
	require.Equal(t, OutcomeSent, h.next(t))

	_, attempts, mails := ts.counts()
	require.Equal(t, 3, attempts)
	require.Len(t, mails, 1)
}

func TestServerDownAtFirstComesUpLater(t *testing.T) {
	// Reserve a port, then free it so the first attempt is refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	cfg := Config{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, TLS: TLSNone,
		BaseBackoff: 20 * time.Millisecond, MaxAttempts: 10}
	h := startMailer(t, cfg)
	h.send(alice)
	require.Equal(t, OutcomeRetry, h.next(t))

	ts := &testServer{}
	l, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	ts.serve(t, l, TLSNone, tls.Certificate{})

	var outcome Outcome
	for outcome = h.next(t); outcome == OutcomeRetry; outcome = h.next(t) {
	}
	require.Equal(t, OutcomeSent, outcome)
	_, _, mails := ts.counts()
	require.Len(t, mails, 1)
	require.Equal(t, []string{alice.To}, mails[0].To)
}

func TestPermanentFailuresAreNotRetried(t *testing.T) {
	cert, pool := selfSigned(t)
	tests := []struct {
		name         string
		mode         TLSMode
		mail         Verification
		server       *testServer // nil: one that accepts everything
		cfg          Config
		wantAuths    int
		wantAttempts int
	}{
		{
			name: "550 unknown recipient",
			mode: TLSNone,
			mail: alice,
			server: &testServer{rejectRcpt: func(int) error {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}},
			cfg:          Config{TLS: TLSNone},
			wantAttempts: 1,
		},
		{
			name:      "wrong password",
			mode:      TLSImplicit,
			mail:      alice,
			server:    &testServer{user: testUser, pass: "another"},
			cfg:       Config{TLS: TLSImplicit, TLSConfig: &tls.Config{RootCAs: pool}, Username: testUser, Password: testPassword},
			wantAuths: 1,
		},
		{
			name: "untrusted certificate",
			mode: TLSImplicit,
			mail: alice,
			cfg:  Config{TLS: TLSImplicit}, // system roots do not know the test CA
		},
		{
			name: "bad address",
			mode: TLSNone,
			mail: Verification{To: "not an address", Name: "Bob", Link: testLink},
			cfg:  Config{TLS: TLSNone},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := tt.server
			if ts == nil {
				ts = &testServer{}
			}
			cfg := tt.cfg
			cfg.Host = "127.0.0.1"
			cfg.BaseBackoff = time.Millisecond // a wrong retry would show quickly
			cfg.Port = ts.start(t, tt.mode, cert).Port
			h := startMailer(t, cfg)

			h.send(tt.mail)
			require.Equal(t, OutcomeRejected, h.next(t))
			h.stop(t)

			auths, attempts, mails := ts.counts()
			require.Equal(t, tt.wantAuths, auths)
			require.Equal(t, tt.wantAttempts, attempts)
			require.Empty(t, mails)
			require.Empty(t, h.outcomes)
			require.NotContains(t, h.logs.String(), "retries dropped")
		})
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	ts := &testServer{rejectRcpt: func(int) error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	}}
	cfg := Config{Host: "127.0.0.1", TLS: TLSNone, MaxAttempts: 3, BaseBackoff: time.Millisecond}
	cfg.Port = ts.start(t, TLSNone, tls.Certificate{}).Port
	h := startMailer(t, cfg)

	h.send(alice)
	require.Equal(t, OutcomeRetry, h.next(t))
	require.Equal(t, OutcomeRetry, h.next(t))
	require.Equal(t, OutcomeExhausted, h.next(t))
	_, attempts, mails := ts.counts()
	require.Equal(t, 3, attempts)
	require.Empty(t, mails)
}

func TestSilentServerTimesOut(t *testing.T) {
	// Accepts connections and never greets: only Timeout ends an attempt.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()

	cfg := Config{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, TLS: TLSNone,
		Timeout: 100 * time.Millisecond, MaxAttempts: 2, BaseBackoff: time.Millisecond}
	h := startMailer(t, cfg)
	h.send(alice)
	require.Equal(t, OutcomeRetry, h.next(t))
	require.Equal(t, OutcomeExhausted, h.next(t))
}

func TestStopSendsQueuedMailsFirst(t *testing.T) {
	ts := &testServer{}
	cfg := Config{Host: "127.0.0.1", TLS: TLSNone}
	cfg.Port = ts.start(t, TLSNone, tls.Certificate{}).Port
	h := startMailer(t, cfg)

	recipients := []string{"a@example.com", "b@example.com", "c@example.com"}
	for _, to := range recipients {
		h.send(Verification{To: to, Name: "X", Link: testLink})
	}
	h.stop(t)

	_, _, mails := ts.counts()
	require.Len(t, mails, len(recipients))
	for i, to := range recipients {
		require.Equal(t, []string{to}, mails[i].To)
	}
}

func TestStopDropsScheduledRetries(t *testing.T) {
	ts := &testServer{rejectRcpt: func(int) error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	}}
	cfg := Config{Host: "127.0.0.1", TLS: TLSNone, BaseBackoff: time.Hour}
	cfg.Port = ts.start(t, TLSNone, tls.Certificate{}).Port
	h := startMailer(t, cfg)

	h.send(alice)
	require.Equal(t, OutcomeRetry, h.next(t))
	h.stop(t)

	var dropped []map[string]any
	for _, line := range h.logLines(t) {
		if line["message"] == "mailer stopping: scheduled retries dropped" {
			dropped = append(dropped, line)
		}
	}
	require.Len(t, dropped, 1)
	require.EqualValues(t, 1, dropped[0]["count"])
}

func TestWithoutHostTheLinkIsLogged(t *testing.T) {
	h := startMailer(t, Config{})
	h.send(alice)
	h.stop(t)

	var found bool
	for _, line := range h.logLines(t) {
		if line["message"] == "verification link (no SMTP server configured)" {
			found = true
			require.Equal(t, "info", line["level"])
			require.Equal(t, alice.To, line["to"])
			require.Equal(t, testLink, line["link"])
		}
	}
	require.True(t, found, h.logs.String())
	require.Empty(t, h.outcomes, "no SMTP attempt without a host")
}
