package load

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sample is one reading of the server's process.
type Sample struct {
	T          float64 `json:"t"` // seconds since the run started
	RSS        int64   `json:"rss_bytes"`
	CPUSeconds float64 `json:"cpu_seconds"` // used since the first sample
	CPUPercent float64 `json:"cpu_percent"` // over the last interval (100 = one core)
	Open       int64   `json:"sessions_open"`
}

// sampler reads the server's RSS and CPU every second: from /proc/PID when
// the server runs here, otherwise from its /metrics
// (process_resident_memory_bytes, process_cpu_seconds_total).
type sampler struct {
	source string
	read   func(ctx context.Context) (rss int64, cpu float64, err error)
	start  time.Time
	open   func() int64

	mu      sync.Mutex
	lastCPU float64 // the process's own total at the last sample
	samples []Sample
	errs    int
	lastErr string
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times on Linux.
const clockTicks = 100

func newSampler(pid int, metricsURL string, start time.Time, open func() int64) *sampler {
	s := &sampler{start: start, open: open}
	if pid > 0 {
		s.source = "proc:" + strconv.Itoa(pid)
		s.read = func(context.Context) (int64, float64, error) { return procStat(pid) }
		return s
	}
	s.source = "metrics:" + metricsURL
	c := &http.Client{Timeout: 2 * time.Second}
	s.read = func(ctx context.Context) (int64, float64, error) { return scrapeMetrics(ctx, c, metricsURL) }
	return s
}

// procStat reads RSS (bytes) and CPU time (user+system, seconds) of pid.
func procStat(pid int) (int64, float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis are plain.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15, rss 24.
	if len(f) < 22 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	return rss * int64(os.Getpagesize()), float64(utime+stime) / clockTicks, nil
}

// scrapeMetrics reads the process metrics of a Prometheus text page.
func scrapeMetrics(ctx context.Context, c *http.Client, u string) (int64, float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (int64, float64, error) {
	var rss int64
	var cpu float64
	found := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err == nil {
				rss = int64(v)
				found++
			}
		case "process_cpu_seconds_total":
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err == nil {
				cpu = v
				found++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if found < 2 {
		return 0, 0, fmt.Errorf("no process metrics on the page")
	}
	return rss, cpu, nil
}

// run samples every second until ctx ends.
func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	s.sample(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sample(ctx)
		}
	}
}

func (s *sampler) sample(ctx context.Context) {
	rss, cpu, err := s.read(ctx)
	now := time.Since(s.start).Seconds()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs++
		s.lastErr = err.Error()
		return
	}
	x := Sample{T: now, RSS: rss, Open: s.open()}
	// CPUSeconds accumulates over the run: a server restarted meanwhile
	// counts from zero again, and its time so far is the delta.
	delta := cpu - s.lastCPU
	if delta < 0 {
		delta = cpu
	}
	s.lastCPU = cpu
	if n := len(s.samples); n > 0 {
		p := s.samples[n-1]
		x.CPUSeconds = p.CPUSeconds + delta
		if dt := x.T - p.T; dt > 0 {
			x.CPUPercent = 100 * delta / dt
		}
	}
	s.samples = append(s.samples, x)
}

// last returns the latest sample.
func (s *sampler) last() (Sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return Sample{}, false
	}
	return s.samples[len(s.samples)-1], true
}

func (s *sampler) all() ([]Sample, int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.samples...), s.errs, s.lastErr
}
