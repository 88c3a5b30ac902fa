package journalgen

import "github.com/zlayer/overlayd/journal"

// setExe records the caller's executable once the journal carries it.
func setExe(*journal.Cause, string) {}
