package ipc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultDataDir is the data directory of the daemon run as a service:
// %ProgramData%\ZLayer (C:\ProgramData\ZLayer when the variable is unset).
var DefaultDataDir = defaultDataDir()

func defaultDataDir() string {
	pd := os.Getenv("ProgramData")
	if pd == "" {
		pd = `C:\ProgramData`
	}
	return filepath.Join(pd, "ZLayer")
}

// PipeName is the daemon's named pipe for the default data dir, the one
// the orchestrator dials.
const PipeName = `\\.\pipe\zlayer-overlayd`

// DefaultSocketPath is the named pipe for dataDir: PipeName for the
// default data dir, else PipeName-<FNV-1a-64 of the data dir, in hex>, so
// that daemons with other data dirs (tests) do not collide.
func DefaultSocketPath(dataDir string) string {
	if strings.EqualFold(filepath.Clean(dataDir), filepath.Clean(DefaultDataDir)) {
		return PipeName
	}
	h := uint64(0xcbf29ce484222325)
	for _, b := range []byte(strings.ToLower(filepath.Clean(dataDir)) + "overlayd") {
		h ^= uint64(b)
		h *= 0x100000001b3
	}
	return fmt.Sprintf(`%s-%016x`, PipeName, h)
}

// IsPipe reports whether path names a named pipe (\\.\pipe\NAME).
func IsPipe(path string) bool {
	return strings.HasPrefix(strings.ToLower(path), `\\.\pipe\`)
}
