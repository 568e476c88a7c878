// Command rewind runs the REWIND chat server.
//
//	rewind [serve] [flags]     serve HTTP and WebSocket (the default)
//	rewind migrate [flags]     apply database migrations and exit
//	rewind user create --name N --email E --password P
//	                           create a verified account (operators, load tests)
//	rewind import-legacy --main WIND_main.db --chat WIND_chat.db [--dry-run]
//	                           copy the original backend's databases into the store
//	                           (docs/import-legacy.md)
//	rewind version             print the version
//
// Every flag has a REWIND_* environment variable of the same meaning; see
// `rewind serve -h`. A bad setting stops start-up with one line and exit
// code 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/rewind-chat/rewind/persistence/storeurl"
	"github.com/rewind-chat/rewind/server"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = ""

// exitUsage is the exit code of a bad command line or setting.
const exitUsage = 2

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && (args[0] == "" || args[0][0] != '-') {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args, stderr)
	case "migrate":
		err = migrate(args, stdout)
	case "user":
		if len(args) == 0 || args[0] != "create" {
			err = usageError{errors.New("usage: rewind user create --name N --email E --password P")}
			break
		}
		err = createUser(args[1:], stdout)
	case "import-legacy":
		err = importLegacy(args, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "rewind %s (%s)\n", buildVersion(), runtime.Version())
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "usage: rewind [serve|migrate|user create|import-legacy|version] [flags]; rewind serve -h lists the settings")
	default:
		err = usageError{fmt.Errorf("unknown command %q: use serve, migrate, user create, import-legacy or version", cmd)}
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "rewind:", err)
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	return 1
}

// usageError is a bad command line or setting: exit code 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// parse reads args into s; -h prints the settings.
func parse(s *settings, args []string, stderr io.Writer) error {
	if err := s.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			s.usage(stderr)
			return err
		}
		return usageError{err}
	}
	if s.fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", s.fs.Arg(0))}
	}
	return nil
}

func serve(args []string, stderr io.Writer) error {
	s := serveSettings()
	if err := parse(s, args, stderr); err != nil {
		return err
	}
	log, err := newLogger(s, stderr)
	if err != nil {
		return usageError{err}
	}
	cfg, err := serveConfig(s)
	if err != nil {
		return usageError{err}
	}
	cfg.Logger = &log

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.Start(ctx, cfg)
	if errors.Is(err, server.ErrListen) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	log.Info().Str("version", buildVersion()).Str("database", storeKind(cfg.DatabaseURL)).Msg("rewind started")
	<-ctx.Done()
	stop() // a second signal kills at once
	shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info().Msg("rewind stopped")
	return nil
}

// storeKind names the store without credentials, for the start-up log.
func storeKind(url string) string {
	if len(url) >= 7 && url[:7] == "sqlite:" {
		return url
	}
	return "postgres"
}

func migrate(args []string, stdout io.Writer) error {
	s := newSettings("migrate")
	s.addDatabaseURL()
	if err := parse(s, args, stdout); err != nil {
		return err
	}
	if err := storeurl.Check(s.get("REWIND_DATABASE_URL")); err != nil {
		return usageError{s.invalid("REWIND_DATABASE_URL", err)}
	}
	store, err := storeurl.Open(context.Background(), s.get("REWIND_DATABASE_URL"))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "migrations applied")
	return store.Close()
}
