package daemon

import (
	"fmt"
	"sync"
	"time"
)

// Phase is where the daemon is in its life: what /readyz, systemd's
// STATUS= line and the logs report while it boots and stops.
type Phase int32

const (
	PhaseStarting    Phase = iota // opening the journal, checking its history
	PhaseReplaying                // loading the snapshot, replaying the journal
	PhaseReconciling              // the boot reconcile: the host made to match the state
	PhaseServing                  // the socket answers
	PhaseStopping                 // draining, final snapshot
	PhaseStopped
)

func (p Phase) String() string {
	switch p {
	case PhaseStarting:
		return "starting"
	case PhaseReplaying:
		return "replaying"
	case PhaseReconciling:
		return "reconciling"
	case PhaseServing:
		return "serving"
	case PhaseStopping:
		return "stopping"
	case PhaseStopped:
		return "stopped"
	}
	return fmt.Sprintf("phase(%d)", int32(p))
}

// phaseState is the daemon's phase and who wants to hear of changes.
type phaseState struct {
	mu     sync.Mutex
	p      Phase
	detail string
	since  time.Time
	hooks  []func(p Phase, detail string)
}

// setPhase moves the daemon to phase p; detail says more ("replaying
// 12000 events"). Hooks run synchronously, in order, outside the lock.
func (d *Daemon) setPhase(p Phase, detail string) {
	d.phase.mu.Lock()
	d.phase.p, d.phase.detail, d.phase.since = p, detail, time.Now()
	hooks := d.phase.hooks
	d.phase.mu.Unlock()
	for _, h := range hooks {
		h(p, detail)
	}
}

// onPhase adds a hook called at every phase change (and once now, with
// the current phase).
func (d *Daemon) onPhase(h func(p Phase, detail string)) {
	d.phase.mu.Lock()
	d.phase.hooks = append(d.phase.hooks, h)
	p, detail := d.phase.p, d.phase.detail
	d.phase.mu.Unlock()
	h(p, detail)
}

// Phase returns the daemon's phase, what it is doing in it, and since when.
func (d *Daemon) Phase() (Phase, string, time.Time) {
	d.phase.mu.Lock()
	defer d.phase.mu.Unlock()
	return d.phase.p, d.phase.detail, d.phase.since
}

// Readiness reports whether the daemon does its whole job: it serves
// (replay, the boot reconcile and the socket are done) and the journal
// takes writes. Otherwise reasons say why not, for /readyz and systemd's
// STATUS= line. A problem of one effect (a bridge that cannot be made)
// leaves it ready: status lists those.
func (d *Daemon) Readiness() (ready bool, reasons []string) {
	p, detail, _ := d.Phase()
	if p != PhaseServing {
		r := p.String()
		if detail != "" {
			r += ": " + detail
		}
		return false, []string{r}
	}
	if d.store != nil {
		if h := d.store.Health(); !h.OK() {
			reasons = append(reasons, fmt.Sprintf("degraded: the journal is read-only: %v", h.Err))
		}
	}
	for _, pr := range d.probs.List() {
		reasons = append(reasons, fmt.Sprintf("degraded: %s: %v", pr.Key, pr.Err))
	}
	return len(reasons) == 0, reasons
}
