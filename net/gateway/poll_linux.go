//go:build linux

package gateway

import (
	"os"
	"syscall"
)

// poller tells when idle connections become readable, so that they need no
// goroutine parked in a read meanwhile. It is one epoll instance (epoll(7))
// where each idle connection's socket is registered EPOLLONESHOT: one event
// starts one reader, and the socket is armed again only when that reader
// parks. The epoll instance's own descriptor is handed to the runtime's
// netpoller, so the poller's goroutine waits like any socket read, without
// holding a thread, and closing it ends that goroutine.
//
// The Handler starts a poller with its first connection and closes it when
// its last connection ends.
type poller struct {
	h  *Handler
	fd int      // the epoll instance; valid until ep is closed
	ep *os.File // fd, in the runtime's netpoller
}

// pollEvents is what wakes a parked connection: bytes to read, or the
// client gone. EPOLLERR and EPOLLHUP are reported anyway.
const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

func newPoller(h *Handler) (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// Non-blocking, so that os.NewFile registers it with the netpoller.
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	p := &poller{h: h, fd: fd, ep: os.NewFile(uintptr(fd), "epoll")}
	rc, err := p.ep.SyscallConn()
	if err != nil {
		p.ep.Close()
		return nil, err
	}
	go p.loop(rc)
	return p, nil
}

// close stops the poller. No connection may be registered any more.
func (p *poller) close() {
	p.ep.Close()
}

// loop hands every connection reported readable to a reader, until the
// poller is closed.
func (p *poller) loop(rc syscall.RawConn) {
	var (
		events [128]syscall.EpollEvent
		ready  [len(events)]*Conn
		n      int
	)
	wait := func(fd uintptr) bool {
		var err error
		n, err = syscall.EpollWait(int(fd), events[:], 0)
		if err != nil {
			n = 0
			return err != syscall.EAGAIN // EINTR: poll again
		}
		return n > 0 // none ready: park until the instance is readable
	}
	for {
		// The netpoller's readiness is reset before wait polls, so an event
		// that comes after the poll still wakes it.
		if err := rc.Read(wait); err != nil {
			return // closed
		}
		p.h.mu.Lock()
		for i, ev := range events[:n] {
			ready[i] = p.h.conns[pollKey(ev)]
		}
		p.h.mu.Unlock()
		for i, c := range ready[:n] {
			if c != nil { // nil: ended meanwhile
				c.kick()
			}
			ready[i] = nil
		}
	}
}

// ctl registers or re-arms (op EPOLL_CTL_ADD or EPOLL_CTL_MOD) the socket
// fd of the connection id. The caller holds fd through RawConn.Control, so
// it cannot be closed and reused by another connection meanwhile.
func (p *poller) ctl(op int, fd uintptr, id uint64) error {
	ev := syscall.EpollEvent{Events: pollEvents}
	setPollKey(&ev, id)
	if err := syscall.EpollCtl(p.fd, op, int(fd), &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

const (
	pollAdd = syscall.EPOLL_CTL_ADD
	pollArm = syscall.EPOLL_CTL_MOD
)

// The 64 bits of epoll_data carry the connection's id, in Fd and Pad (the
// only fields that cover them on every GOARCH).
func setPollKey(ev *syscall.EpollEvent, id uint64) {
	ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32))
}

func pollKey(ev syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}
