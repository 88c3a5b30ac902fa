// Package version names the build of overlayd's binaries: the release
// version, the source commit and the wire protocol version, as both
// zlayer-overlayd --version and overlayctl --version print them.
//
// Version and Commit may be set at link time:
//
//	go build -ldflags "-X github.com/zlayer/overlayd/cmd/internal/version.Version=0.13.0 \
//	    -X github.com/zlayer/overlayd/cmd/internal/version.Commit=abc1234" ./cmd/...
//
// Otherwise they come from the binary's build information (the main
// module's version, vcs.revision and vcs.modified), or "devel"/"unknown".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// Protocol is the wire protocol version the daemon speaks (PROTOCOL.md v1).
const Protocol = 1

var (
	// Version is the release version ("0.13.0"); set with -ldflags -X.
	Version = ""
	// Commit is the source revision, with "-dirty" when the tree had
	// uncommitted changes; set with -ldflags -X.
	Commit = ""
)

var once sync.Once

// fill completes Version and Commit from the build information once.
func fill() {
	once.Do(func() {
		v, c := fromBuildInfo(debug.ReadBuildInfo())
		if Version == "" {
			Version = v
		}
		if Commit == "" {
			Commit = c
		}
	})
}

// fromBuildInfo is the version and commit a build's information names.
func fromBuildInfo(bi *debug.BuildInfo, ok bool) (version, commit string) {
	version, commit = "devel", "unknown"
	if !ok || bi == nil {
		return
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		version = strings.TrimPrefix(v, "v")
	}
	var rev string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "-dirty"
		}
		commit = rev
	}
	return
}

// Get returns the version and the commit.
func Get() (version, commit string) {
	fill()
	return Version, Commit
}

// String is the one-line description both binaries print for --version:
// "overlayd 0.13.0 (commit abc123, protocol v1, go1.26.8)".
func String() string {
	v, c := Get()
	return fmt.Sprintf("overlayd %s (commit %s, protocol v%d, %s)", v, c, Protocol, runtime.Version())
}
