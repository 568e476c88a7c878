package mailer

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/wneessen/go-mail"
)

// TLSMode says how the connection to the SMTP server is secured.
type TLSMode string

const (
	// TLSImplicit speaks TLS from the first byte (RFC 8314, "submissions", port 465).
	TLSImplicit TLSMode = "implicit"
	// TLSStartTLS connects in clear and upgrades with STARTTLS (RFC 3207);
	// a server that does not offer STARTTLS is refused.
	TLSStartTLS TLSMode = "starttls"
	// TLSNone never encrypts. go-mail then refuses AUTH PLAIN unless the host
	// is localhost, 127.0.0.1 or ::1, so credentials never cross a network in
	// clear.
	TLSNone TLSMode = "none"
)

// ParseTLSMode reads a REWIND_SMTP_TLS value; the empty string means the
// default, DefaultTLS.
func ParseTLSMode(s string) (TLSMode, error) {
	switch mode := TLSMode(strings.ToLower(strings.TrimSpace(s))); mode {
	case "":
		return DefaultTLS, nil
	case TLSImplicit, TLSStartTLS, TLSNone:
		return mode, nil
	default:
		return "", fmt.Errorf("mailer: unknown TLS mode %q (want implicit, starttls or none)", s)
	}
}

// maxBackoff caps the doubling wait between attempts, so a long outage does
// not push the last attempts hours away.
const maxBackoff = 5 * time.Minute

// Config configures the mailer. A zero value takes the default its field
// names (package setting has the convention; nothing here can be turned
// off).
type Config struct {
	// Host is the SMTP server. Empty means no SMTP: each verification link is
	// written to Logger instead (for laptops and tests).
	Host string
	// Port defaults by TLS: DefaultPortImplicit (465), DefaultPortStartTLS
	// (587), DefaultPortNone (25).
	Port int
	// Username, when set, turns on SMTP AUTH PLAIN; empty means no AUTH.
	Username string
	// Password goes with Username. It is never logged.
	Password string
	// From is the sender address. Default: Username if it contains '@',
	// else DefaultFrom.
	From string
	// TLS defaults to DefaultTLS (TLSImplicit).
	TLS TLSMode
	// TLSConfig verifies the server in the implicit and starttls modes; an
	// empty ServerName is set to Host. Default: the system roots and
	// ServerName=Host. Tests set it to trust a self-signed certificate.
	TLSConfig *tls.Config
	// Timeout bounds one whole attempt: dial, TLS, AUTH and the transfer.
	// Default DefaultTimeout (15s).
	Timeout time.Duration
	// MaxAttempts is how many times one mail is tried before it is dropped.
	// Default DefaultMaxAttempts (6).
	MaxAttempts int
	// BaseBackoff is the wait before the second attempt; it doubles for each
	// further one, up to 5 minutes. Default DefaultBaseBackoff (2s).
	BaseBackoff time.Duration
	// Logger receives one line per attempt (recipient, attempt, error, never
	// the link or the body). The zero value logs nothing, which also hides the
	// link when Host is empty.
	Logger zerolog.Logger
	// OnOutcome, when set, is called on the actor's goroutine after every
	// attempt, e.g. to count outcomes in Prometheus. It must not block.
	OnOutcome func(Outcome)
}

// Defaults of Config; REWIND_SMTP_TLS and REWIND_SMTP_PORT default to them.
const (
	DefaultTLS          = TLSImplicit
	DefaultPortImplicit = 465
	DefaultPortStartTLS = 587
	DefaultPortNone     = 25
	DefaultFrom         = "rewind@localhost"
	DefaultTimeout      = 15 * time.Second
	DefaultMaxAttempts  = 6
	DefaultBaseBackoff  = 2 * time.Second
)

// Outcome is what became of one delivery attempt.
type Outcome string

const (
	// OutcomeSent: the server accepted the mail.
	OutcomeSent Outcome = "sent"
	// OutcomeRetry: a transient failure; another attempt is scheduled.
	OutcomeRetry Outcome = "retry"
	// OutcomeRejected: a permanent failure (SMTP 5xx, bad address, untrusted
	// certificate); the mail is dropped.
	OutcomeRejected Outcome = "rejected"
	// OutcomeExhausted: the last of MaxAttempts failed; the mail is dropped.
	OutcomeExhausted Outcome = "exhausted"
)

// withDefaults resolves the zero values and checks what can be checked
// before the first mail, so a bad setting fails at start-up.
func (c Config) withDefaults() (Config, error) {
	var err error
	if c.TLS, err = ParseTLSMode(string(c.TLS)); err != nil {
		return c, err
	}
	if c.Port == 0 {
		c.Port = map[TLSMode]int{TLSImplicit: DefaultPortImplicit, TLSStartTLS: DefaultPortStartTLS, TLSNone: DefaultPortNone}[c.TLS]
	}
	if c.Port < 1 || c.Port > 65535 {
		return c, fmt.Errorf("mailer: port %d out of range", c.Port)
	}
	if c.From == "" {
		c.From = DefaultFrom
		if strings.Contains(c.Username, "@") {
			c.From = c.Username
		}
	}
	if err := mail.NewMsg().From(c.From); err != nil {
		return c, fmt.Errorf("mailer: sender: %w", err)
	}
	if c.TLSConfig == nil {
		c.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		c.TLSConfig = c.TLSConfig.Clone()
	}
	if c.TLSConfig.ServerName == "" {
		c.TLSConfig.ServerName = c.Host
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.BaseBackoff <= 0 {
		c.BaseBackoff = DefaultBaseBackoff
	}
	return c, nil
}

// backoff is the wait after the given failed attempt (1-based).
func (c Config) backoff(attempt int) time.Duration {
	d := c.BaseBackoff
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}
