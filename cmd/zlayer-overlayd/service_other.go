//go:build !windows

package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"

	"github.com/zlayer/overlayd/cmd/internal/daemon"
)

// runService refuses: the service control manager is Windows'. Exit 2, as
// for a bad flag.
func runService(mode serviceMode, cfg daemon.Config, newLog func(io.Writer) *slog.Logger) int {
	fmt.Fprintf(os.Stderr, "zlayer-overlayd: --service, --install-service and --uninstall-service are for Windows' service control manager; this is %s: run it in the foreground, under systemd on Linux (docs/systemd.md)\n", runtime.GOOS)
	return 2
}
