//go:build !unix

package gateway

// openFilesLimit is 0 where there is no RLIMIT_NOFILE: no bound.
func openFilesLimit() int { return 0 }
