package httpapi

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFailureLimiter(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newFailureLimiter(3, time.Minute)
	// Attempts under way count: three at once fill the account.
	var tries []attempt
	for i := range 3 {
		a, ok := l.begin("a", t0.Add(time.Duration(i)*time.Second))
		require.True(t, ok)
		tries = append(tries, a)
	}
	_, ok := l.begin("a", t0.Add(3*time.Second))
	require.False(t, ok, "the fourth concurrent attempt")
	_, ok = l.begin("b", t0.Add(3*time.Second))
	require.True(t, ok, "per account")

	tries[1].undecided() // gives its place back
	a, ok := l.begin("a", t0.Add(4*time.Second))
	require.True(t, ok)
	_, ok = l.begin("a", t0.Add(5*time.Second))
	require.False(t, ok)

	// A minute after the first failure its place frees.
	_, ok = l.begin("a", t0.Add(time.Minute))
	require.True(t, ok)
	a.succeeded() // forgets every failure of the account
	for i := range 3 {
		_, ok = l.begin("a", t0.Add(time.Minute+time.Duration(i)*time.Second))
		require.True(t, ok, i)
	}

	// Accounts whose failures left the window are forgotten.
	l.begin("c", t0.Add(3*time.Minute))
	require.Len(t, l.times, 1, "a and b forgotten")
	l.begin("d", t0.Add(3*time.Minute+time.Second))
	require.Len(t, l.times, 2)
	l.begin("e", t0.Add(10*time.Minute))
	require.Len(t, l.times, 1)

	off := newFailureLimiter(-1, time.Minute)
	for range 100 {
		_, ok := off.begin("a", t0)
		require.True(t, ok)
	}
}
