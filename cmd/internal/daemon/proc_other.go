//go:build !linux

package daemon

import (
	"os"
	"runtime"

	"github.com/zlayer/overlayd/projections"
)

var platform = runtime.GOOS

func procInfo(uint32) projections.ProcInfo { return projections.ProcInfo{} }

// home: see proc_linux.go. Elsewhere the host name stands in for the
// machine id, and there are no network namespaces.
func home() string {
	h, _ := os.Hostname()
	return homeOf(h, 0)
}
