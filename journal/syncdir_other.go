//go:build !windows

package journal

import "os"

// syncDir fsyncs dir, making a rename or removal in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// renameNeedsClosedFiles: a rename replaces an open file here, so the
// compaction swaps files while the journal stays open.
const renameNeedsClosedFiles = false

// replacedSuffix names the old journal replaceLocked moves aside on
// Windows; nothing creates it here.
const replacedSuffix = ".replaced"

// replaceLocked renames tmp over path, which the caller holds open for its
// lock (LockJournal): a rename replaces an open file here.
func replaceLocked(tmp, path string) error { return os.Rename(tmp, path) }
