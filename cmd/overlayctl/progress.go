package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress is a one-line progress bar on a terminal (stderr): a phase
// name, a bar and a count when the total is known, else a spinner with
// the elapsed time. It redraws at most every 100 ms and erases itself when
// done. A nil *progress does nothing (not a terminal, or --progress never).
type progress struct {
	w       io.Writer
	mu      sync.Mutex
	phase   string
	done    uint64
	total   uint64
	start   time.Time
	last    time.Time
	spin    int
	stop    chan struct{}
	stopped chan struct{}
}

// newProgress starts a progress display on w, when mode says so: "always",
// "never", or "auto" (only when w is a terminal).
func newProgress(w io.Writer, mode string) *progress {
	switch mode {
	case "never":
		return nil
	case "auto":
		f, ok := w.(*os.File)
		if !ok || !isTerminal(f) {
			return nil
		}
	}
	p := &progress{w: w, start: time.Now(), stop: make(chan struct{}), stopped: make(chan struct{})}
	go p.tick()
	return p
}

// tick redraws the spinner while a phase without a known total runs.
func (p *progress) tick() {
	defer close(p.stopped)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.draw(true)
			p.mu.Unlock()
		}
	}
}

// Phase starts a phase of total steps (0: unknown).
func (p *progress) Phase(name string, total uint64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.phase, p.total, p.done = name, total, 0
	p.draw(true)
}

// Add counts n steps of the phase.
func (p *progress) Add(n uint64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	p.draw(false)
}

// draw writes the line; unless force, at most every 100 ms.
func (p *progress) draw(force bool) {
	now := time.Now()
	if !force && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	el := now.Sub(p.start).Truncate(100 * time.Millisecond)
	var line string
	if p.total > 0 {
		const width = 30
		frac := min(float64(p.done)/float64(p.total), 1)
		n := int(frac * width)
		line = fmt.Sprintf("%s [%s%s] %d/%d events %3.0f%% %s", p.phase, strings.Repeat("=", n), strings.Repeat(" ", width-n),
			p.done, p.total, frac*100, el)
	} else {
		p.spin++
		line = fmt.Sprintf("%s %c %s", p.phase, `|/-\`[p.spin%4], el)
	}
	fmt.Fprintf(p.w, "\r\033[K%s", line)
}

// Done draws the last state of the phase, then erases the line.
func (p *progress) Done() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.stopped
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw(true)
	fmt.Fprint(p.w, "\r\033[K")
}
