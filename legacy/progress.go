package legacy

import (
	"fmt"
	"io"
	"time"
)

// progress shows how far the import is: on a terminal one line per table
// redrawn in place (rows done of total, rate), otherwise one line per
// finished table, so that a log stays readable.
type progress struct {
	w     io.Writer // nil: silent
	live  bool
	now   func() time.Time
	table string
	total int
	done  int
	start time.Time
	drawn time.Time
}

// redraw is how often a live line is rewritten at most.
const redraw = 100 * time.Millisecond

func (p *progress) begin(table string, total int) {
	p.table, p.total, p.done = table, total, 0
	p.start = p.now()
	p.drawn = time.Time{}
	p.draw(p.start)
}

func (p *progress) add(n int) {
	p.done += n
	if now := p.now(); p.live && now.Sub(p.drawn) >= redraw {
		p.draw(now)
	}
}

func (p *progress) end() {
	now := p.now()
	if p.w == nil {
		return
	}
	if p.live {
		p.draw(now)
		fmt.Fprintln(p.w)
		return
	}
	fmt.Fprintf(p.w, "%s: %d rows in %s\n", p.table, p.done, now.Sub(p.start).Round(time.Millisecond))
}

func (p *progress) draw(now time.Time) {
	if p.w == nil || !p.live {
		return
	}
	p.drawn = now
	rate := 0.0
	if d := now.Sub(p.start).Seconds(); d > 0 {
		rate = float64(p.done) / d
	}
	// \r and erase-line keep one line per table on the terminal.
	fmt.Fprintf(p.w, "\r\x1b[K%s: %d/%d rows, %.0f rows/s", p.table, p.done, p.total, rate)
}
