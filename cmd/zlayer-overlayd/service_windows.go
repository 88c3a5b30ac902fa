package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/zlayer/overlayd/cmd/internal/daemon"
	"github.com/zlayer/overlayd/cmd/internal/winsvc"
)

// runService does what mode says and returns the process's exit code:
// --service runs the daemon under the SCM (winsvc.Run; outside the SCM it
// refuses, exit 2, rather than run without a console to log to);
// --install-service creates the service ZLayerDaemon-Overlayd running this
// executable with --data-dir and every other flag given here, plus
// --service; --uninstall-service deletes it.
func runService(mode serviceMode, cfg daemon.Config, newLog func(io.Writer) *slog.Logger) int {
	switch {
	case mode.install && mode.uninstall, (mode.install || mode.uninstall) && mode.run:
		fmt.Fprintln(os.Stderr, "zlayer-overlayd: --service, --install-service and --uninstall-service go one at a time")
		return 2
	case mode.install:
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(os.Stderr, "zlayer-overlayd: --install-service: %v\n", err)
			return 1
		}
		dir, err := filepath.Abs(cfg.DataDir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "zlayer-overlayd: --install-service: --data-dir: %v\n", err)
			return 1
		}
		if err := winsvc.Install(exe, dir, serviceArgs()...); err != nil {
			fmt.Fprintf(os.Stderr, "zlayer-overlayd: %v\n", err)
			return 1
		}
		fmt.Printf("installed the service %s: %s --data-dir %s --service (automatic start, LocalSystem); start it with `sc.exe start %s`\n", winsvc.Name, exe, dir, winsvc.Name)
		return 0
	case mode.uninstall:
		if err := winsvc.Uninstall(); err != nil {
			fmt.Fprintf(os.Stderr, "zlayer-overlayd: %v\n", err)
			return 1
		}
		fmt.Printf("deleted the service %s\n", winsvc.Name)
		return 0
	}
	err := winsvc.Run(cfg, newLog)
	if errors.Is(err, winsvc.ErrNotService) {
		fmt.Fprintf(os.Stderr, "zlayer-overlayd: --service: this process was not started by the service control manager; run without --service to run in the foreground, or start the service with `sc.exe start %s`\n", winsvc.Name)
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "zlayer-overlayd: --service: %v\n", err)
		return 1
	}
	return 0
}

// serviceArgs are the flags given on this command line for the installed
// service to run with, but those install sets itself.
func serviceArgs() []string {
	var args []string
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "data-dir", "service", "install-service", "uninstall-service":
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	return args
}
