package mailer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"net"
	"net/textproto"
	texttemplate "text/template"

	"github.com/wneessen/go-mail"
)

const subject = "Verify your REWIND account"

var textBody = texttemplate.Must(texttemplate.New("text").Parse(`Hello {{.Name}},

please confirm your email address for REWIND by opening this link:

{{.Link}}

If you did not sign up for REWIND, you can ignore this mail.
`))

// html/template escapes Name and Link for their context (text, attribute).
var htmlBody = htmltemplate.Must(htmltemplate.New("html").Parse(`<!DOCTYPE html>
<html><body>
<p>Hello {{.Name}},</p>
<p>please confirm your email address for REWIND by opening this link:</p>
<p><a href="{{.Link}}">{{.Link}}</a></p>
<p>If you did not sign up for REWIND, you can ignore this mail.</p>
</body></html>
`))

// compose builds the mail; its error (a bad address) is permanent.
func compose(from string, v Verification) (*mail.Msg, error) {
	m := mail.NewMsg()
	if err := m.From(from); err != nil {
		return nil, err
	}
	if err := m.AddToFormat(v.Name, v.To); err != nil {
		return nil, err
	}
	m.Subject(subject)
	if err := m.SetBodyTextTemplate(textBody, v); err != nil {
		return nil, err
	}
	if err := m.AddAlternativeHTMLTemplate(htmlBody, v); err != nil {
		return nil, err
	}
	return m, nil
}

// send makes one delivery attempt, bounded by cfg.Timeout as a whole.
func send(cfg Config, m *mail.Msg) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	client, err := newClient(ctx, cfg)
	if err != nil {
		return err
	}
	err = client.DialAndSendWithContext(ctx, m)
	switch {
	case m.IsDelivered():
		// The server took the mail; a failing RSET or QUIT afterwards must
		// not cause a second copy.
		return nil
	case err != nil && ctx.Err() != nil:
		// dial closed the connection under go-mail; say why.
		return fmt.Errorf("attempt timed out after %s: %w", cfg.Timeout, err)
	}
	return err
}

// newClient configures go-mail for one attempt. The connection is dialled
// here rather than by go-mail so that ctx owns it: when the attempt ends or
// times out the connection is closed, also on go-mail's error paths that
// return without closing it, and a server that trickles its replies cannot
// stretch an attempt past Timeout.
func newClient(ctx context.Context, cfg Config) (*mail.Client, error) {
	policy := mail.NoTLS // implicit TLS is done by dial, none is none
	if cfg.TLS == TLSStartTLS {
		policy = mail.TLSMandatory
	}
	opts := []mail.Option{
		mail.WithPort(cfg.Port),
		mail.WithTimeout(cfg.Timeout),
		mail.WithTLSPolicy(policy),
		mail.WithTLSConfig(cfg.TLSConfig),
		mail.WithDialContextFunc(func(_ context.Context, network, addr string) (net.Conn, error) {
			return dial(ctx, cfg, network, addr)
		}),
	}
	if cfg.Username != "" {
		opts = append(opts,
			mail.WithSMTPAuth(mail.SMTPAuthPlain),
			mail.WithUsername(cfg.Username),
			mail.WithPassword(cfg.Password))
	}
	return mail.NewClient(cfg.Host, opts...)
}

func dial(ctx context.Context, cfg Config, network, addr string) (net.Conn, error) {
	var d net.Dialer
	var conn net.Conn
	var err error
	if cfg.TLS == TLSImplicit {
		conn, err = (&tls.Dialer{NetDialer: &d, Config: cfg.TLSConfig}).DialContext(ctx, network, addr)
	} else {
		conn, err = d.DialContext(ctx, network, addr)
	}
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { _ = conn.Close() })
	return conn, nil
}

// transient reports whether a failed attempt may succeed later: the server
// said so with a 4yz reply (RFC 5321 §4.2.1), or the network failed (refused,
// reset, timed out, closed mid-conversation). Everything else — 5yz replies,
// bad addresses, a certificate we do not trust, AUTH the server or the
// channel does not allow — will fail the same way again.
func transient(err error) bool {
	var sendErr *mail.SendError
	if errors.As(err, &sendErr) && (sendErr.IsTemp() || sendErr.Reason == mail.ErrConnCheck) {
		return true // ErrConnCheck: the connection broke before MAIL FROM
	}
	var reply *textproto.Error
	if errors.As(err, &reply) {
		return reply.Code >= 400 && reply.Code < 500
	}
	var netErr net.Error
	return errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded)
}
