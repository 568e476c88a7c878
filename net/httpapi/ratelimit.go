package httpapi

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ipLimiter is a token bucket per client IP. Buckets idle for longer than
// it takes to refill are forgotten, so memory follows the active clients.
type ipLimiter struct {
	perMinute int // ≤ 0 (setting.Off): no limit
	mu        sync.Mutex
	buckets   map[string]*bucket
	swept     time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newIPLimiter(perMinute int) *ipLimiter {
	return &ipLimiter{perMinute: perMinute, buckets: map[string]*bucket{}}
}

// allow takes one token for the client ip.
func (l *ipLimiter) allow(ip string, now time.Time) bool {
	if l.perMinute <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > time.Minute {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[ip]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)}
		l.buckets[ip] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

// failureLimiter bounds failed logins per account: at most max within any
// window. An attempt holds its place from its start, so concurrent
// attempts cannot pass the bound together; a success forgets the
// account's failures, an attempt that could not be judged (hashing busy,
// database down) gives its place back. Accounts whose failures all left
// the window are forgotten.
type failureLimiter struct {
	max    int // ≤ 0: no limit
	window time.Duration
	mu     sync.Mutex
	times  map[string][]time.Time // by account key; attempts, oldest first
	swept  time.Time
}

func newFailureLimiter(max int, window time.Duration) *failureLimiter {
	return &failureLimiter{max: max, window: window, times: map[string][]time.Time{}}
}

// attempt is one login attempt holding its place in a failureLimiter; a
// failed attempt keeps it until it leaves the window.
type attempt struct {
	l   *failureLimiter
	key string
	at  time.Time
}

// begin starts an attempt on account key at now; false when the account
// had max failures (or attempts under way) within the window.
func (l *failureLimiter) begin(key string, now time.Time) (attempt, bool) {
	if l.max <= 0 {
		return attempt{}, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > l.window {
		for k, ts := range l.times {
			if !now.Before(ts[len(ts)-1].Add(l.window)) {
				delete(l.times, k)
			}
		}
		l.swept = now
	}
	ts := l.times[key]
	i := 0
	for i < len(ts) && !now.Before(ts[i].Add(l.window)) {
		i++
	}
	ts = ts[i:]
	if len(ts) >= l.max {
		l.times[key] = ts
		return attempt{}, false
	}
	l.times[key] = append(ts, now)
	return attempt{l: l, key: key, at: now}, true
}

// succeeded forgets the account's failures.
func (a attempt) succeeded() {
	if a.l == nil {
		return
	}
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	delete(a.l.times, a.key)
}

// undecided gives the attempt's place back: it was neither a success nor
// a failure.
func (a attempt) undecided() {
	if a.l == nil {
		return
	}
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	ts := a.l.times[a.key]
	for i, t := range ts {
		if t.Equal(a.at) {
			ts = append(ts[:i:i], ts[i+1:]...)
			break
		}
	}
	if len(ts) == 0 {
		delete(a.l.times, a.key)
		return
	}
	a.l.times[a.key] = ts
}
