package winsvc

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/windows/svc"

	"github.com/zlayer/overlayd/cmd/internal/daemon"
	"github.com/zlayer/overlayd/ipc"
)

// Name is the service's name, the one the orchestrator installs it as.
const Name = "ZLayerDaemon-Overlayd"

// Service-specific exit codes reported with Stopped (Win32ExitCode is then
// ERROR_SERVICE_SPECIFIC_ERROR, 1066); 0 is a clean stop.
const (
	ExitBootFailed  = 1 // daemon.Open failed: journal, keys, replay (logged)
	ExitServeFailed = 2 // the pipe could not be bound (another daemon on it)
	ExitFatal       = 3 // the daemon stopped on a fatal error while serving
)

// Wait hints: how long the SCM is told a pending step may take before the
// next CheckPoint. The handler bumps CheckPoint at each boot phase and every
// tick, so a long replay never looks hung.
const (
	startWaitHint = 30 * time.Second
	stopWaitHint  = 30 * time.Second
	tick          = 2 * time.Second
)

// Events receives the lines a service writes to the Windows event log:
// start, stop and fatal errors (eventlog.Log satisfies it).
type Events interface {
	Info(eid uint32, msg string) error
	Error(eid uint32, msg string) error
}

// Event ids written to the event log.
const (
	EventStarted = 1
	EventStopped = 2
	EventFailed  = 3
)

// Handler is the svc.Handler of zlayer-overlayd: Execute boots the daemon
// from Config and serves until the SCM says Stop or Shutdown (or a client
// sends shutdown), then stops it gracefully (final snapshot, journal
// closed). Config.OnPhase is chained, not replaced.
type Handler struct {
	Config daemon.Config
	Log    *slog.Logger
	Events Events // nil: the log file only

	// Tick overrides the CheckPoint period while pending (tests).
	Tick time.Duration
}

var _ svc.Handler = (*Handler)(nil)

// phases is the latest boot phase, set from the daemon's phase hook
// (which must not block) and read by Execute after a signal on ch.
type phases struct {
	mu sync.Mutex
	p  daemon.Phase
	ch chan struct{}
}

func (ps *phases) set(p daemon.Phase) {
	ps.mu.Lock()
	ps.p = p
	ps.mu.Unlock()
	select {
	case ps.ch <- struct{}{}:
	default:
	}
}

func (ps *phases) get() daemon.Phase {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.p
}

type opened struct {
	d   *daemon.Daemon
	err error
}

// Execute implements svc.Handler. The states it reports: StartPending
// (CheckPoint rising at each boot phase and tick), Running accepting Stop
// and Shutdown once the daemon serves its pipe, StopPending (CheckPoint
// rising) while it stops; the SCM library reports Stopped with the exit
// code returned: 0 after a graceful stop, a service-specific one
// (ExitBootFailed, ExitServeFailed, ExitFatal) otherwise. Interrogate is
// answered with the current status. A Stop that arrives before Running
// (the SCM does not send one, but a Shutdown may race the boot) stops the
// daemon as soon as Open returns.
func (h *Handler) Execute(args []string, r <-chan svc.ChangeRequest, s chan<- svc.Status) (bool, uint32) {
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	every := h.Tick
	if every <= 0 {
		every = tick
	}
	cur := svc.Status{State: svc.StartPending, WaitHint: uint32(startWaitHint / time.Millisecond)}
	report := func(st svc.Status) { cur = st; s <- st }
	report(cur)

	ps := &phases{ch: make(chan struct{}, 1)}
	cfg := h.Config
	next := cfg.OnPhase
	cfg.OnPhase = func(p daemon.Phase, detail string) {
		ps.set(p)
		if next != nil {
			next(p, detail)
		}
	}
	cfg.Log = log
	openc := make(chan opened, 1)
	go func() {
		d, err := daemon.Open(cfg)
		openc <- opened{d, err}
	}()
	log.Info("service starting", "service", Name, "data_dir", cfg.DataDir)

	t := time.NewTicker(every)
	defer t.Stop()
	var (
		d         *daemon.Daemon
		servec    chan error
		stopAsked bool
	)
	pending := func() {
		if cur.State == svc.StartPending || cur.State == svc.StopPending {
			cur.CheckPoint++
			report(cur)
		}
	}
	stopping := func(why string) {
		log.Info("service stopping", "service", Name, "because", why)
		report(svc.Status{State: svc.StopPending, WaitHint: uint32(stopWaitHint / time.Millisecond)})
		if d != nil {
			go d.Stop()
		}
	}
	for {
		select {
		case o := <-openc:
			openc = nil
			if o.err != nil {
				log.Error("cannot start", "err", o.err)
				h.event(true, EventFailed, fmt.Sprintf("%s cannot start: %v", Name, o.err))
				return true, ExitBootFailed
			}
			d = o.d
			if stopAsked {
				go d.Stop()
				<-d.Done()
				h.event(false, EventStopped, Name+" stopped before it served (stop requested while booting)")
				return false, 0
			}
			servec = make(chan error, 1)
			go func() { servec <- d.Serve() }()
		case <-ps.ch:
			if ps.get() == daemon.PhaseServing && cur.State == svc.StartPending {
				report(svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown})
				log.Info("service running", "service", Name, "pipe", pipeName(cfg))
				h.event(false, EventStarted, fmt.Sprintf("%s running: serving %s", Name, pipeName(cfg)))
				continue
			}
			pending()
		case <-t.C:
			pending()
		case c := <-r:
			switch c.Cmd {
			case svc.Interrogate:
				s <- cur
			case svc.Stop, svc.Shutdown:
				if stopAsked {
					continue
				}
				stopAsked = true
				stopping(cmdName(c.Cmd))
			default:
				log.Warn("service control not handled", "cmd", uint32(c.Cmd))
			}
		case err := <-servec:
			servec = nil
			return h.served(log, d, err, cur.State == svc.Running || stopAsked)
		}
	}
}

// served is the end: Serve returned, after Stop (ours or a client's
// shutdown) or on a fatal error; serving says whether the pipe was up.
func (h *Handler) served(log *slog.Logger, d *daemon.Daemon, err error, serving bool) (bool, uint32) {
	<-d.Done()
	if err != nil {
		code := uint32(ExitFatal)
		if !serving {
			code = ExitServeFailed
		}
		log.Error("stopped with an error", "err", err)
		h.event(true, EventFailed, fmt.Sprintf("%s stopped with an error: %v", Name, err))
		return true, code
	}
	log.Info("service stopped", "service", Name)
	h.event(false, EventStopped, Name+" stopped")
	return false, 0
}

func (h *Handler) event(isErr bool, id uint32, msg string) {
	if h.Events == nil {
		return
	}
	var err error
	if isErr {
		err = h.Events.Error(id, msg)
	} else {
		err = h.Events.Info(id, msg)
	}
	if err != nil && h.Log != nil {
		h.Log.Warn("event log", "err", err)
	}
}

func pipeName(cfg daemon.Config) string {
	if cfg.Socket != "" {
		return cfg.Socket
	}
	dir := cfg.DataDir
	if dir == "" {
		dir = ipc.DefaultDataDir
	}
	return ipc.DefaultSocketPath(dir)
}

func cmdName(c svc.Cmd) string {
	switch c {
	case svc.Stop:
		return "Stop"
	case svc.Shutdown:
		return "Shutdown"
	}
	return fmt.Sprint(uint32(c))
}
