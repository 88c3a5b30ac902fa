package winsvc

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"

	"github.com/zlayer/overlayd/cmd/internal/daemon"
)

// ErrNotService is returned by Run when the process was not started by the
// service control manager: the dispatcher cannot connect to it
// (ERROR_FAILED_SERVICE_CONTROLLER_CONNECT), which is what Windows answers
// a console process.
var ErrNotService = errors.New("winsvc: not started by the service control manager")

// Run runs the daemon as the service Name until the SCM stops it: the log
// lines go to the file LogPath(cfg.DataDir) (rotated at 10 MiB, 3 kept)
// through newLog, and start, stop and fatal lines also to the Windows event
// log under the source Name (when it cannot be opened, the file only, and
// the file says so). It returns once the service has stopped; the outcome
// is in the exit code reported to the SCM (Handler.Execute), the error
// only says that the service could not run at all.
func Run(cfg daemon.Config, newLog func(io.Writer) *slog.Logger) error {
	// svc.IsWindowsService (the parent is services.exe in session 0) is
	// only logged: under wine's services.exe it is false for a real
	// service. The dispatcher's refusal below is what decides.
	is, isErr := svc.IsWindowsService()
	path := LogPath(cfg.DataDir)
	f, err := OpenLog(path, 0, 0)
	if err != nil {
		return fmt.Errorf("winsvc: %w", err)
	}
	defer f.Close()
	log := newLog(f)
	slog.SetDefault(log)
	log.Debug("svc.IsWindowsService", "is", is, "err", isErr)
	h := &Handler{Config: cfg, Log: log}
	if el, err := eventlog.Open(Name); err != nil {
		log.Warn("the Windows event log cannot be opened; logging to the file only", "source", Name, "err", err)
	} else {
		defer el.Close()
		h.Events = el
	}
	if err := svc.Run(Name, h); errors.Is(err, windows.ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) {
		log.Error("--service: not started by the service control manager", "err", err)
		return ErrNotService
	} else if err != nil {
		log.Error("the service control manager does not run the service", "service", Name, "err", err)
		return fmt.Errorf("winsvc: run %s: %w", Name, err)
	}
	return nil
}
