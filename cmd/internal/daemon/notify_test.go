package daemon

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

// sentLog records the datagrams a notifier sends, with when.
type sentLog struct {
	mu   sync.Mutex
	msgs []sentMsg
}

type sentMsg struct {
	at   time.Time
	text string
}

func (s *sentLog) send(state string) error {
	s.mu.Lock()
	s.msgs = append(s.msgs, sentMsg{time.Now(), state})
	s.mu.Unlock()
	return nil
}

func (s *sentLog) all() []sentMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sentMsg(nil), s.msgs...)
}

// waitFor waits until a datagram holding assignment has been sent and
// returns its index.
func (s *sentLog) waitFor(t *testing.T, assignment string, from int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for i, m := range s.all() {
			if i >= from && hasLine(m.text, assignment) {
				return i
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no %q sent in 5 s; sent:\n%s", assignment, joinAll(s.all()))
	return 0
}

func hasLine(msg, line string) bool {
	for _, l := range strings.Split(msg, "\n") {
		if l == line || (strings.HasSuffix(line, "=") && strings.HasPrefix(l, line)) {
			return true
		}
	}
	return false
}

// A probe whose answer the test releases.
type probes struct {
	mu      sync.Mutex
	block   bool
	held    []chan ipc.Response
	submits int
}

func (p *probes) probe() <-chan ipc.Response {
	ch := make(chan ipc.Response, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.submits++
	if p.block {
		p.held = append(p.held, ch)
	} else {
		ch <- ipc.OK{}
	}
	return ch
}

func (p *probes) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.block = false
	for _, ch := range p.held {
		ch <- ipc.OK{}
	}
	p.held = nil
}

// The notifier's protocol against an injected sender: STATUS= for the
// early phases and no READY=1 before serving; READY=1 with the serving
// line exactly once; WATCHDOG=1 at about interval/3 while probes are
// answered, none while a probe is held past the interval, again after;
// STOPPING=1 and no ping after it.
func TestNotifierPhasesAndWatchdog(t *testing.T) {
	const interval = 150 * time.Millisecond
	var sent sentLog
	pr := &probes{}
	line := "serving: 1 events, 0 peers, 0 attachments"
	var lineMu sync.Mutex
	n := newNotifier(slog.New(slog.DiscardHandler), sent.send, func() string {
		lineMu.Lock()
		defer lineMu.Unlock()
		return line
	}, pr.probe, interval)
	if n.every != interval/3 {
		t.Fatalf("status check every %v, want interval/3 = %v", n.every, interval/3)
	}
	n.phaseChanged(PhaseStarting, "")
	n.phaseChanged(PhaseReplaying, "loading the state of 120000 events")
	i := sent.waitFor(t, "STATUS=replaying: loading the state of 120000 events", 0)
	n.phaseChanged(PhaseReconciling, "making the host match the state")
	i = sent.waitFor(t, "STATUS=reconciling: making the host match the state", i)
	time.Sleep(2 * interval)
	for _, m := range sent.all() {
		if hasLine(m.text, "READY=1") || hasLine(m.text, "WATCHDOG=1") {
			t.Fatalf("%q sent before serving", m.text)
		}
	}
	pr.mu.Lock()
	early := pr.submits
	pr.mu.Unlock()
	if early != 0 {
		t.Fatalf("%d watchdog probes before serving", early)
	}

	n.phaseChanged(PhaseServing, "")
	r := sent.waitFor(t, "READY=1", i)
	if m := sent.all()[r].text; !hasLine(m, "STATUS="+line) {
		t.Fatalf("READY=1 came without the serving line: %q", m)
	}
	// The line is refreshed when it changes.
	lineMu.Lock()
	line = "serving: 2 events, 0 peers, 0 attachments"
	lineMu.Unlock()
	sent.waitFor(t, "STATUS=serving: 2 events, 0 peers, 0 attachments", r)
	n.phaseChanged(PhaseServing, "") // a second serving (never happens) is no second READY
	time.Sleep(10 * interval)
	pings := pingTimes(sent.all())
	if len(pings) < 5 {
		t.Fatalf("%d WATCHDOG=1 in %v at interval %v; want about 10", len(pings), 10*interval, interval)
	}
	for k := 1; k < len(pings); k++ {
		if gap := pings[k].Sub(pings[k-1]); gap > interval {
			t.Errorf("pings %d and %d are %v apart, more than the interval %v", k-1, k, gap, interval)
		}
	}

	// A probe that is not answered: no ping until it is.
	pr.mu.Lock()
	pr.block = true
	pr.mu.Unlock()
	time.Sleep(interval / 2) // the probe in flight may still be answered
	stalled := time.Now()
	time.Sleep(4 * interval)
	if p := pingTimes(sent.all()); p[len(p)-1].After(stalled) {
		t.Fatalf("WATCHDOG=1 sent at %v while the probe was held (since %v)", p[len(p)-1], stalled)
	}
	pr.release()
	released := time.Now()
	time.Sleep(3 * interval)
	var after int
	for _, p := range pingTimes(sent.all()) {
		if p.After(released) {
			after++
		}
	}
	if after < 2 {
		t.Fatalf("%d pings in %v after the pipeline answered again; want pings to resume", after, 3*interval)
	}
	if ready := strings.Count(joinAll(sent.all()), "READY=1"); ready != 1 {
		t.Fatalf("READY=1 sent %d times", ready)
	}

	n.phaseChanged(PhaseStopping, "")
	s := sent.waitFor(t, "STOPPING=1", 0)
	stoppedAt := sent.all()[s].at
	time.Sleep(2 * interval)
	start := time.Now()
	n.phaseChanged(PhaseStopped, "")
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("PhaseStopped waited %v", took)
	}
	for _, p := range pingTimes(sent.all()) {
		if p.After(stoppedAt) {
			t.Fatalf("WATCHDOG=1 at %v after STOPPING=1 at %v", p, stoppedAt)
		}
	}
	if last := sent.all(); !hasLine(last[len(last)-1].text, "STATUS=stopped") {
		t.Fatalf("last datagram %q, want STATUS=stopped", last[len(last)-1].text)
	}
}

func pingTimes(msgs []sentMsg) []time.Time {
	var out []time.Time
	for _, m := range msgs {
		if hasLine(m.text, "WATCHDOG=1") {
			out = append(out, m.at)
		}
	}
	return out
}

func joinAll(msgs []sentMsg) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(m.text + "\n")
	}
	return b.String()
}

// A notify socket that blocks every send never blocks a phase change (the
// daemon), and PhaseStopped gives up after a second. A failing socket is
// logged once, not at every datagram.
func TestNotifierNeverBlocksAndLogsOnce(t *testing.T) {
	stuck := make(chan struct{})
	defer close(stuck)
	n := newNotifier(slog.New(slog.DiscardHandler), func(string) error { <-stuck; return nil },
		func() string { return "serving" }, nil, 0)
	start := time.Now()
	for range 1000 {
		n.phaseChanged(PhaseReplaying, "x")
	}
	n.phaseChanged(PhaseServing, "")
	n.phaseChanged(PhaseStopping, "")
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Fatalf("1003 phase changes against a stuck socket took %v", took)
	}
	start = time.Now()
	n.phaseChanged(PhaseStopped, "")
	if took := time.Since(start); took < 900*time.Millisecond || took > 3*time.Second {
		t.Fatalf("PhaseStopped against a stuck socket returned after %v, want about 1 s", took)
	}

	var logs countHandler
	var sends int
	var mu sync.Mutex
	f := newNotifier(slog.New(&logs), func(string) error {
		mu.Lock()
		sends++
		mu.Unlock()
		return errors.New("connection refused")
	}, func() string { return "serving" }, nil, 0)
	for k := range 50 {
		f.phaseChanged(PhaseReplaying, string(rune('a'+k%26)))
		time.Sleep(time.Millisecond)
	}
	f.phaseChanged(PhaseStopped, "")
	mu.Lock()
	defer mu.Unlock()
	if sends < 2 {
		t.Fatalf("%d sends", sends)
	}
	if w := logs.count(slog.LevelWarn); w != 1 {
		t.Fatalf("%d warnings for %d failed sends, want 1", w, sends)
	}
}

type countHandler struct {
	mu sync.Mutex
	n  map[slog.Level]int
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[slog.Level]int{}
	}
	h.n[r.Level]++
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }
func (h *countHandler) count(l slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[l]
}
