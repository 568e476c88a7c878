// Package gateway is REWIND's WebSocket transport (protocol.md §2.1): it
// upgrades GET /ws with github.com/gobwas/ws, reads messages into a Peer and
// writes the frames queued on a Conn. It knows nothing of JSON, heartbeats or
// authentication; the session actor behind the Peer does.
//
// Invariants, and the tests that guard them:
//
//   - Two goroutines per connection. The read goroutine (the one that ran
//     ServeHTTP) owns the read buffers, parses frames and calls the Peer:
//     Text and Binary in arrival order, then Closed exactly once, last
//     (TestClientCloseEchoed, TestFragmentedJoined, TestNoGoroutineLeak).
//     The write goroutine is the only one that writes to the socket: data
//     frames, pongs and close frames alike (TestPingPong).
//   - Conn.Send never blocks: it puts the frame on a channel of SendQueue
//     frames and fails when it is full or the connection is closing; a slow
//     client can never stall a fan-out (TestSendFailsWhenQueueFull). Frames
//     are not copied: one encoded broadcast is shared by many connections.
//   - Every write is bounded by WriteTimeout; one that exceeds it drops the
//     connection (TestWriteTimeoutDrops). Frames that pile up in the queue
//     leave in batches, one writev each.
//   - A message is checked against MaxFrame, all fragments together, from
//     each frame header before its payload is read or anything allocated
//     for it; a larger one is closed with 1009 (TestMaxFrame,
//     FuzzReadMessage).
//   - Close writes the queued frames, then the close frame; Abort drops
//     them (TestCloseFlushesQueue, TestSendFailsWhenQueueFull,
//     TestAbortDropsQueue). A client close frame is answered with its code
//     (RFC 6455 §5.5.1); a close of ours is answered by the client within
//     closeWait or the socket is dropped (TestCloseWaitBounded). Protocol
//     violations close with 1002 (TestProtocolErrors).
//   - Once closing, Send fails and messages read are discarded
//     (TestCloseFlushesQueue).
//   - Every ended connection has one Disconnect, the first cause recorded,
//     which Peer.Closed receives and the close log line names
//     (TestClientCloseEchoed).
//   - Shutdown refuses new upgrades with 503, closes every connection with
//     1001 and waits for them (TestShutdown).
//
// The read path allocates only the message handed to Peer.Text, the write
// path nothing (BenchmarkReadText, BenchmarkSend).
package gateway
