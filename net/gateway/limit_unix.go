//go:build unix

package gateway

import "syscall"

// openFilesLimit is the soft RLIMIT_NOFILE, 0 when it cannot be read or
// there is none.
func openFilesLimit() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur >= 1<<31 {
		return 0
	}
	return int(l.Cur)
}
