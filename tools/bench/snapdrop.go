//go:build linux

package main

import (
	"errors"
	"os"
	"path/filepath"
)

// dropSnapshot removes the stored snapshot so that the next boot replays
// the whole journal.
func dropSnapshot(journalPath string) error {
	err := os.Remove(filepath.Join(filepath.Dir(journalPath), "snapshot"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
