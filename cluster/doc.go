// Package cluster is REWIND's use of protoactor-go's cluster: how a node
// claims its snowflake node id, joins its cluster, and tells what it sees
// of the membership. User and room actors become cluster grains (kinds
// "user" and "room", given to Start by the server), placed by protoactor's
// disthash identity lookup over the members that etcd lists
// (clusterproviders/etcd); sessions stay on their node and are reached by
// PID over protoactor's remote.
//
// What it owns, in etcd (one prefix per cluster name):
//
//	/rewind/cluster/<name>/node-id/<id>            the node-id claims (ClaimNodeID)
//	/rewind/cluster/<name>/members/<name>/<member> protoactor's provider's members
//
// and in the process: the node-id claim's lease and its keep-alive, and
// what the node last saw of the membership (Joined, Members). The member
// list, the placement and the grains are protoactor's.
//
// The server calls Start (after creating its actor system, before
// spawning actors whose PIDs cross nodes), exports Collectors on /metrics,
// answers /readyz from Joined, stops when Lost closes, and leaves in two
// steps: Leave (its key out of etcd, so the others place its identities
// elsewhere, while its remote still carries what its grains hand on:
// actors/doc.go "In a cluster"), then Shutdown before its store closes
// (Shutdown stops this node's grains and its remote).
//
// # Invariants, and the tests that guard them
//
//   - One running node per node id in a cluster: a node claims its
//     REWIND_NODE_ID by creating its key only if absent, in one
//     transaction, bound to a lease that the node keeps alive; a second
//     claimant is refused with one line, "node id 3 is held by
//     127.0.0.1:7001 (cluster rewind)", before it listens anywhere
//     (TestNodeIDClaimIsExclusive, TestSecondNodeWithTheSameIDRefused).
//     Shutdown revokes the lease: the id is free at once. A node that dies
//     frees it when its lease ends, NodeIDTTL (10 s) after its last
//     keep-alive (TestNodeIDClaimOfADeadHolderExpires, and with a real
//     SIGKILL TestKilledNodeIdentitiesMove). A node whose lease runs out
//     while it lives (etcd out of reach longer than the TTL) sees Lost
//     close and is no longer Joined; as another node may then take its id,
//     it must stop (TestNodeIDClaimLostWhenEtcdGoes).
//   - An identity lives on one node, whichever node calls it
//     (TestThreeNodesOneIdentityOneNode: 30 identities called from each
//     of 3 nodes, each activated once, where it answers).
//   - A node that leaves hands its identities to the others at once, and
//     the others' identities stay where they are; a node that joins takes
//     some over, and the old activations of those stop, so that once the
//     membership has settled each identity lives once
//     (TestThreeNodesOneIdentityOneNode). A node that is killed stays a
//     member until its provider lease (3 s, fixed in protoactor) ends;
//     then its identities move (TestKilledNodeIdentitiesMove).
//   - Joined means: registered in etcd, seen by itself in the member list,
//     holding its node id, and not shutting down. A node that stopped
//     being a member does not become one again (see Node.Joined), so one
//     missing from its own member list for ExpelGrace (10 s) sees Expelled
//     close, and the server stops as on Lost (TestExpelledNodeStops).
//   - Every node comes to see every member, although protoactor's
//     provider can miss one for good (below): each node writes its member
//     key again, as it is, AnnounceDelay (1 s) after its start and after
//     each member joins its view, and every AnnounceInterval (10 s), and a
//     provider that missed the key takes the Put for a new member
//     (announce.go; TestAnnounceRewritesMemberKey).
//   - A message to a peer that is gone waits at most one connect attempt
//     and its 2 s pause in protoactor's endpoint writer (MaxRetryCount 1,
//     not 5: ~10 s), then goes to the dead letters, which the directory
//     sends again by identity (docs/benchmarks.md §8).
//
// # Grains keep soft state only
//
// protoactor-go#799: while the membership changes, one identity can be
// activated on two nodes at once. The members learn of a change one by
// one, through etcd's watch; a caller whose view is older or newer than
// the owner's asks another node, and disthash's placement actor
// activates whatever it is asked for, poisoning the activations that a
// topology change moved away only when that change reaches it. REWIND's
// grains therefore keep only soft state, rebuilt from the store (sessions
// attach again periodically), and every write goes through the store,
// whose constraints (one seq per chat change, one nonce per author and
// chat) make a duplicate activation harmless: two activations of one
// room cannot both commit one seq, and an acknowledged message is stored
// before it is acknowledged, so none is lost or stored twice.
//
// # protoactor at the pinned version (v0.0.0-20240822202345-3c0e61ca19c9)
//
//   - Data races that -race reports in any process that runs its cluster:
//     remote.Start sets grpc's global logger (grpclog.SetLoggerV2) while
//     other gRPC clients run; the gossip informer shares one math/rand
//     source among all nodes of a process and hands its state to the
//     remote while it changes it (protobuf marshalling a map being
//     written); remote's BlockList reads its set without its lock;
//     disthash's Manager swaps its rendezvous while lookups read it; the
//     etcd provider's shutdown flag is a plain bool. So the tests that run
//     the cluster run without the race detector (etcdtest.WithoutRace: in
//     a -race binary they run again in a child `go test`); the claim tests
//     run with it.
//   - Cluster.RequestFuture shares one options value across calls and
//     clusters (DefaultGrainCallConfig), and options mutate it: Node.Request
//     uses Cluster.Request with options of its own.
//   - The PID cache is not told when a grain moves (ActivationTerminated is
//     broadcast and handled by nobody): a Request through a stale PID
//     fails over by dead letter and retries, but a Send through a cached
//     PID of a moved grain is lost.
//   - StartMember panics on failure (Start recovers it into an error) and
//     sleeps 1 s; Shutdown sleeps 2 s, shuts the actor system down, and
//     never closes the provider's etcd client (Shutdown cancels its
//     context). The provider's member lease is 3 s and not configurable.
//   - Remote.Shutdown can panic "send on closed channel": the endpoint
//     manager sends on the channel of every stream reader it lists, and a
//     reader whose stream ends at that moment (a peer leaving or killed at
//     the same time) has closed its channel but not left the list yet.
//     Node.Shutdown recovers it and stops the gRPC server itself (seen in
//     CI in TestThreeNodesOneIdentityOneNode and TestKilledNodeIdentitiesMove,
//     whose nodes all shut down at once).
//   - The provider lists the members and then starts its watch from
//     etcd's revision of that moment, not the list's, in a goroutine: a
//     member that registers in between is missed by that node until its
//     key is written again (seen in a 5-node bench run: one node saw 4
//     members for the whole run; announce.go heals it).
//   - The provider watches <prefix>/<name> without a trailing slash, so
//     that under one prefix clusters "a" and "ab" would see each other's
//     members: the prefix here is the cluster's own.
//   - etcd 3.4 (Debian's etcd-server 3.4.23) serves the v3.5.10 client and
//     the provider: the v3 API they use (KV, Txn, Lease, Watch) is the same.
//
// # Measured (2 cores; go test -count=1 -v -run 'TestThreeNodes|TestKilled' ./cluster)
//
// Three nodes started at once join in about 1.03 s (StartMember's 1 s
// sleep), and each then sees 3 members. After a graceful Shutdown the
// others see 2 members within about 25 ms and the leaver's identities all
// answer from them within about 30 ms (Shutdown itself takes 2 s). After a
// SIGKILL, the others see 2 members and answer for the dead node's
// identities about 3.1 s later (the provider's 3 s lease); its node id is
// free again after its claim's lease (3 s in that test, 10 s by default).
package cluster
