package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// systemd integration (Type=notify, docs/systemd.md). When NOTIFY_SOCKET
// is set the daemon tells its service manager:
//
//   - STATUS= at every phase change from the start of Open ("replaying:
//     loading the state of 120000 events", "reconciling: …"), and while it
//     serves, whenever the line changes (checked every statusEvery):
//     "serving: 1234 events, 3 peers, 12 attachments", or Readiness's
//     reasons ("degraded: the journal is read-only: …");
//   - READY=1 (with its STATUS=) once, when the phase becomes serving: the
//     socket is bound and answers, replay and the boot reconcile are done;
//   - STOPPING=1 when it starts to stop;
//   - WATCHDOG=1 while it serves, when systemd asked for a watchdog
//     (WATCHDOG_USEC, WATCHDOG_PID): every interval/3 a read job goes
//     through the whole command pipeline (sequencer, replier, the journal's
//     last commit), and the ping is sent only when it was answered within
//     the interval. A stuck sequencer, replier or journal stops the pings
//     and systemd restarts the daemon.
//
// Nothing here blocks the daemon: the phase hook only records what to say;
// one goroutine composes and sends the datagrams, and what piles up while
// a send is slow is folded into the next one (the newest STATUS wins). A
// failed send is logged once per outage.

// statusEvery is how often the serving STATUS= line is recomputed (it is
// sent only when it changed).
const statusEvery = 5 * time.Second

// notifier speaks systemd's notify protocol for one daemon.
type notifier struct {
	log  *slog.Logger
	send func(state string) error // one datagram to NOTIFY_SOCKET
	// line is the STATUS= line while serving; probe submits the
	// watchdog's read job and yields its answer.
	line  func() string
	probe func() <-chan ipc.Response
	// watchdog is systemd's watchdog interval, 0 when it asked for none;
	// every is how often the serving line is recomputed.
	watchdog, every time.Duration

	mu       sync.Mutex
	pend     pending
	phase    Phase
	detail   string
	readied  bool          // READY=1 is queued or sent: never twice
	stopDog  chan struct{} // closed at PhaseStopping: the watchdog ends
	kick     chan struct{} // capacity 1: there is something to send
	done     chan struct{} // closed at PhaseStopped: the sender flushes and ends
	finished chan struct{} // closed when the sender has ended

	// Owned by the sender goroutine.
	lastStatus string
	failing    bool // a send failed and nothing succeeded since (logged once)
}

// pending is what the next datagram says.
type pending struct {
	ready, stopping, watchdog bool
	status                    bool // the phase changed: send STATUS= even if unchanged
	refresh                   bool // recompute the serving line, send it if it changed
}

// startNotify registers the systemd notifier on d's phases when
// NOTIFY_SOCKET is set; otherwise it does nothing. Call it at the start of
// Open, so that systemd hears the early phases.
func startNotify(d *Daemon) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	dog, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		d.log.Warn("systemd: the watchdog settings are unreadable; no watchdog pings", "err", err)
		dog = 0
	}
	n := newNotifier(d.log, sdSend, d.statusLine, func() <-chan ipc.Response {
		return d.submit(&job{read: func(*projections.State) ipc.Response { return ipc.OK{} }, cause: journal.Cause{Op: "watchdog"}})
	}, dog)
	d.log.Info("systemd: notifying the service manager", "socket", os.Getenv("NOTIFY_SOCKET"), "watchdog", dog)
	d.onPhase(n.phaseChanged)
}

// sdSend sends state to NOTIFY_SOCKET through go-systemd.
func sdSend(state string) error {
	sent, err := sd.SdNotify(false, state)
	if err == nil && !sent {
		return fmt.Errorf("NOTIFY_SOCKET is not set")
	}
	return err
}

// newNotifier makes a notifier and starts its sender; phaseChanged drives
// it.
func newNotifier(log *slog.Logger, send func(string) error, line func() string, probe func() <-chan ipc.Response, watchdog time.Duration) *notifier {
	n := &notifier{log: log, send: send, line: line, probe: probe, watchdog: watchdog, every: statusEvery,
		stopDog: make(chan struct{}), kick: make(chan struct{}, 1), done: make(chan struct{}), finished: make(chan struct{})}
	if watchdog > 0 && watchdog/3 < n.every {
		n.every = watchdog / 3
	}
	go n.run()
	return n
}

// phaseChanged is the phase hook: it records what to say and returns at
// once (it runs inside setPhase), except at PhaseStopped, where it waits a
// moment for the last datagrams to go out before the process exits.
func (n *notifier) phaseChanged(p Phase, detail string) {
	n.mu.Lock()
	if n.phase == PhaseStopped && p != PhaseStopped {
		n.mu.Unlock()
		return
	}
	n.phase, n.detail = p, detail
	n.pend.status = true
	startDog := false
	switch p {
	case PhaseServing:
		if !n.readied {
			n.readied, n.pend.ready = true, true
			startDog = n.watchdog > 0
		}
	case PhaseStopping, PhaseStopped:
		if p == PhaseStopping {
			n.pend.stopping = true
		}
		select {
		case <-n.stopDog:
		default:
			close(n.stopDog)
		}
	}
	n.mu.Unlock()
	n.wake()
	if startDog {
		go n.watch()
	}
	if p == PhaseStopped {
		select {
		case <-n.done:
		default:
			close(n.done)
		}
		select {
		case <-n.finished:
		case <-time.After(time.Second):
			n.log.Warn("systemd: the last notification did not go out within 1 s")
		}
	}
}

func (n *notifier) wake() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// run is the sender: it sends what is pending whenever woken, and
// recomputes the serving line every n.every.
func (n *notifier) run() {
	defer close(n.finished)
	t := time.NewTicker(n.every)
	defer t.Stop()
	for {
		select {
		case <-n.kick:
		case <-t.C:
			n.mu.Lock()
			n.pend.refresh = n.phase == PhaseServing
			n.mu.Unlock()
		case <-n.done:
			n.flush()
			return
		}
		n.flush()
	}
}

// flush sends one datagram with everything pending: READY=1 before
// STOPPING=1 (systemd takes the last of them), the status, the ping.
func (n *notifier) flush() {
	n.mu.Lock()
	pd, phase, detail := n.pend, n.phase, n.detail
	n.pend = pending{}
	n.mu.Unlock()
	var msg []string
	if pd.ready {
		msg = append(msg, sd.SdNotifyReady)
	}
	if pd.stopping {
		msg = append(msg, sd.SdNotifyStopping)
	}
	if pd.status || pd.refresh {
		line := phase.String()
		if phase == PhaseServing {
			line = n.line()
		} else if detail != "" {
			line += ": " + detail
		}
		if pd.status || line != n.lastStatus {
			msg = append(msg, "STATUS="+line)
			n.lastStatus = line
		}
	}
	if pd.watchdog {
		msg = append(msg, sd.SdNotifyWatchdog)
	}
	if len(msg) == 0 {
		return
	}
	err := n.send(strings.Join(msg, "\n"))
	switch {
	case err != nil && !n.failing:
		n.failing = true
		n.log.Warn("systemd: cannot notify the service manager; the daemon serves on", "message", msg[0], "err", err)
	case err == nil && n.failing:
		n.failing = false
		n.log.Info("systemd: notifying the service manager again")
	}
}

// ping queues WATCHDOG=1.
func (n *notifier) ping() {
	n.mu.Lock()
	n.pend.watchdog = true
	n.mu.Unlock()
	n.wake()
}

// watch runs the watchdog from READY=1 to STOPPING=1: a probe through the
// pipeline every interval/3, a ping for each answered within the
// interval. A late probe is waited for (not piled up behind) and logged
// once, then again with how long the stall lasted when it is answered.
func (n *notifier) watch() {
	every := n.watchdog / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		start := time.Now()
		answer := n.probe()
		late := time.NewTimer(n.watchdog)
		select {
		case <-answer:
			late.Stop()
			select {
			case <-n.stopDog:
				return // no ping after STOPPING=1
			default:
			}
			n.ping()
		case <-late.C:
			n.log.Warn("systemd watchdog: the command pipeline has not answered a probe; pings stop, and systemd restarts the daemon if this lasts",
				"waited", n.watchdog, "interval", n.watchdog)
			select {
			case <-answer:
				n.log.Warn("systemd watchdog: the command pipeline answered again; pings resume", "stalled", time.Since(start).Round(time.Millisecond))
			case <-n.stopDog:
				return
			}
		case <-n.stopDog:
			late.Stop()
			return
		}
		select {
		case <-t.C:
		case <-n.stopDog:
			return
		}
	}
}

// statusLine is the STATUS= line while serving: what the daemon holds, or
// why it is not ready (Readiness's reasons).
func (d *Daemon) statusLine() string {
	if ready, reasons := d.Readiness(); !ready {
		return strings.Join(reasons, "; ")
	}
	var events uint64
	var peers, atts int
	d.decided.Read(func(st *projections.State) {
		events, atts = st.Seq, len(st.Attachments)
		for _, dev := range st.Peers {
			peers += len(dev)
		}
	})
	return fmt.Sprintf("serving: %d events, %d peers, %d attachments", events, peers, atts)
}
