package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/rewind-chat/rewind/actors/directory"
	"github.com/rewind-chat/rewind/actors/guild"
	"github.com/rewind-chat/rewind/actors/mailer"
	"github.com/rewind-chat/rewind/actors/session"
	"github.com/rewind-chat/rewind/actors/writer"
	"github.com/rewind-chat/rewind/auth"
	"github.com/rewind-chat/rewind/cluster"
	"github.com/rewind-chat/rewind/net/certs"
	"github.com/rewind-chat/rewind/net/clientaddr"
	"github.com/rewind-chat/rewind/net/gateway"
	"github.com/rewind-chat/rewind/net/httpapi"
	"github.com/rewind-chat/rewind/persistence/storeurl"
	"github.com/rewind-chat/rewind/server"
	"github.com/rewind-chat/rewind/setting"
)

// settings binds each REWIND_* variable to a flag of the same meaning: the
// flag wins, then the environment, then the default.
type settings struct {
	fs     *flag.FlagSet
	values map[string]*string // by environment variable
	flags  map[string]string  // flag name by environment variable
}

func newSettings(name string) *settings {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &settings{fs: fs, values: map[string]*string{}, flags: map[string]string{}}
}

// add declares env with its default; the flag is env without REWIND_, in
// lower case with dashes: REWIND_DATABASE_URL is --database-url.
func (s *settings) add(env, def, usage string) {
	name := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "REWIND_")), "_", "-")
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	s.values[env] = s.fs.String(name, def, usage+" ($"+env+")")
	s.flags[env] = name
}

func (s *settings) get(env string) string { return *s.values[env] }

// defaultDatabaseURL is REWIND_DATABASE_URL's default, in every command.
const defaultDatabaseURL = "sqlite:rewind.db"

// addDatabaseURL declares REWIND_DATABASE_URL.
func (s *settings) addDatabaseURL() {
	s.add("REWIND_DATABASE_URL", defaultDatabaseURL, "postgres://… or sqlite:<path>")
}

// The defaults of the settings are the components' own constants (package
// setting), spelled as the REWIND_* variables spell them: a duration as
// time.Duration prints it, and setting.Off as 0, which turns a limit off in
// the environment (off turns it back).

func itoa(n int) string { return strconv.Itoa(n) }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func durationDefault(d time.Duration) string {
	if d < 0 {
		return "0"
	}
	return d.String()
}

// off maps a REWIND_* value of 0, which turns a limit off, to setting.Off:
// a zero in a component's Config takes its default.
func off[T int | int64 | float64 | time.Duration](v T) T {
	if v == 0 {
		return setting.Off
	}
	return v
}

// invalid names the setting both ways, so the user finds it in either,
// and shows its value unless that is a secret.
func (s *settings) invalid(env string, err error) error {
	v := s.get(env)
	switch {
	case strings.Contains(env, "SECRET"), strings.Contains(env, "PASSWORD"):
		return fmt.Errorf("invalid %s (--%s): %w", env, s.flags[env], err)
	case strings.Contains(env, "URL"):
		if u, perr := url.Parse(v); perr == nil {
			v = u.Redacted()
		}
	}
	return fmt.Errorf("invalid %s (--%s) %q: %w", env, s.flags[env], v, err)
}

func (s *settings) duration(env string) (time.Duration, error) {
	d, err := time.ParseDuration(s.get(env))
	if err == nil && d <= 0 {
		err = errors.New("must be positive")
	}
	if err != nil {
		return 0, s.invalid(env, err)
	}
	return d, nil
}

// durationOrZero is duration where 0 (or "0s") means none.
func (s *settings) durationOrZero(env string) (time.Duration, error) {
	d, err := time.ParseDuration(s.get(env))
	if err == nil && d < 0 {
		err = errors.New("must not be negative")
	}
	if err != nil {
		return 0, s.invalid(env, err)
	}
	return d, nil
}

func (s *settings) integer(env string, min, max int64) (int64, error) {
	n, err := strconv.ParseInt(s.get(env), 10, 64)
	if err == nil && (n < min || n > max) {
		err = fmt.Errorf("must be between %d and %d", min, max)
	}
	if err != nil {
		return 0, s.invalid(env, err)
	}
	return n, nil
}

// usage prints the flags with their variables and current values.
func (s *settings) usage(w io.Writer) {
	s.fs.SetOutput(w)
	s.fs.PrintDefaults()
	s.fs.SetOutput(io.Discard)
}

// serveSettings declares every setting of `rewind serve`.
func serveSettings() *settings {
	s := newSettings("serve")
	s.add("REWIND_ADDR", server.DefaultAddr, "address to listen on")
	s.add("REWIND_TLS_CERT", "", "PEM certificate chain: with REWIND_TLS_KEY, serve HTTPS and WSS on REWIND_ADDR (read again when the files change); empty: plain HTTP, e.g. behind a reverse proxy")
	s.add("REWIND_TLS_KEY", "", "PEM private key of REWIND_TLS_CERT")
	s.add("REWIND_PUBLIC_URL", "", "URL clients reach this server at, for verification links (default http://localhost:<port>)")
	s.addDatabaseURL()
	s.add("REWIND_TOKEN_SECRET", "", "token signing secret, at least 32 bytes (default: generated once, kept in the database)")
	s.add("REWIND_TOKEN_SECRET_FILE", "", "file holding the token signing secret (one trailing line break ignored), instead of REWIND_TOKEN_SECRET")
	s.add("REWIND_TRUSTED_PROXIES", "", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client; empty: the header is ignored")
	s.add("REWIND_TOKEN_TTL", durationDefault(auth.DefaultTokenTTL), "token lifetime, e.g. 720h; 0: tokens last until logout (the shipped client never logs in again by itself)")
	s.add("REWIND_NODE_ID", "0", "snowflake node id, 0..1023, unique per node")
	s.add("REWIND_WRITE_TRANSACTIONS", itoa(writer.DefaultConcurrency), "group-commit transactions in flight at once, 1..64 (more can help a distant database)")
	s.add("REWIND_AUTH_RATE", itoa(httpapi.DefaultAuthRatePerMinute), "register and login requests per minute per client IP, each; 0 turns the limit off")
	s.add("REWIND_SMTP_HOST", "", "SMTP server; empty writes verification links to the log instead")
	s.add("REWIND_SMTP_PORT", "0", fmt.Sprintf("SMTP port (default %d implicit TLS, %d starttls, %d none)", mailer.DefaultPortImplicit, mailer.DefaultPortStartTLS, mailer.DefaultPortNone))
	s.add("REWIND_SMTP_USERNAME", os.Getenv("MAIL_ADDRESS"), "SMTP user (fallback $MAIL_ADDRESS)")
	s.add("REWIND_SMTP_PASSWORD", os.Getenv("MAIL_PASSWD"), "SMTP password (fallback $MAIL_PASSWD)")
	s.add("REWIND_SMTP_FROM", "", "sender address (default the SMTP user)")
	s.add("REWIND_SMTP_TLS", string(mailer.DefaultTLS), "implicit, starttls or none")
	s.add("REWIND_TIMEZONE", server.DefaultTimezone.String(), "zone of times on the wire")
	s.add("REWIND_HEARTBEAT_INTERVAL", durationDefault(session.DefaultHeartbeatInterval), "heartbeat interval clients keep")
	s.add("REWIND_HEARTBEAT_GRACE", durationDefault(session.DefaultHeartbeatGrace), "grace past the interval before a session is closed")
	s.add("REWIND_WS_MAX_FRAME", itoa(gateway.DefaultMaxFrame), fmt.Sprintf("largest WebSocket message in bytes a session takes, at most %d; a larger one up to that is answered error 1009 and dropped, the connection stays", gateway.DefaultMaxMessage))
	s.add("REWIND_WS_SEND_QUEUE", itoa(gateway.DefaultSendQueue), "outbound frames queued per session before it is closed as slow")
	s.add("REWIND_WS_RATE", ftoa(session.DefaultRate), "request frames per second per session, sustained; 0 turns the limit off")
	s.add("REWIND_WS_BURST", itoa(session.DefaultBurst), "request frames a session may burst")
	s.add("REWIND_WS_MAX_SESSIONS", itoa(directory.DefaultMaxSessions), "sessions of one user; the auth past it is answered 4029; 0 turns the limit off")
	s.add("REWIND_GUILD_MAX_MEMBERS", itoa(guild.DefaultMaxMembers), "members of one guild; the join past it is answered 4000 Guild is full.")
	s.add("REWIND_WS_SEND_BYTES", itoa(gateway.DefaultSendBytes), "outbound bytes queued per session before it is closed as slow")
	s.add("REWIND_WS_AUTH_TIMEOUT", durationDefault(session.DefaultAuthTimeout), "time a WebSocket has to authenticate after its upgrade before it is closed with 4001")
	s.add("REWIND_WS_MAX_UNAUTHENTICATED_PER_IP", itoa(gateway.DefaultMaxUnauthenticatedPerIP), "WebSockets from one address not yet authenticated; past it upgrades are refused with 429; 0 turns the limit off")
	s.add("REWIND_MAX_CONNECTIONS", "", fmt.Sprintf("WebSockets per process; past it upgrades are refused with 503; 0 turns the limit off (default the open-files limit less %d)", gateway.DescriptorReserve))
	s.add("REWIND_CLUSTER_ETCD", "", "comma-separated etcd endpoints of the cluster to join, e.g. http://10.0.0.5:2379; empty: the node runs alone")
	s.add("REWIND_CLUSTER_NAME", cluster.DefaultName, "name of the cluster (letters, digits, - and _)")
	s.add("REWIND_CLUSTER_ADDR", "", "this node's cluster address host:port, which the other nodes reach (required with REWIND_CLUSTER_ETCD)")
	s.add("REWIND_DEBUG_ADDR", "", "address for net/http/pprof profiles, e.g. 127.0.0.1:6060; empty: off")
	s.add("REWIND_LOG_LEVEL", "info", "trace, debug, info, warn or error")
	s.add("REWIND_LOG_FORMAT", "console", "console or json")
	return s
}

// serveConfig turns the parsed settings into a server configuration.
func serveConfig(s *settings) (server.Config, error) {
	var c server.Config
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	c.Addr = s.get("REWIND_ADDR")
	c.PublicURL = s.get("REWIND_PUBLIC_URL")
	c.DatabaseURL = s.get("REWIND_DATABASE_URL")
	c.DebugAddr = s.get("REWIND_DEBUG_ADDR")
	c.TLSCert, c.TLSKey = s.get("REWIND_TLS_CERT"), s.get("REWIND_TLS_KEY")
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		check(s.invalid("REWIND_TLS_KEY", errors.New("REWIND_TLS_CERT is set: set both or neither")))
	case c.TLSKey != "" && c.TLSCert == "":
		check(s.invalid("REWIND_TLS_CERT", errors.New("REWIND_TLS_KEY is set: set both or neither")))
	case c.TLSCert != "":
		// Read here too, so that a bad file is a bad setting (exit 2).
		if _, err := certs.Load(c.TLSCert, c.TLSKey); err != nil {
			check(fmt.Errorf("invalid REWIND_TLS_CERT, REWIND_TLS_KEY (--tls-cert, --tls-key): %w", err))
		}
	}
	if err := storeurl.Check(c.DatabaseURL); err != nil {
		check(s.invalid("REWIND_DATABASE_URL", err))
	}
	c.TokenSecret = s.get("REWIND_TOKEN_SECRET")
	if c.TokenSecret != "" && len(c.TokenSecret) < auth.MinSecretLen {
		check(s.invalid("REWIND_TOKEN_SECRET", fmt.Errorf("must be at least %d bytes", auth.MinSecretLen)))
	}
	if file := s.get("REWIND_TOKEN_SECRET_FILE"); file != "" {
		secret, err := auth.ReadSecretFile(file)
		if err == nil && c.TokenSecret != "" {
			err = errors.New("set REWIND_TOKEN_SECRET or REWIND_TOKEN_SECRET_FILE, not both")
		}
		if err != nil {
			check(s.invalid("REWIND_TOKEN_SECRET_FILE", err))
		}
		c.TokenSecret = secret
	}
	var err error
	c.TrustedProxies, err = clientaddr.ParseProxies(s.get("REWIND_TRUSTED_PROXIES"))
	if err != nil {
		check(s.invalid("REWIND_TRUSTED_PROXIES", err))
	}
	ttl, err := s.durationOrZero("REWIND_TOKEN_TTL")
	check(err)
	c.TokenTTL = off(ttl)
	c.NodeID, err = s.integer("REWIND_NODE_ID", 0, 1023)
	check(err)
	writes, err := s.integer("REWIND_WRITE_TRANSACTIONS", 1, 64)
	check(err)
	c.WriteTransactions = int(writes)
	rate, err := s.integer("REWIND_AUTH_RATE", 0, 1_000_000)
	check(err)
	c.AuthRatePerMinute = off(int(rate))

	c.Mail.Host = s.get("REWIND_SMTP_HOST")
	port, err := s.integer("REWIND_SMTP_PORT", 0, 65535)
	check(err)
	c.Mail.Port = int(port)
	c.Mail.Username = s.get("REWIND_SMTP_USERNAME")
	c.Mail.Password = s.get("REWIND_SMTP_PASSWORD")
	c.Mail.From = s.get("REWIND_SMTP_FROM")
	c.Mail.TLS, err = mailer.ParseTLSMode(s.get("REWIND_SMTP_TLS"))
	if err != nil {
		check(s.invalid("REWIND_SMTP_TLS", err))
	}

	g := &c.Gateway
	g.Timezone, err = time.LoadLocation(s.get("REWIND_TIMEZONE"))
	if err != nil {
		check(s.invalid("REWIND_TIMEZONE", err))
	}
	g.HeartbeatInterval, err = s.duration("REWIND_HEARTBEAT_INTERVAL")
	check(err)
	g.HeartbeatGrace, err = s.duration("REWIND_HEARTBEAT_GRACE")
	check(err)
	n, err := s.integer("REWIND_WS_MAX_FRAME", 512, math.MaxInt32)
	if err == nil && n > gateway.DefaultMaxMessage {
		// The gateway closes the connection past its cap whatever this
		// says: refuse a setting that promises more.
		err = s.invalid("REWIND_WS_MAX_FRAME", fmt.Errorf("must be at most %d (1 MiB): a larger message closes the connection (1009)", gateway.DefaultMaxMessage))
	}
	check(err)
	g.MaxFrame = int(n)
	n, err = s.integer("REWIND_WS_SEND_QUEUE", 1, 1<<20)
	check(err)
	g.SendQueue = int(n)
	g.Rate, err = strconv.ParseFloat(s.get("REWIND_WS_RATE"), 64)
	if err == nil && g.Rate < 0 {
		err = errors.New("must not be negative")
	}
	if err != nil {
		check(s.invalid("REWIND_WS_RATE", err))
	}
	g.Rate = off(g.Rate)
	n, err = s.integer("REWIND_WS_BURST", 1, 1<<20)
	check(err)
	g.Burst = int(n)
	n, err = s.integer("REWIND_WS_MAX_SESSIONS", 0, 1<<20)
	check(err)
	g.MaxSessions = off(int(n))
	n, err = s.integer("REWIND_GUILD_MAX_MEMBERS", 1, 1<<30)
	check(err)
	g.GuildMaxMembers = int(n)
	n, err = s.integer("REWIND_WS_SEND_BYTES", 4096, 1<<30)
	check(err)
	g.SendBytes = int(n)
	g.AuthTimeout, err = s.duration("REWIND_WS_AUTH_TIMEOUT")
	check(err)
	n, err = s.integer("REWIND_WS_MAX_UNAUTHENTICATED_PER_IP", 0, 1<<30)
	check(err)
	g.MaxUnauthenticatedPerIP = off(int(n))
	// Unset, MaxConnections stays zero: the gateway's default, which
	// depends on the open-files limit.
	if v := s.get("REWIND_MAX_CONNECTIONS"); v != "" {
		n, err = s.integer("REWIND_MAX_CONNECTIONS", 0, 1<<30)
		check(err)
		g.MaxConnections = off(int(n))
	}
	if etcd := s.get("REWIND_CLUSTER_ETCD"); etcd != "" {
		for _, e := range strings.Split(etcd, ",") {
			if e = strings.TrimSpace(e); e != "" {
				c.Cluster.Etcd = append(c.Cluster.Etcd, e)
			}
		}
		c.Cluster.Name = s.get("REWIND_CLUSTER_NAME")
		c.Cluster.Addr = s.get("REWIND_CLUSTER_ADDR")
		if c.Cluster.Addr == "" {
			check(s.invalid("REWIND_CLUSTER_ADDR", errors.New("required with REWIND_CLUSTER_ETCD")))
		}
		if strings.HasPrefix(c.DatabaseURL, "sqlite:") {
			check(s.invalid("REWIND_DATABASE_URL", errors.New("the nodes of a cluster share one PostgreSQL database: SQLite cannot be shared")))
		}
	}
	if len(errs) > 0 {
		return c, errs[0]
	}
	return c, nil
}

// newLogger builds the process logger from REWIND_LOG_LEVEL and
// REWIND_LOG_FORMAT.
func newLogger(s *settings, w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(s.get("REWIND_LOG_LEVEL"))
	if err != nil || level == zerolog.NoLevel {
		return zerolog.Logger{}, s.invalid("REWIND_LOG_LEVEL", errors.New("use trace, debug, info, warn or error"))
	}
	switch s.get("REWIND_LOG_FORMAT") {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
	default:
		return zerolog.Logger{}, s.invalid("REWIND_LOG_FORMAT", errors.New("use console or json"))
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}
