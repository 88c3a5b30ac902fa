package journal

import (
	"crypto/sha256"
	"errors"
	"github.com/zlayer/overlayd/tools/testtemp"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// A backup taken while appenders commit is a journal of its own: same id,
// its head is the last event of a whole commit (never past what the
// source acknowledged when it returned), every event up to it is the
// source's, and it verifies. Its SHA-256 is that of the bytes written.
func TestBackupWhileAppending(t *testing.T) {
	dir := testtemp.Dir(t)
	s, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 100; i++ {
		if _, err := s.Append([]Record{rec(i), rec(i)}).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Append([]Record{rec(i), rec(i)}).Wait(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	bdir := testtemp.Dir(t)
	f, err := os.Create(filepath.Join(bdir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	info, err := s.Backup(io.MultiWriter(f, h))
	f.Close()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if [32]byte(h.Sum(nil)) != info.SHA256 {
		t.Fatal("BackupInfo.SHA256 is not the SHA-256 of the bytes written")
	}
	if fi, _ := os.Stat(filepath.Join(bdir, FileName)); fi.Size() != info.Size {
		t.Fatalf("size %d, info says %d", fi.Size(), info.Size)
	}
	head, _ := s.Head()
	if info.Seq < 200 || info.Seq > head || info.Seq%2 != 0 {
		t.Fatalf("backup head %d (source head %d): want a whole commit between 200 and the head", info.Seq, head)
	}
	b, err := Open(bdir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Identity().ID != s.Identity().ID || b.Identity().ID != info.Journal {
		t.Fatalf("backup id %s, source %s", b.Identity().ID, s.Identity().ID)
	}
	if bh, bhash := b.Head(); bh != info.Seq || bhash != info.Hash {
		t.Fatalf("backup opens at %d, info says %d", bh, info.Seq)
	}
	rep, err := b.Verify()
	if err != nil || !rep.OK() {
		t.Fatalf("backup verify: %v %+v", err, rep)
	}
	for _, seq := range []uint64{1, info.Seq / 2, info.Seq} {
		want, _ := s.HashAt(seq)
		if got, err := b.HashAt(seq); err != nil || got != want {
			t.Fatalf("event %d: backup hash %x, source %x (%v)", seq, got, want, err)
		}
	}
	// A read-only open backs up too (offline).
	if _, err := b.Backup(io.Discard); err != nil {
		t.Fatalf("backup of a read-only open: %v", err)
	}
}

func TestMemStoreBackupUnsupported(t *testing.T) {
	if _, err := NewMem().Backup(io.Discard); !errors.Is(err, ErrBackupUnsupported) {
		t.Fatalf("MemStore.Backup: %v", err)
	}
}
