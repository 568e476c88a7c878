//go:build !linux

package gateway

import "errors"

// poller exists on Linux only; elsewhere every connection keeps a read
// goroutine parked in its socket.
type poller struct{}

var errNoPoller = errors.New("gateway: no poller on this system")

func newPoller(*Handler) (*poller, error)      { return nil, errNoPoller }
func (*poller) close()                         {}
func (*poller) ctl(int, uintptr, uint64) error { return errNoPoller }

const (
	pollAdd = 1
	pollArm = 3
)
