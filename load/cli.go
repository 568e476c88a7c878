package load

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config is one run of the harness; Main fills it from the command line.
type Config struct {
	Scenario string // idle, dm, churn, storm, resume, guild
	Target   string // rewind, centrifugo
	URL      string // the gateway base, ws://host:port (/ws is added); centrifugo: the full URL
	HTTP     string // the HTTP API base, http://host:port
	// Servers is --server: the nodes of a cluster, comma-separated (they
	// replace URL and HTTP, which become the first node's).
	Servers   string
	CrossNode bool // the two sides of every pair on different nodes
	Sessions  int
	Pairs     int
	Rate      float64 // dm: messages per second, all pairs together
	Size      int     // dm: content length in bytes
	Duration  time.Duration
	Churn     float64 // churn: connects per second
	Hold      time.Duration
	// dm: sends of the first Warmup are reported apart from the rest
	Warmup    time.Duration
	WarmRooms bool // dm: one unmeasured message per pair before the run
	PGCPU     bool // sample PostgreSQL's processes' CPU too

	// resume: the receiving sides of Drop pairs close at DropAt (after the
	// sending began) and come back Down later; every EditEvery-th send of
	// an author is followed by an edit, every DeleteEvery-th by a delete;
	// CheckViews dropped sessions compare their view with the history at
	// the end.
	Drop        int
	DropAt      time.Duration
	Down        time.Duration
	EditEvery   int
	DeleteEvery int
	CheckViews  int

	// guild: Guilds guilds of Members members (sessions), each sending
	// into its guild's general channel.
	Guilds  int
	Members int

	Workers            int
	SourceIPs          int
	SourceBase         string
	ConnectConcurrency int
	ConnectTimeout     time.Duration
	DialTimeout        time.Duration
	Heartbeat          time.Duration
	WSVersion          int
	Drain              time.Duration
	AfterRestart       bool
	Reconnect          bool
	Backoff            time.Duration
	BackoffMax         time.Duration

	DatabaseURL     string
	TokenSecret     string
	TokenTTL        time.Duration
	Tokens          string // mint, login
	Password        string
	Prefix          string
	NodeID          int64
	ViaHTTP         bool
	SMTPListen      string
	HTTPConcurrency int

	ServerPID int
	JSON      string
	Progress  time.Duration
	Quiet     bool

	nodes []Node // from Servers, or the one of URL and HTTP

	reconnectSet bool
	sessionsSet  bool
	pairsSet     bool
	urlSet       bool
	httpSet      bool
	pgCPUSet     bool
	wsVersionSet bool
}

const usageHead = `rewind-load drives real protocol traffic at a REWIND server and measures it.

usage: rewind-load --scenario idle|dm|churn|storm|resume|guild [flags]
       rewind-load --target centrifugo --url ws://127.0.0.1:8000/connection/websocket --scenario dm [flags]
       rewind-load --server http://127.0.0.1:8081,http://127.0.0.1:8082 [--cross-node] --scenario dm [flags]
       rewind-load compare RESULT.json...   (one table row per --json results file)

scenarios:
  idle    --sessions N authenticated sessions heartbeat for --duration
  dm      --pairs P pairs of friends exchange --rate R messages/s in all for --duration
          (sessions = 2P; with --sessions N > 2P the others stay idle); latencies of the
          first --warmup of sends are also reported apart; --warm-rooms first has each pair
          exchange one unmeasured message, so that the run starts with warm rooms
  churn   sessions connect, authenticate, stay --hold and leave, --churn C a second, for --duration
  storm   all N sessions connect, then all reconnect at once; with --after-restart they stay
          until the server drops them (restart it during the run) and reconnect with backoff;
          with --pairs P (sessions 2P, befriended), once all are back every pair sends one
          message at once, whose send→ack and send→delivery are reported
  resume  protocol v2: the --pairs chat as in dm (--rate), and each author follows every
          --edit-every-th send with an edit and every --delete-every-th with a delete of one of
          its own messages picked at random (counting from an offset by pair, so that the edits
          of the pairs do not come at once); at --drop-at the receiving sides of --drop pairs
          close (1000) while their peers go on; --down later they reconnect, auth (the v2 answer
          lists the chats with their seq) and catch up with load changes since the highest seq
          or edit_seq they saw, page after page while more. Reported: reconnect→auth→caught up,
          what the peers had acknowledged while they were down against what they recovered,
          "missing" (acknowledged to the peer, never seen live nor caught up: must be 0),
          duplicates (seen live and caught up), and at the end the views of --check-views
          dropped sessions (id → content) against the chat's history loaded afresh
  guild   protocol v2: --guilds G guilds of --members M members (sessions = G×M, one each); the
          first member of each creates it and an invite (max_uses 0), the others join; then the
          members send into their guild's general channel at --rate R msg/s in all (each member
          R/(G×M)) for --duration. Reported: sent/acknowledged, fan-out deliveries against the
          expected (sent into a guild × its members − 1) and per second, send→delivery at each
          receiver (also the first --warmup apart), missing (expected − delivered: must be 0
          when nothing closed), duplicates (a message id twice in one session), out of order
          (a channel seq below one the session saw)

targets:
  rewind      (default) a REWIND server, or with --server a,b,… the nodes of a cluster: sessions are
              placed round robin by user (each account has one session): pair p on node p mod N
              (both sides; with --cross-node side B on node (p+1) mod N), other sessions i on i mod N;
              logins go to the session's node. Figures are also per node, dm latencies also same-node
              and cross-node apart, and nodes are probed (/readyz) to tell which went away. With
              --reconnect a session whose connection is lost moves to another node (bounded backoff),
              authenticates again and catches up on the DM's history since its last seen message
              (deduplicated by message id); the report counts acknowledged messages never delivered
              (live or caught up) and, by a last look at the DM's history over the sessions still
              connected once the drain is over (30 s at most), which of them are found in history
              at the end, missing from history, or not checked
  centrifugo  dm only: a Centrifugo v4+ node over its bidirectional JSON protocol at the full
              --url; each session subscribes to its own channel u<i> and publishes into its
              peer's (start Centrifugo with client.insecure; no accounts are made)

accounts (named <prefix>-<i>, a new prefix each run):
  --database-url URL  create them directly in the server's database (as 'rewind user create'),
                      befriend the dm pairs there and mint tokens with the server's secret
  --via-http          register over HTTP, receive the verification mail on the harness's own
                      SMTP receiver, follow the link and log in; start the server with
                      ` + "REWIND_SMTP_HOST=127.0.0.1 REWIND_SMTP_PORT=2525 REWIND_SMTP_TLS=none REWIND_AUTH_RATE=0" + `
  Big runs: start the server with REWIND_WS_RATE=0 (and REWIND_AUTH_RATE=0 when tokens come
  from logins). Targets must be loopback addresses (127.0.0.0/8).

flags:
`

// Main runs the command line; it returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "rewind-load:", err)
		return 2
	}
	// Run handles SIGINT and SIGTERM itself: the first stops the run
	// cleanly, a second kills the workers.
	res, err := Run(context.Background(), cfg, stdout, stderr)
	if res != nil {
		printSummary(stdout, res)
		if cfg.JSON != "" {
			if werr := writeJSON(cfg.JSON, res); werr != nil {
				fmt.Fprintln(stderr, "rewind-load:", werr)
				return 1
			}
			fmt.Fprintln(stdout, "results written to", cfg.JSON)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "rewind-load:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("rewind-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Scenario, "scenario", "idle", "idle, dm, churn, storm or resume")
	fs.StringVar(&c.Target, "target", "rewind", "rewind or centrifugo (dm only)")
	fs.StringVar(&c.URL, "url", "ws://127.0.0.1:8080", "the server's WebSocket base URL (/ws is added); centrifugo: the full URL (default ws://127.0.0.1:8000/connection/websocket)")
	fs.StringVar(&c.HTTP, "http", "http://127.0.0.1:8080", "the server's HTTP base URL (login, registration, /metrics); centrifugo: default from --url")
	fs.StringVar(&c.Servers, "server", "", "the `addresses` of a cluster's nodes, comma-separated, each http://host:port or host:port (instead of --url and --http; one address listed twice is two nodes); server figures come from the first node")
	fs.BoolVar(&c.CrossNode, "cross-node", false, "--server: pair p's side A on node p mod N, side B on node (p+1) mod N (default: both sides of a pair on node p mod N)")
	fs.IntVar(&c.Sessions, "sessions", 1000, "sessions (and accounts); dm: default 2 × --pairs")
	fs.IntVar(&c.Pairs, "pairs", 100, "dm: pairs of friends; storm: pairs that each send one message once all sessions are back (default none)")
	fs.Float64Var(&c.Rate, "rate", 1000, "dm: messages per second, all pairs together; guild: all members of all guilds together")
	fs.IntVar(&c.Guilds, "guilds", 1, "guild: guilds (the server allows 100 per user: each member is in one)")
	fs.IntVar(&c.Members, "members", 10, "guild: members per guild, at least 2 (the server's REWIND_GUILD_MAX_MEMBERS, default 1000, bounds it)")
	fs.IntVar(&c.Size, "size", 0, "dm: content length in bytes (padded; at least the stamp, about 15 bytes)")
	fs.DurationVar(&c.Warmup, "warmup", time.Second, "dm: report the latencies of messages sent in this first part of the sending apart from the rest")
	fs.BoolVar(&c.WarmRooms, "warm-rooms", false, "dm: before the measured run, each pair exchanges one unmeasured message (the run starts with warm rooms)")
	fs.BoolVar(&c.PGCPU, "pg-cpu", false, "also sample the CPU of every process named postgres on this machine (default: on when --database-url is postgres:// on a loopback host)")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "how long the scenario runs once the sessions are up (storm: the longest wait for them to come back)")
	fs.IntVar(&c.Drop, "drop", 0, "resume: pairs whose receiving side (B) drops, spread over the pairs (default: half of --pairs, at least 1)")
	fs.DurationVar(&c.DropAt, "drop-at", 5*time.Second, "resume: when the drop is made, after the sending began")
	fs.DurationVar(&c.Down, "down", 3*time.Second, "resume: how long the dropped sessions stay away")
	fs.IntVar(&c.EditEvery, "edit-every", 10, "resume: every n-th send of an author is followed, once acknowledged, by an edit of one of its own messages picked at random (0: no edits)")
	fs.IntVar(&c.DeleteEvery, "delete-every", 25, "resume: every n-th send of an author is followed, once acknowledged, by a delete of one of its own messages picked at random (0: no deletes)")
	fs.IntVar(&c.CheckViews, "check-views", 100, "resume: at the end, this many dropped sessions compare their view of the DM with its history loaded afresh (0: none)")
	fs.Float64Var(&c.Churn, "churn", 100, "churn: sessions started per second")
	fs.DurationVar(&c.Hold, "hold", time.Second, "churn: how long each session stays")
	fs.IntVar(&c.Workers, "workers", 0, "worker processes (0: one per 9,000 sockets)")
	fs.IntVar(&c.SourceIPs, "source-ips", 0, "loopback source addresses from --source-base on (0: one per 10,000 sockets)")
	fs.StringVar(&c.SourceBase, "source-base", "127.0.0.2", "the first loopback source address")
	fs.IntVar(&c.ConnectConcurrency, "connect-concurrency", 1000, "connections being opened at once, all workers together (0: no cap)")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", 2*time.Minute, "bound of the first connect phase")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", 30*time.Second, "bound of one connection's dial, upgrade, heartbeat and auth")
	fs.DurationVar(&c.Heartbeat, "heartbeat", 40*time.Second, "heartbeat interval: the server's REWIND_HEARTBEAT_INTERVAL (lower only when told)")
	fs.IntVar(&c.WSVersion, "ws-version", 1, "gateway protocol version: 1 (/ws) or 2 (/ws?v=2); resume: always 2")
	fs.DurationVar(&c.Drain, "drain", 10*time.Second, "dm: after the last send, how long to wait for outstanding echoes and deliveries")
	fs.BoolVar(&c.AfterRestart, "after-restart", false, "storm: wait for the server to drop the sessions (restart it) instead of closing them")
	fs.BoolVar(&c.Reconnect, "reconnect", false, "reconnect sessions the server closed or lost, with backoff and jitter, to another node when there are several; dm: then catch up on history, and at the end look the acknowledged messages never delivered up in history (found, missing, not checked; up to 30 s more) (default: on for storm)")
	fs.DurationVar(&c.Backoff, "backoff", 500*time.Millisecond, "first reconnect backoff bound (doubles per failed attempt, full jitter)")
	fs.DurationVar(&c.BackoffMax, "backoff-max", 5*time.Second, "largest reconnect backoff")
	fs.StringVar(&c.DatabaseURL, "database-url", os.Getenv("REWIND_DATABASE_URL"), "the server's database, to create accounts in (default $REWIND_DATABASE_URL)")
	fs.StringVar(&c.TokenSecret, "token-secret", os.Getenv("REWIND_TOKEN_SECRET"), "the server's REWIND_TOKEN_SECRET when it has one (default: the secret kept in the database)")
	fs.DurationVar(&c.TokenTTL, "token-ttl", 24*time.Hour, "lifetime of minted tokens")
	fs.StringVar(&c.Tokens, "tokens", "mint", "with --database-url: mint tokens with the server's secret, or login over HTTP")
	fs.StringVar(&c.Password, "password", "rewind-load-password", "password of the load accounts")
	fs.StringVar(&c.Prefix, "prefix", "", "account name prefix (default: lt plus 6 random characters)")
	fs.Int64Var(&c.NodeID, "node-id", 1023, "snowflake node id for account ids (keep it apart from the server's REWIND_NODE_ID)")
	fs.BoolVar(&c.ViaHTTP, "via-http", false, "create accounts through register → SMTP → verify → login")
	fs.StringVar(&c.SMTPListen, "smtp-listen", "127.0.0.1:2525", "--via-http: where the harness receives the verification mail")
	fs.IntVar(&c.HTTPConcurrency, "http-concurrency", 4, "HTTP requests at once when registering or logging in")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "the server's pid, to read RSS and CPU from /proc (0: scrape --http/metrics)")
	fs.StringVar(&c.JSON, "json", "", "write every figure of the run to this file")
	fs.DurationVar(&c.Progress, "progress", 0, "progress interval (default 1s on a terminal, 5s otherwise)")
	fs.BoolVar(&c.Quiet, "quiet", false, "no progress lines")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "reconnect":
			c.reconnectSet = true
		case "sessions":
			c.sessionsSet = true
		case "pairs":
			c.pairsSet = true
		case "url":
			c.urlSet = true
		case "http":
			c.httpSet = true
		case "pg-cpu":
			c.pgCPUSet = true
		case "ws-version":
			c.wsVersionSet = true
		}
	})
	return c, c.check()
}

// check validates the config and fills in the defaults that depend on
// other settings.
func (c *Config) check() error {
	switch c.Target {
	case "", "rewind":
		c.Target = "rewind"
	case "centrifugo":
		if c.Scenario != "dm" {
			return errors.New("--target centrifugo: only the dm scenario")
		}
		if !c.urlSet {
			c.URL = "ws://127.0.0.1:8000/connection/websocket"
		}
		if !c.httpSet {
			if u, err := url.Parse(c.URL); err == nil && u.Host != "" {
				c.HTTP = "http://" + u.Host
			}
		}
	default:
		return fmt.Errorf("--target %q: use rewind or centrifugo", c.Target)
	}
	paired := c.chatting() || c.Scenario == "storm" && c.pairsSet
	switch c.Scenario {
	case "idle", "churn", "storm", "dm", "resume", "guild":
	default:
		return fmt.Errorf("--scenario %q: use idle, dm, churn, storm, resume or guild", c.Scenario)
	}
	if c.Target == "centrifugo" && c.Scenario == "guild" {
		return errors.New("--target centrifugo: only the dm scenario")
	}
	if err := c.checkGuild(); err != nil {
		return err
	}
	if paired {
		if c.Pairs < 1 {
			return errors.New("--pairs must be at least 1")
		}
		if !c.sessionsSet {
			c.Sessions = 2 * c.Pairs
		}
		if c.Sessions < 2*c.Pairs {
			return fmt.Errorf("--sessions %d is less than 2 × --pairs %d", c.Sessions, c.Pairs)
		}
	} else {
		c.Pairs = 0
	}
	if (c.chatting() || c.guild()) && c.Rate <= 0 {
		return errors.New("--rate must be positive")
	}
	if c.Warmup < 0 {
		return errors.New("--warmup must not be negative")
	}
	if !c.chatting() {
		c.WarmRooms = false
	}
	if err := c.checkResume(); err != nil {
		return err
	}
	if c.Sessions < 1 {
		return errors.New("--sessions must be at least 1")
	}
	if c.Duration <= 0 || c.Heartbeat <= 0 || c.DialTimeout <= 0 || c.ConnectTimeout <= 0 {
		return errors.New("--duration, --heartbeat, --dial-timeout and --connect-timeout must be positive")
	}
	if c.Scenario == "churn" && (c.Churn <= 0 || c.Hold < 0) {
		return errors.New("churn needs a positive --churn and a --hold of 0 or more")
	}
	if c.WSVersion != 1 && c.WSVersion != 2 {
		return errors.New("--ws-version is 1 or 2")
	}
	if c.Tokens != "mint" && c.Tokens != "login" {
		return errors.New("--tokens is mint or login")
	}
	if c.Target == "centrifugo" {
		c.ViaHTTP = false // no accounts: Centrifugo runs with client.insecure
	} else if !c.ViaHTTP && c.DatabaseURL == "" {
		return errors.New("accounts: give --database-url (the server's database) or --via-http")
	}
	if !c.pgCPUSet {
		c.PGCPU = c.Target == "rewind" && localPostgres(c.DatabaseURL)
	}
	if c.HTTPConcurrency < 1 {
		c.HTTPConcurrency = 1
	}
	if !c.reconnectSet {
		c.Reconnect = c.Scenario == "storm"
	}
	if err := c.checkNodes(); err != nil {
		return err
	}
	if c.Prefix == "" {
		c.Prefix = "lt" + randomBase36(6)
	}
	peak := c.peakSockets()
	if c.Workers <= 0 {
		c.Workers = max(1, (peak+8999)/9000)
	}
	if c.Workers > 64 {
		return errors.New("--workers: at most 64")
	}
	if per := (peak + c.Workers - 1) / c.Workers; per > 18000 {
		return fmt.Errorf("%d sockets per worker would pass the open-files limit: use more --workers", per)
	}
	if c.SourceIPs <= 0 {
		c.SourceIPs = max(1, (peak+9999)/10000)
	}
	if c.SourceIPs > 250 {
		return errors.New("--source-ips: at most 250")
	}
	if ip := net.ParseIP(c.SourceBase).To4(); ip == nil || ip[0] != 127 {
		return fmt.Errorf("--source-base %q is not a 127.x.x.x address", c.SourceBase)
	}
	return nil
}

// checkNodes fills c.nodes from --server, or from --url and --http.
func (c *Config) checkNodes() error {
	if c.Servers == "" {
		if c.CrossNode {
			return errors.New("--cross-node needs two nodes or more in --server")
		}
		c.nodes = []Node{{WS: c.URL, HTTP: c.HTTP}}
		for _, u := range []string{c.URL, c.HTTP} {
			if err := checkLoopback(u); err != nil {
				return err
			}
		}
		return nil
	}
	if c.urlSet || c.httpSet {
		return errors.New("give --server, or --url and --http, not both")
	}
	if c.Target == "centrifugo" {
		return errors.New("--target centrifugo: one node, at --url")
	}
	nodes, err := parseServers(c.Servers)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if err := checkLoopback(n.HTTP); err != nil {
			return err
		}
	}
	if c.CrossNode && len(nodes) < 2 {
		return errors.New("--cross-node needs two nodes or more in --server")
	}
	c.nodes = nodes
	c.URL, c.HTTP = nodes[0].WS, nodes[0].HTTP
	return nil
}

// localPostgres reports whether u is a PostgreSQL URL on this machine: a
// loopback host, or none (the local socket).
func localPostgres(u string) bool {
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "postgres" && p.Scheme != "postgresql" {
		return false
	}
	host := p.Hostname()
	if host == "" || host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// peakSockets is how many sockets the run holds at most.
func (c *Config) peakSockets() int {
	if c.Scenario == "churn" {
		return max(1, int(c.Churn*(c.Hold.Seconds()+2)))
	}
	return c.Sessions
}

// checkLoopback refuses a target outside 127.0.0.0/8 (or ::1): load is
// only ever sent to this machine.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not a URL", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: the harness only targets loopback addresses (127.0.0.0/8)", raw)
	}
	return nil
}

func randomBase36(n int) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = digits[int(b[i])%len(digits)]
	}
	return string(b)
}

// sourceAddrs returns k addresses counting up from base.
func sourceAddrs(base string, k int) []string {
	ip := net.ParseIP(base).To4()
	v := uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
	out := make([]string, k)
	for i := range out {
		x := v + uint32(i)
		out[i] = net.IPv4(byte(x>>24), byte(x>>16), byte(x>>8), byte(x)).String()
	}
	return out
}

// wsURL is the gateway URL of the first node.
func (c *Config) wsURL() string { return c.gatewayURL(c.URL) }

// gatewayURLs are the gateway URLs of the nodes, in --server order.
func (c *Config) gatewayURLs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = c.gatewayURL(n.WS)
	}
	return out
}

// ledger reports whether the run keeps the dm ledger and catches up after
// reconnections: dm with --reconnect against REWIND.
func (c *Config) ledger() bool { return c.Scenario == "dm" && c.Reconnect && c.Target == "rewind" }

// homeNode is the node session i starts on.
func (c *Config) homeNode(i int) int { return homeNode(i, c.Pairs, len(c.nodes), c.CrossNode) }

// nodeHTTP is the HTTP API base of session i's home node.
func (c *Config) nodeHTTP(i int) string {
	if len(c.nodes) == 0 {
		return c.HTTP
	}
	return c.nodes[c.homeNode(i)].HTTP
}

// gatewayURL is the URL the sessions dial for the gateway base.
func (c *Config) gatewayURL(base string) string {
	if c.Target == "centrifugo" {
		return base
	}
	u := strings.TrimRight(base, "/")
	if !strings.HasSuffix(u, "/ws") {
		u += "/ws"
	}
	if c.WSVersion == 2 {
		u += "?v=2"
	}
	return u
}

// guild reports whether the scenario is guild.
func (c *Config) guild() bool { return c.Scenario == "guild" }

// checkGuild validates the guild settings: sessions G×M, protocol v2.
func (c *Config) checkGuild() error {
	if !c.guild() {
		c.Guilds, c.Members = 0, 0
		return nil
	}
	if c.wsVersionSet && c.WSVersion != 2 {
		return errors.New("guild speaks protocol v2: --ws-version 2 (the default for guild)")
	}
	c.WSVersion = 2
	if c.Guilds < 1 || c.Members < 2 {
		return errors.New("guild: --guilds must be at least 1 and --members at least 2")
	}
	n := c.Guilds * c.Members
	if c.sessionsSet && c.Sessions != n {
		return fmt.Errorf("guild: --sessions %d is not --guilds × --members = %d (leave it out)", c.Sessions, n)
	}
	c.Sessions = n
	return nil
}

// chatting reports whether the scenario sends dm traffic: dm and resume.
func (c *Config) chatting() bool { return c.Scenario == "dm" || c.Scenario == "resume" }

// checkResume validates the resume settings (and speaks v2 for resume).
func (c *Config) checkResume() error {
	if c.Scenario != "resume" {
		c.Drop, c.DropAt, c.Down, c.EditEvery, c.DeleteEvery, c.CheckViews = 0, 0, 0, 0, 0, 0
		return nil
	}
	if c.wsVersionSet && c.WSVersion != 2 {
		return errors.New("resume speaks protocol v2: --ws-version 2 (the default for resume)")
	}
	c.WSVersion = 2
	if c.Drop == 0 {
		c.Drop = max(1, c.Pairs/2)
	}
	switch {
	case c.Drop < 0 || c.Drop > c.Pairs:
		return fmt.Errorf("--drop %d: between 1 and --pairs %d", c.Drop, c.Pairs)
	case c.DropAt <= 0 || c.Down < 0:
		return errors.New("--drop-at must be positive and --down not negative")
	case c.DropAt+c.Down >= c.Duration:
		return fmt.Errorf("--drop-at %s + --down %s must end before --duration %s (leave time for the catch-up)", c.DropAt, c.Down, c.Duration)
	case c.EditEvery < 0 || c.DeleteEvery < 0 || c.CheckViews < 0:
		return errors.New("--edit-every, --delete-every and --check-views must not be negative")
	}
	return nil
}

// resumeShare is the resume spec of a worker holding pairs pairs from
// pair first on, after workers holding before drops: its drops, and its
// share of the state checks (spread over the workers by their drops).
func (c *Config) resumeShare(first, pairs, before int) *resumeSpec {
	rs := &resumeSpec{DropAt: c.DropAt, Down: c.Down, EditEvery: c.EditEvery, DeleteEvery: c.DeleteEvery}
	for j := range pairs {
		if dropped(first+j, c.Drop, c.Pairs) {
			rs.Drops = append(rs.Drops, j)
		}
	}
	checks, d := min(c.CheckViews, c.Drop), max(c.Drop, 1)
	rs.CheckViews = checks*(before+len(rs.Drops))/d - checks*before/d
	return rs
}
