package gateway

import (
	"errors"
	"strconv"
)

// Cause names why a connection ended.
type Cause string

// The causes of a disconnect.
const (
	CauseClientClose   Cause = "client close"   // the client sent a close frame first
	CauseReadError     Cause = "read error"     // the socket failed or the client vanished
	CauseWriteTimeout  Cause = "write timeout"  // one frame took longer than WriteTimeout
	CauseWriteError    Cause = "write error"    // the socket refused a write
	CauseTooLarge      Cause = "too large"      // a message exceeded MaxMessage: close 1009
	CauseProtocolError Cause = "protocol error" // RFC 6455 violated: close 1002
	CauseInvalidUTF8   Cause = "invalid utf-8"  // a text message not valid UTF-8: close 1007
	CauseServerClose   Cause = "server close"   // Conn.Close or Conn.Abort
	CauseShutdown      Cause = "shutdown"       // Handler.Shutdown: close 1001
)

// ErrTooLarge is wrapped by the Disconnect of a connection closed with 1009.
var ErrTooLarge = errors.New("message larger than MaxMessage")

// A connection whose write runs past WriteTimeout is a slow consumer
// (protocol.md §2.1): closed with this code and reason, cause "write
// timeout". The session uses the same for a full queue.
const (
	CloseSlowConsumer  = 4009
	SlowConsumerReason = "Slow consumer."
)

// Disconnect is the reason Peer.Closed receives: the first cause that ended
// the connection.
type Disconnect struct {
	Cause Cause
	// Code is the connection's close code (RFC 6455 §7.1.5): the one sent by
	// whoever closed first, 1005 for a close frame without one, 1006 when no
	// close frame was exchanged. A write timeout is 4009 even when the
	// client never read the close frame that says so.
	Code   uint16
	Reason string // the close frame's reason text, if any
	Err    error  // the underlying I/O or protocol error, if any
}

func (d *Disconnect) Error() string {
	s := "websocket " + string(d.Cause) + " " + strconv.Itoa(int(d.Code))
	if d.Reason != "" {
		s += " " + strconv.Quote(d.Reason)
	}
	if d.Err != nil {
		s += ": " + d.Err.Error()
	}
	return s
}

func (d *Disconnect) Unwrap() error { return d.Err }
