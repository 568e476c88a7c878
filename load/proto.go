package load

import "time"

// The parent talks to its workers over their standard input and output,
// one JSON object a line. The parent writes the workerSpec first, then
// commands; it closing the worker's input means stop. A worker writes
// workerReports: progress every second, phase events, and one result
// before it exits.

// workerEnv marks a process started as a worker.
const workerEnv = "REWIND_LOAD_WORKER"

// Account is one load user and a token for it.
type Account struct {
	Name  string `json:"name"`
	Token string `json:"token"`
}

// workerSpec is one worker's share of a run.
type workerSpec struct {
	Index    int    `json:"index"`
	Scenario string `json:"scenario"`
	Target   string `json:"target"` // rewind, centrifugo
	// URLs are the nodes' gateway URLs, path and version included; Homes
	// the node (index into URLs) each of Accounts starts on.
	URLs      []string      `json:"urls"`
	Homes     []int         `json:"homes"`
	SourceIPs []string      `json:"source_ips"`
	Offset    int           `json:"offset"` // global index of Accounts[0], which picks its source address
	Accounts  []Account     `json:"accounts"`
	Pairs     int           `json:"pairs"`    // Accounts[2i] and Accounts[2i+1] are dm pairs for i < Pairs
	Befriend  bool          `json:"befriend"` // pairs are not friends yet: befriend them over the gateway
	Rate      float64       `json:"rate"`     // dm sends per second, this worker's share
	Size      int           `json:"size"`     // dm content length
	Warmup    time.Duration `json:"warmup"`   // dm: sends in this first part of the sending are the warm-up
	Churn     float64       `json:"churn"`    // churn connects per second, this worker's share
	Hold      time.Duration `json:"hold"`     // how long a churn session stays
	Heartbeat time.Duration `json:"heartbeat"`
	// ConnectConcurrency caps this worker's connections being opened at
	// once (0: no cap).
	ConnectConcurrency int           `json:"connect_concurrency"`
	DialTimeout        time.Duration `json:"dial_timeout"`
	ConnectTimeout     time.Duration `json:"connect_timeout"` // bound of the first connect phase
	Reconnect          bool          `json:"reconnect"`       // reconnect after the server closed or lost a session
	// Ledger: dm with --reconnect: keep every acknowledged and delivered
	// message id, catch up on history after a loss, count what never
	// arrived.
	Ledger bool `json:"ledger"`
	// Resume: the resume scenario's drops, edits and state checks (nil:
	// another scenario).
	Resume *resumeSpec `json:"resume,omitempty"`
	// Guild: the guild scenario's members per guild (nil: another
	// scenario).
	Guild *guildSpec `json:"guild,omitempty"`
	// Epoch, when set, is the run's common clock origin (unix
	// nanoseconds): the worker's stamps count from it, so that a send
	// stamped by one worker is timed where another one receives it.
	Epoch      int64         `json:"epoch,omitempty"`
	Backoff    time.Duration `json:"backoff"`
	BackoffMax time.Duration `json:"backoff_max"`
	Drain      time.Duration `json:"drain"`
	Progress   time.Duration `json:"progress"`
	// Deadline is when the worker stops by itself whatever it is told
	// (unix nanoseconds).
	Deadline int64 `json:"deadline"`
}

// command is what the parent tells a running worker.
type command struct {
	Cmd string `json:"cmd"` // cmdDM, cmdWarm, cmdFirst, cmdStorm, cmdStop
	// cmdDM: when the parent started the sending (unix nanoseconds), from
	// which every worker counts the warm-up.
	At int64 `json:"at,omitempty"`
	// cmdGuildJoin: every guild created, with its invite.
	Guilds []guildInfo `json:"guilds,omitempty"`
}

const (
	cmdDM    = "dm"    // start sending
	cmdWarm  = "warm"  // one unmeasured message per pair, to warm the rooms
	cmdFirst = "first" // one measured message per pair, at once
	cmdStorm = "storm" // close every session and reconnect it at once
	cmdStop  = "stop"  // stop sending, drain, close, report

	cmdGuildCreate = "guild_create" // guild: the first members create their guilds and invites
	cmdGuildJoin   = "guild_join"   // guild: the others join with the invites
)

// Report types.
const (
	repProgress  = "progress"
	repReady     = "ready"     // the first connect phase is over
	repStormed   = "stormed"   // every session is back after a storm
	repLost      = "lost"      // a session was lost (first loss since the worker was last whole)
	repRecovered = "recovered" // every session is back after losses
	repWarmed    = "warmed"    // the warm-up messages are answered (or given up on)
	repFirstDone = "first"     // the first messages are answered (or given up on)
	repResult    = "result"
	repGuilds    = "guilds" // the guilds this worker's first members created
	repJoined    = "joined" // this worker's members joined (or failed to)
)

// workerReport is one line a worker writes.
type workerReport struct {
	Type   string           `json:"type"`
	Worker int              `json:"worker"`
	At     int64            `json:"at"` // unix nanoseconds
	Counts map[string]int64 `json:"counts,omitempty"`
	// ready
	Started int64 `json:"started,omitempty"` // when its connect phase began
	// result
	Hists   map[string]string `json:"hists,omitempty"` // encoded HdrHistograms
	Errors  map[string]int64  `json:"errors,omitempty"`
	Reasons map[string]int64  `json:"reasons,omitempty"` // "code reason"
	Closes  map[string]int64  `json:"closes,omitempty"`
	// Unexpected closes by code: the closes the harness did not cause.
	UnexpectedCloses map[string]int64 `json:"unexpected,omitempty"`
	CPUSeconds       float64          `json:"cpu_seconds,omitempty"`
	MaxRSS           int64            `json:"max_rss,omitempty"`
	// Nodes are the per-node counts, in URLs order.
	Nodes []map[string]int64 `json:"nodes,omitempty"`
	Error string             `json:"error,omitempty"`
	// guild: the guilds created (repGuilds), the members in each guild
	// by guild index (repJoined), the channel sends written by guild
	// (result).
	GuildInfos  []guildInfo   `json:"guild_infos,omitempty"`
	GuildJoined map[int]int64 `json:"guild_joined,omitempty"`
	GuildSent   map[int]int64 `json:"guild_sent,omitempty"`
	// result, with a ledger checked: the breakdown of the messages found
	// in history at the end (from this worker's own first loss).
	LostEvents *LostEvents `json:"lost_events,omitempty"`
}
