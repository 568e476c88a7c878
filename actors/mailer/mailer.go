package mailer

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Props checks cfg and returns the props of a mailer actor. The default
// supervision (restart) suits it: a restarted mailer keeps no state but its
// scheduled retries, and those still arrive.
func Props(cfg Config) (*actor.Props, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return actor.PropsFromProducer(func() actor.Actor { return &Actor{cfg: cfg} }), nil
}

// Spawn starts a mailer under root. Its error is a bad Config.
func Spawn(root *actor.RootContext, cfg Config) (*actor.PID, error) {
	props, err := Props(cfg)
	if err != nil {
		return nil, err
	}
	return root.Spawn(props), nil
}

// Stop stops the mailer after the mails already sent to it have been tried
// once each, waiting at most timeout; retries scheduled for later are
// dropped and counted in the log. It returns actor.ErrTimeout if the
// mailer has not stopped in time (it goes on stopping regardless).
func Stop(root *actor.RootContext, pid *actor.PID, timeout time.Duration) error {
	// root.PoisonFuture, but with the caller's timeout instead of its fixed
	// 10s: watch the actor, then poison it. The poison pill is an ordinary
	// message, so it queues behind the mails.
	system := root.ActorSystem()
	stopped := actor.NewFuture(system, timeout)
	process, _ := system.ProcessRegistry.Get(pid)
	process.SendSystemMessage(pid, &actor.Watch{Watcher: stopped.PID()})
	root.Poison(pid)
	return stopped.Wait()
}
