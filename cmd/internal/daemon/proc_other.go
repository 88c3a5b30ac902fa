//go:build !linux

package daemon

import (
	"runtime"

	"github.com/zlayer/overlayd/projections"
)

var platform = runtime.GOOS

func procInfo(uint32) projections.ProcInfo { return projections.ProcInfo{} }
