// Package gateway is REWIND's WebSocket transport (protocol.md §2.1): it
// upgrades GET /ws with github.com/gobwas/ws, reads messages into a Peer and
// writes the frames queued on a Conn. It knows nothing of JSON, heartbeats or
// authentication; the session actor behind the Peer does.
//
// Invariants, and the tests that guard them:
//
//   - No goroutine waits on an idle connection, and an idle connection holds
//     no buffer: about 1 KiB in all, its Conn and its socket
//     (BenchmarkIdleConnections, TestIdleHoldsNoGoroutine). ServeHTTP
//     returns once the connection is upgraded. A poller (epoll on Linux)
//     watches idle sockets; a connection it cannot watch keeps the
//     goroutine that served it as its reader until it ends.
//   - One goroutine at a time reads a connection: whichever sets
//     Conn.reading owns the read side. The poller starts one when the
//     socket is readable, the writer when the socket needs reading to end
//     (a close frame of ours went out, or a write failed). It reads with
//     pooled buffers, and parks again (gives the buffers back, clears
//     reading, re-arms the poller) only between messages, with nothing
//     buffered, and not closing: a message in progress keeps its reader, and
//     so does a closing connection until the end. It calls the Peer: Text,
//     TooLarge and Binary in arrival order, then Closed exactly once, last
//     (TestClientCloseEchoed, TestFragmentedJoined, TestSplitFrame,
//     TestFramesWithHandshake, TestNoGoroutineLeak, TestMaxFrame).
//   - One goroutine at a time writes a connection, and only while it has
//     something to write: the first Send, pong or close to an idle
//     connection starts it, and it ends when nothing is left. It is the
//     only one that writes to the socket: data frames, pongs and close
//     frames alike (TestPingPong).
//   - Conn.Send never blocks: it queues the frame, at most SendQueue of them
//     and SendBytes bytes, and fails when the queue is full or the
//     connection is closing; a slow client can never stall a fan-out, nor
//     hold more than SendBytes (TestSendFailsWhenQueueFull,
//     TestSendBytesBound). The queue holds pooled blocks only while frames
//     wait. Frames are not copied into it: one encoded broadcast is shared
//     by many connections. Conn.SendAll queues the frames of one answer
//     whole or not at all, against SendBytes only (an answer is bounded by
//     its request: a 500-frame catch-up page fits a 256-frame queue), and
//     into an empty queue whatever its size (TestSendAllQueuesAnAnswerWhole).
//   - Every write is bounded by WriteTimeout; one that exceeds it ends the
//     connection as a slow consumer, 4009, never silently: the queue is
//     dropped and counted, the frame the write was in is finished and the
//     close frame follows within closeWait, else the socket is dropped,
//     still as 4009 (TestWriteTimeoutCloses4009). Over TLS (REWIND_TLS_CERT)
//     the close frame cannot follow: a crypto/tls connection refuses every
//     write after one timed out, so the socket is dropped, still counted
//     as 4009. Frames that pile up in
//     the queue leave in batches, one system call each: a write from the
//     writer's buffer when they are small, else a writev.
//   - A message is checked against MaxMessage (at most 1 MiB) and MaxFrame
//     (at most MaxMessage), all fragments together, from each frame header
//     before its payload is read or anything allocated for it. One larger
//     than MaxMessage is closed with 1009 (TestMaxMessage). A text message
//     larger than MaxFrame is read and dropped as it arrives, through a
//     fixed piece of the pooled reader: what was kept of its first
//     fragments goes, nothing more is buffered, it never reaches Text, and
//     once its last fragment is read TooLarge reports it in its place; the
//     connection goes on, and parks after it as after any message
//     (protocol.md §2.1; TestMaxFrame, TestTooLargeNotBuffered,
//     TestIdleHoldsNoGoroutine, FuzzReadMessage). A binary message is never
//     buffered at any size; Binary reports it.
//   - A text message reaches the Peer only as valid UTF-8: it is checked as
//     its bytes arrive, across fragments and within a frame, a message past
//     MaxFrame too, and the connection fails with 1007 "Invalid UTF-8." as
//     soon as no further bytes could make it valid (RFC 6455 §8.1;
//     TestInvalidUTF8Closes1007, TestTooLargeInvalidUTF8Closes1007,
//     TestCheckUTF8, FuzzCheckUTF8, FuzzReadMessage).
//   - Every ping is put to Peer.Ping, which may refuse it (the session's
//     rate limit); a refused ping gets no pong (TestPingAsksThePeer).
//   - Upgrades are refused before the handshake, with Connection: close so
//     the refused socket goes at once: 503 once MaxConnections are active
//     (TestMaxConnections), 429 once the client's address (an IPv6 /64)
//     holds MaxUnauthenticatedPerIP connections that have not called
//     Conn.Authenticated; a connection stops counting when it authenticates
//     or before its socket closes (TestUnauthenticatedPerAddress,
//     TestAddrKey).
//   - Close writes the queued frames, then the close frame; Abort drops
//     them (TestCloseFlushesQueue, TestSendFailsWhenQueueFull,
//     TestAbortDropsQueue). A client close frame is answered with its code
//     (RFC 6455 §5.5.1); a close of ours is answered by the client within
//     closeWait or the socket is dropped (TestCloseWaitBounded). Protocol
//     violations close with 1002, a frame length with its top bit set
//     included, inside a message past MaxFrame too (TestProtocolErrors,
//     TestLengthTopBitCloses1002).
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
//
// TestWebSocketConformance runs the Autobahn|Testsuite's cases for a
// server (sections 1-7, 9, 10; compression does not apply) against a real
// server's /ws; conformance_test.go says how each is ported, and its
// TestWebSocketOversize tests the limits past the suite's scale.
package gateway
