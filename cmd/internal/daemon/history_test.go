package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
)

// runCommands boots a daemon on dir (no data plane), sends n register_dns
// commands named from prefix, and stops it gracefully (final snapshot).
func runCommands(t *testing.T, dir, prefix string, n int) {
	t.Helper()
	d, err := Open(Config{DataDir: dir, Log: slog.New(slog.DiscardHandler), NoDataPlane: true})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "s.sock")
	d.cfg.Socket = sock
	errc := make(chan error, 1)
	go func() { errc <- d.Serve() }()
	c, err := ipc.Dial(context.Background(), sock, ipc.DialOptions{Attempts: 50, Backoff: 10_000_000})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := c.Call(context.Background(), ipc.RegisterDNS{Name: fmt.Sprintf("%s%d.p.local", prefix, i), IP: ipc.AddrOf(netipMust("10.0.0.1"))}); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	d.Stop()
	<-d.Done()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func journalDir(dataDir string) string { return filepath.Join(dataDir, "overlayd") }

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	if err := os.WriteFile(to, readFile(t, from), 0o600); err != nil {
		t.Fatal(err)
	}
}

// refused opens dir and checks that boot refuses with ErrLostHistory and a
// message holding every one of want, and that the snapshot and key files
// are left exactly as they were.
func refused(t *testing.T, dir string, want ...string) {
	t.Helper()
	jd := journalDir(dir)
	before := map[string][]byte{}
	for _, f := range append(keyFiles(jd), filepath.Join(jd, journal.SnapshotFileName)) {
		if b, err := os.ReadFile(f); err == nil {
			before[f] = b
		}
	}
	for range 2 { // and again: a refused boot changes nothing that makes the next one pass
		d, err := Open(Config{DataDir: dir, Log: slog.New(slog.DiscardHandler), NoDataPlane: true})
		if err == nil {
			d.Stop()
			t.Fatal("boot did not refuse")
		}
		if !errors.Is(err, ErrLostHistory) {
			t.Fatalf("boot failed, but not with ErrLostHistory: %v", err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("the refusal does not say %q:\n%v", w, err)
			}
		}
	}
	for f, b := range before {
		if got, err := os.ReadFile(f); err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s changed by a refused boot (err %v)", f, err)
		}
	}
}

func TestBootRefusesEmptyJournalBesideSnapshot(t *testing.T) {
	dir := t.TempDir()
	runCommands(t, dir, "a", 20)
	jpath := filepath.Join(journalDir(dir), journal.FileName)
	if err := os.Truncate(jpath, 0); err != nil {
		t.Fatal(err)
	}
	refused(t, dir, jpath, "is empty (0 bytes)", journal.SnapshotFileName)
	if fi, err := os.Stat(jpath); err != nil || fi.Size() != 0 {
		t.Fatalf("the empty journal file was changed: %v %v", fi, err)
	}
}

func TestBootRefusesMissingJournalBesideKeyFile(t *testing.T) {
	dir := t.TempDir()
	runCommands(t, dir, "a", 3)
	jd := journalDir(dir)
	for _, f := range []string{journal.FileName, journal.SnapshotFileName} {
		if err := os.Remove(filepath.Join(jd, f)); err != nil {
			t.Fatal(err)
		}
	}
	refused(t, dir, "is missing", nodeKeyFile)
}

func TestBootRefusesJournalShorterThanSnapshot(t *testing.T) {
	dir := t.TempDir()
	jd := journalDir(dir)
	runCommands(t, dir, "a", 5) // events 1..6
	saved := filepath.Join(t.TempDir(), "journal.db")
	copyFile(t, filepath.Join(jd, journal.FileName), saved)
	runCommands(t, dir, "b", 5) // events 7..11, snapshot at 11
	copyFile(t, saved, filepath.Join(jd, journal.FileName))
	refused(t, dir, "ends at event 6", "up to event 11", "events 7..11 are lost")
}

func TestBootRefusesUnanchoredSnapshot(t *testing.T) {
	dir := t.TempDir()
	jd := journalDir(dir)
	runCommands(t, dir, "a", 5)
	st, err := journal.Open(jd, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := st.LoadSnapshot()
	if err != nil || sn == nil {
		t.Fatalf("snapshot: %v %v", sn, err)
	}
	sn.Hash[0] ^= 0xff // the state of another history that ends at the same sequence
	if err := st.SaveSnapshot(sn); err != nil {
		t.Fatal(err)
	}
	st.Close()
	refused(t, dir, "anchored on event 6", "not the one the snapshot was taken from")
}

// The control: an intact data dir boots, keeps its history and its key.
func TestBootKeepsIntactHistory(t *testing.T) {
	dir := t.TempDir()
	runCommands(t, dir, "a", 5)
	key := readFile(t, filepath.Join(journalDir(dir), nodeKeyFile))
	runCommands(t, dir, "b", 5)
	if got := readFile(t, filepath.Join(journalDir(dir), nodeKeyFile)); !bytes.Equal(got, key) {
		t.Fatal("the node key changed across a restart")
	}
}

// Another node's journal put in this data dir: its snapshot names another
// journal.
func TestBootRefusesForeignJournal(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	runCommands(t, a, "a", 5)
	runCommands(t, b, "b", 5)
	copyFile(t, filepath.Join(journalDir(b), journal.FileName), filepath.Join(journalDir(a), journal.FileName))
	refused(t, a, "was taken from journal", "but "+filepath.Join(journalDir(a), journal.FileName)+" is journal")
}
