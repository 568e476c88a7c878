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
	// --pg-cpu: every postgres process of the machine together
	PGCPUSeconds float64 `json:"pg_cpu_seconds,omitempty"` // used since the first sample
	PGCPUPercent float64 `json:"pg_cpu_percent,omitempty"`
	PGProcesses  int     `json:"pg_processes,omitempty"`
}

// sampler reads the server's RSS and CPU every second: from /proc/PID when
// the server runs here, otherwise from its /metrics
// (process_resident_memory_bytes, process_cpu_seconds_total).
type sampler struct {
	source string
	read   func(ctx context.Context) (rss int64, cpu float64, err error)
	start  time.Time
	open   func() int64
	pg     *procGroup // nil: PostgreSQL is not sampled

	mu      sync.Mutex
	lastCPU float64 // the process's own total at the last sample
	samples []Sample
	errs    int
	lastErr string
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times on Linux.
const clockTicks = 100

func newSampler(pid int, metricsURL string, start time.Time, open func() int64, pg *procGroup) *sampler {
	s := &sampler{start: start, open: open, pg: pg}
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
	var pgCPU float64
	var pgProcs int
	if s.pg != nil {
		// Even when the server's reading failed: the group's processes are
		// followed from one second to the next.
		pgCPU, pgProcs = s.pg.read()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errs++
		s.lastErr = err.Error()
		return
	}
	x := Sample{T: now, RSS: rss, Open: s.open(), PGCPUSeconds: pgCPU, PGProcesses: pgProcs}
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
			x.PGCPUPercent = 100 * (x.PGCPUSeconds - p.PGCPUSeconds) / dt
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

// procGroup adds up the CPU time of every process of one name (its
// /proc/PID/comm), such as PostgreSQL's postmaster and backends, which come
// and go: each interval counts what the processes seen in both readings
// used between them, plus all of what a process started since used. A
// process that exits between two readings takes its last interval with it.
type procGroup struct {
	comm  string
	procs map[int]procCPU
	total float64 // seconds since the first reading
	read1 bool    // the first reading is done
}

type procCPU struct {
	start int64 // starttime, clock ticks after boot: tells a reused pid apart
	ticks int64 // utime+stime
}

func newProcGroup(comm string) *procGroup { return &procGroup{comm: comm, procs: map[int]procCPU{}} }

// read returns the group's CPU seconds since its first reading and how
// many processes it has now.
func (g *procGroup) read() (float64, int) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return g.total, 0
	}
	now := make(map[int]procCPU, len(g.procs))
	var delta int64
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := "/proc/" + e.Name()
		comm, err := os.ReadFile(dir + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != g.comm {
			continue
		}
		p, ok := procTicks(dir + "/stat")
		if !ok {
			continue // gone meanwhile
		}
		now[pid] = p
		switch prev, seen := g.procs[pid]; {
		case seen && prev.start == p.start:
			delta += p.ticks - prev.ticks
		case g.read1:
			delta += p.ticks // started since the last reading
		}
	}
	g.procs, g.read1 = now, true
	g.total += float64(delta) / clockTicks
	return g.total, len(now)
}

// procTicks reads starttime and utime+stime from a /proc/PID/stat file.
func procTicks(path string) (procCPU, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return procCPU{}, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procCPU{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3: utime is field 14, stime 15, starttime 22.
	if len(f) < 20 {
		return procCPU{}, false
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	start, _ := strconv.ParseInt(f[19], 10, 64)
	return procCPU{start: start, ticks: utime + stime}, true
}

// scrapeCounter reads a counter from a Prometheus text page; found is false
// when the page has no such series.
func scrapeCounter(ctx context.Context, c *http.Client, u, name string) (v float64, found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	return parseCounter(resp.Body, name)
}

// parseCounter sums the samples of metric name over its label sets.
func parseCounter(r io.Reader, name string) (float64, bool, error) {
	var sum float64
	found := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" {
			continue
		}
		switch rest[0] {
		case ' ':
		case '{':
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		default:
			continue // another metric whose name starts with this one
		}
		// value [timestamp]
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, false, err
	}
	return sum, found, nil
}
