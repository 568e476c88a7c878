// Package mailer sends REWIND's verification mails off the request path.
//
// An HTTP handler sends a *Verification to the mailer's PID and returns; the
// mailer (one Actor, see Spawn) composes a plain-text mail with an HTML
// alternative and delivers it over SMTP with github.com/wneessen/go-mail.
//
// Invariants, and the tests that guard them:
//
//   - One SMTP conversation at a time, bounded as a whole by Config.Timeout;
//     the actor's fields are touched only by Receive (TestSilentServerTimesOut,
//     go test -race).
//   - Transient failures (SMTP 4yz, refused, reset, timed out) are retried
//     after BaseBackoff, doubling, by a timer that sends a retry message to
//     the actor, so the mailbox never waits out a backoff
//     (TestTransientFailuresAreRetried, TestServerDownAtFirstComesUpLater).
//     After MaxAttempts the mail is dropped (TestGivesUpAfterMaxAttempts).
//   - Permanent failures (SMTP 5yz, bad address, untrusted certificate,
//     rejected credentials) are logged once and dropped
//     (TestPermanentFailuresAreNotRetried).
//   - A mail the server accepted is not sent again, even if the conversation
//     fails after DATA (send checks Msg.IsDelivered).
//   - Stop lets mails already queued be tried, then drops and counts the
//     retries scheduled for later (TestStopSendsQueuedMailsFirst,
//     TestStopDropsScheduledRetries).
//   - The link is secret. Without Config.Host it is logged, once, as
//     "verification link (no SMTP server configured)"
//     (TestWithoutHostTheLinkIsLogged); that is the only place. With a host,
//     the log holds the recipient, attempt and error, never the link, the
//     body or the password (checked after every test with a host, in
//     startMailer's cleanup).
//
// Auth is AUTH PLAIN when Config.Username is set. go-mail refuses PLAIN on an
// unencrypted connection except to localhost, 127.0.0.1 or ::1; so TLS "none"
// with a username works against a local relay and fails (permanently, logged)
// against any other host.
package mailer
