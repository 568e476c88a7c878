// Package load is rewind-load, REWIND's load-testing harness: it creates
// load accounts (directly in the server's store, or through the real
// register → mail → verify → login path), opens sessions that follow the
// gateway protocol exactly, runs a scenario (idle, dm, churn, storm,
// resume, guild) and
// measures it: connect+auth latency and rate, send→echo and send→delivery
// latency as HdrHistograms (for the whole run, its warm-up and the rest),
// counts by error and close code, the rooms the server activated, and the
// server's RSS and CPU (and PostgreSQL's), also per 1,000 messages. With
// --target centrifugo the dm scenario runs against a Centrifugo node over
// its JSON client protocol instead, for a side-by-side comparison.
//
// A run is one parent process and worker processes. The parent re-executes
// its own binary (WorkerCommand) as workers, each holding well under the
// 20,000 open files a process may have, hands each its share of the
// accounts over standard input and drives the phases with one-line JSON
// commands; the workers report progress and, at the end, their counters
// and encoded histograms as JSON lines on standard output, which the
// parent merges. Sessions dial from loopback source addresses 127.0.0.2,
// 127.0.0.3, … in turn, so a run is not bounded by one address's
// ephemeral ports.
//
// A run may target the nodes of a cluster (--server a,b,…): each session
// has a home node (homeNode: round robin by user, pair p on node p mod N,
// with --cross-node its side B on node (p+1) mod N; TestHomeNode), logs
// in and dials there, and counts its figures under the node it is
// connected to (NodeResult). A dm send's stamp carries a mark when its
// two sides were on different nodes as it was sent, so echoes and
// deliveries are recorded same-node or cross-node by what the sender saw
// (TestSameCrossSplit). The parent probes every node's /readyz during the
// scenario; a node that failed two probes in a row went away, and the
// unexpected closes of the others are those "on surviving nodes".
//
// With --reconnect a session whose connection ended unexpectedly dials
// the other nodes in turn (reconnectNode: starting at one picked by its
// index, so a lost node's sessions spread; its own last; TestReconnectNode)
// with the usual bounded backoff. In a dm run it also keeps a ledger
// (ledger.go), owned by its own goroutine like the rest of its read
// state: the ids of its messages the server acknowledged and of its
// peer's it received. Back after a loss, it loads the DM's history (the
// v1 load request, 100 a page, newest first) back to the last message it
// had seen, counting each message once by id whether it came live, in
// history or both; once every session goroutine has ended, the worker
// counts the acknowledged messages the peer never received (TestCatchUp,
// TestDMReconnect). Acknowledged means stored, so before that, once the
// sending and the drain are over, a final check tells a lost live event
// from a lost message: each session still connected whose peer has
// acknowledged messages it never saw loads the DM's history again (back
// past the oldest of them, at most 100 pages, 64 DMs at once per worker,
// 30 s in all), and each such message counts as found in history at the
// end, missing from history, or not checked (session down, check
// unfinished or out of time; TestFinalCheck, TestAtEnd). Those found are
// broken down (lost_events.go, reconnect.lost_events) by receiver, moved
// (it lost its connection and reconnected) or stationary, and by the
// send time of their stamp: in 1 s buckets from the worker's first loss,
// and for moved receivers by their own re-authentication and catch-up
// (TestLostEventsBucket, TestLostEventsReceiver).
//
// The resume scenario (resume.go) speaks protocol v2 (/ws?v=2): the pairs
// chat as in dm, and each author follows every --edit-every-th send (10)
// with an edit and every --delete-every-th (25) with a delete of one of
// its own messages picked at random, once the send is acknowledged (pair
// p counts its sends from p, so that the pairs' edits, whose sends go out
// in step, spread over the run). At
// --drop-at after the sending began, the receiving sides (B) of --drop
// pairs, spread over the pairs, stop sending, wait for their answers
// (2 s at most) and close cleanly (1000); their peers go on. --down after
// the drop they reconnect: heartbeat, auth, whose v2 answer lists the
// chats with their seq (protocol.md §4.1), and when the DM's seq is above
// the session's position (the highest seq or edit_seq it saw, its own
// echoes included) `load changes` since it, page after page while the end
// marker says more (1,000 pages at most). Each session keeps its view of
// the DM (id → content hash, latest change, deleted) and the changes
// acknowledged to it; a change seen twice (live and caught up) is a
// duplicate, applied once. Live deliveries are also timed by when they
// were sent: before the drop, while down, after the reconnect. Once the
// sending stops, the drain lasts until every change acknowledged to a
// peer reached every session connected (or --drain); then the dropped
// sessions (up to --check-views) load the DM's history afresh (load chat,
// 100 a page) and compare it with their views (absent, extra, stale; 64 at
// once per worker, 30 s in all), and once every session has ended every
// acknowledged send is looked up in the other side's view: seen (live or
// caught up), deleted before it was seen (a catch-up leaves it out), or
// missing; acknowledged edits and deletes likewise (TestResumeWorker and
// TestResumeWorkerFaults run a worker against a simulated v2 server,
// fakev2_test.go).
//
// The guild scenario (guild.go) speaks protocol v2 too: --guilds guilds
// of --members members, one session each (session i is member i mod M of
// guild i / M, so a guild's members may be on several workers); member 0
// of each creates its guild and an invite of unlimited uses, the parent
// hands the invites to every worker and the others join; then all members
// send into their guild's general channel at --rate in all. Every worker
// counts its stamps from the run's common epoch (workerSpec.Epoch), so a
// send is timed where another worker's session receives it. Each session
// counts a message id it already had as a duplicate and a channel seq
// below the highest it saw as out of order; the parent expects every send
// into guild g at each of its other members (sent × (members − 1)), and
// counts the rest missing.
//
// Each session costs one goroutine (it dials, then reads every frame); its
// heartbeats come from one wheel goroutine per worker and dm sends from one
// sender goroutine per worker. Frames are built in the writer's buffer and
// read into the session's, without decoding the JSON on the hot paths.
//
// The harness links no part of the server (its actors, gateway or HTTP
// API): it opens the store with persistence/storeurl and makes accounts
// with auth.UserMaker, as `rewind user create` does.
// TestLinksNoServer in cmd/rewind-load guards this.
package load
