package journal

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts a tmpfs)")
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new temporary directory and
// unmounts it when the test ends, whatever happens.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := testtemp.Dir(t)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// fill writes path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// A full disk (a small tmpfs, root): the commit that finds it full fails
// with ENOSPC and its batch is not kept; reads keep working; Recover fails
// while the disk is full and succeeds once space is freed; appends then
// continue, Verify passes, every acknowledged event is there and none of
// the failed ones, also after a reopen and in a salvage of the raw file.
func TestDiskFullDegradesAndRecovers(t *testing.T) {
	requireRoot(t)
	mnt := mountTmpfs(t, 4<<20)
	dir := filepath.Join(mnt, "overlayd")
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var acked [][]byte // payloads of acknowledged events, in order
	batch := func(i int) []Record {
		recs := make([]Record, 20)
		for j := range recs {
			recs[j] = Record{Type: "test_event", Version: 1, Cause: Cause{Op: "test"},
				Payload: []byte(fmt.Sprintf(`{"batch":%d,"n":%d,"pad":"%0900d"}`, i, j, 0))}
		}
		return recs
	}
	for i := 0; i < 5; i++ {
		appendWait(t, s, batch(i)...)
		for _, r := range batch(i) {
			acked = append(acked, r.Payload)
		}
	}
	filler := filepath.Join(mnt, "filler")
	fill(t, filler)
	var failed []Record
	for i := 5; i < 5000; i++ {
		recs := batch(i)
		_, err := s.Append(recs).Wait()
		if err == nil {
			for _, r := range recs {
				acked = append(acked, r.Payload)
			}
			continue
		}
		if !errors.Is(err, ErrReadOnly) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("commit on a full disk: %v", err)
		}
		t.Logf("batch %d failed: %v", i, err)
		failed = recs
		break
	}
	if failed == nil {
		t.Fatal("no commit failed on a full disk")
	}
	if h := s.Health(); h.OK() || !errors.Is(h.Err, syscall.ENOSPC) {
		t.Fatalf("health: %+v", h)
	}
	check := func(when string) {
		t.Helper()
		var got [][]byte
		if err := s.Iterate(0, true, func(e *Envelope) error {
			got = append(got, append([]byte(nil), e.Payload...))
			return nil
		}); err != nil {
			t.Fatalf("%s: iterate: %v", when, err)
		}
		if len(got) != len(acked) {
			t.Fatalf("%s: %d events, %d acknowledged", when, len(got), len(acked))
		}
		for i := range got {
			if !bytes.Equal(got[i], acked[i]) {
				t.Fatalf("%s: event %d is not the acknowledged one", when, i+1)
			}
		}
		if rep, err := s.Verify(); err != nil || !rep.OK() {
			t.Fatalf("%s: verify: %v %+v", when, err, rep)
		}
	}
	check("while full")
	if err := s.Recover(); err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("recover while full: %v", err)
	}
	if _, err := s.Append(batch(9000)).Wait(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("append while read-only: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Recover(); err != nil {
		t.Fatalf("recover after freeing space: %v", err)
	}
	for i := 10000; i < 10005; i++ {
		appendWait(t, s, batch(i)...)
		for _, r := range batch(i) {
			acked = append(acked, r.Payload)
		}
	}
	check("after recover")
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	check("after a reopen")
	s.Close()
	sv, err := SalvageFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if len(sv.Chain) != len(acked) || sv.Highest != uint64(len(acked)) {
		t.Fatalf("salvage: %d events, highest %d, want %d (discarded %d)", len(sv.Chain), sv.Highest, len(acked), sv.Discarded)
	}
	for _, raw := range sv.Chain {
		e, _ := decodeEnvelope(raw, true)
		for _, f := range failed {
			if bytes.Equal(e.Payload, f.Payload) {
				t.Fatalf("salvage kept event %d of the failed batch", e.Seq)
			}
		}
	}
	t.Logf("%d events acknowledged; the salvage left out %d envelope(s) of the failed commit", len(acked), sv.Discarded)
}
