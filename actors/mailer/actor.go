package mailer

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Verification asks the mailer to send a verification mail. Send it with
// ctx.Send and return: the mailer delivers (and retries) on its own time.
type Verification struct {
	To   string // recipient address
	Name string // the user's name, for the greeting
	Link string // the verification link; secret, never logged when SMTP is configured
}

// retry is the mailer's note to itself that a mail is due for another attempt.
type retry struct {
	id      uint64
	mail    Verification
	attempt int
}

// Actor sends verification mails, one SMTP conversation at a time. Its
// fields are touched only by Receive.
type Actor struct {
	cfg     Config                 // resolved, see Config.withDefaults
	pending map[uint64]*time.Timer // scheduled retries, by retry.id
	nextID  uint64
}

func (a *Actor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.pending = make(map[uint64]*time.Timer)
		if a.cfg.Host == "" {
			a.cfg.Logger.Warn().Msg("mailer started without SMTP server: verification links go to the log")
		} else {
			a.cfg.Logger.Info().Str("host", a.cfg.Host).Int("port", a.cfg.Port).
				Str("tls", string(a.cfg.TLS)).Bool("auth", a.cfg.Username != "").Msg("mailer started")
		}
	case *actor.Stopping:
		for _, t := range a.pending {
			t.Stop()
		}
		if n := len(a.pending); n > 0 {
			a.cfg.Logger.Warn().Int("count", n).Msg("mailer stopping: scheduled retries dropped")
		}
	case *actor.Stopped:
		a.cfg.Logger.Info().Msg("mailer stopped")
	case *Verification:
		a.deliver(ctx, *msg, 1)
	case *retry:
		// A retry from before a restart is not in pending; it is delivered all the same.
		delete(a.pending, msg.id)
		a.deliver(ctx, msg.mail, msg.attempt)
	}
}

func (a *Actor) deliver(ctx actor.Context, v Verification, attempt int) {
	if a.cfg.Host == "" {
		// The only place a link may be logged: without SMTP the log is how
		// a developer gets it.
		a.cfg.Logger.Info().Str("to", v.To).Str("link", v.Link).
			Msg("verification link (no SMTP server configured)")
		return
	}
	m, err := compose(a.cfg.From, v)
	if err == nil {
		err = send(a.cfg, m)
	}
	log := a.cfg.Logger.With().Str("to", v.To).Int("attempt", attempt).Logger()
	var outcome Outcome
	switch {
	case err == nil:
		outcome = OutcomeSent
		log.Info().Msg("verification mail sent")
	case !transient(err):
		outcome = OutcomeRejected
		log.Error().Err(err).Msg("verification mail failed permanently, dropped")
	case attempt >= a.cfg.MaxAttempts:
		outcome = OutcomeExhausted
		log.Error().Err(err).Msg("verification mail failed on its last attempt, dropped")
	default:
		outcome = OutcomeRetry
		wait := a.cfg.backoff(attempt)
		log.Warn().Err(err).Dur("retry_in", wait).Msg("verification mail failed, will retry")
		a.schedule(ctx, &retry{mail: v, attempt: attempt + 1}, wait)
	}
	if a.cfg.OnOutcome != nil {
		a.cfg.OnOutcome(outcome)
	}
}

// schedule delivers r to this actor after wait, so the mailbox keeps
// moving meanwhile.
func (a *Actor) schedule(ctx actor.Context, r *retry, wait time.Duration) {
	a.nextID++
	r.id = a.nextID
	root, self := ctx.ActorSystem().Root, ctx.Self()
	a.pending[r.id] = time.AfterFunc(wait, func() { root.Send(self, r) })
}
