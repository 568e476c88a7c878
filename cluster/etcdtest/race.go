//go:build race

package etcdtest

// raceEnabled: this binary was built with the race detector.
const raceEnabled = true
