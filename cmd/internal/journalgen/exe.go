package journalgen

import "github.com/zlayer/overlayd/journal"

// setExe records the caller's executable.
func setExe(c *journal.Cause, exe string) { c.Exe = exe }
