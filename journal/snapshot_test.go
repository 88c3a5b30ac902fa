package journal

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"github.com/zlayer/overlayd/tools/testtemp"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// encodeSnapshotV1 is the snapshot encoding before journal ids ("OVSN").
func encodeSnapshotV1(sn *Snapshot) []byte {
	b := append([]byte(nil), "OVSN"...)
	b = binary.BigEndian.AppendUint32(b, sn.Schema)
	b = binary.BigEndian.AppendUint64(b, sn.Seq)
	b = append(b, sn.Hash[:]...)
	sum := sha256.Sum256(sn.Body)
	b = append(b, sum[:]...)
	return append(b, sn.Body...)
}

func TestSnapshotEncodings(t *testing.T) {
	sn := &Snapshot{Journal: NewID(), Schema: 2, Seq: 77, Hash: [32]byte{7, 7}, Body: []byte("the state")}
	b := encodeSnapshot(sn)
	if !bytes.HasPrefix(b, []byte("OVS2")) {
		t.Fatalf("magic %q", b[:4])
	}
	got, err := decodeSnapshot(b)
	if err != nil || got.Journal != sn.Journal || got.Schema != 2 || got.Seq != 77 || got.Hash != sn.Hash || !bytes.Equal(got.Body, sn.Body) {
		t.Fatalf("OVS2: %+v %v", got, err)
	}
	old, err := decodeSnapshot(encodeSnapshotV1(sn))
	if err != nil || !old.Journal.IsZero() || old.Schema != 2 || old.Seq != 77 || old.Hash != sn.Hash || !bytes.Equal(old.Body, sn.Body) {
		t.Fatalf("OVSN: %+v %v", old, err)
	}
	for name, bad := range map[string][]byte{
		"flipped body":   append(b[:len(b)-1:len(b)-1], b[len(b)-1]^1),
		"short header":   b[:40],
		"unknown magic":  append([]byte("OVS9"), b[4:]...),
		"flipped id":     append(append(append([]byte(nil), b[:4]...), b[4]^1), b[5:]...),
		"flipped seq":    append(append(append([]byte(nil), b[:30]...), b[30]^1), b[31:]...),
		"old, truncated": encodeSnapshotV1(sn)[:60],
	} {
		if _, err := decodeSnapshot(bad); !errors.Is(err, ErrSnapshotCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A snapshot write is atomic: half-way through (the failpoint), the old
// snapshot is still in place; a crash there (a panic) leaves the old one
// and no temporary file.
func TestSnapshotWriteIsAtomic(t *testing.T) {
	dir := testtemp.Dir(t)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	envs := appendWait(t, s, rec(1), rec(2))
	first := &Snapshot{Schema: 1, Seq: 1, Hash: envs[0].Hash, Body: bytes.Repeat([]byte("a"), 10000)}
	if err := s.SaveSnapshot(first); err != nil {
		t.Fatal(err)
	}
	second := &Snapshot{Schema: 1, Seq: 2, Hash: envs[1].Hash, Body: bytes.Repeat([]byte("b"), 10000)}
	hits := 0
	Failpoint = func(name string) {
		if name != "journal/snapshot-write" {
			return
		}
		hits++
		if sn, err := s.LoadSnapshot(); err != nil || sn.Seq != 1 {
			t.Errorf("half-way through the write the snapshot is %+v, %v", sn, err)
		}
		tmps, _ := filepath.Glob(filepath.Join(dir, ".snapshot-*"))
		if len(tmps) != 1 {
			t.Errorf("temporary files: %v", tmps)
		} else if fi, _ := os.Stat(tmps[0]); fi.Size() != int64(len(encodeSnapshot(second))/2) {
			t.Errorf("the failpoint is hit after %d bytes, want half of %d", fi.Size(), len(encodeSnapshot(second)))
		}
	}
	defer func() { Failpoint = nil }()
	if err := s.SaveSnapshot(second); err != nil {
		t.Fatal(err)
	}
	if hits != 1 {
		t.Fatalf("failpoint hit %d times", hits)
	}
	if sn, _ := s.LoadSnapshot(); sn.Seq != 2 || sn.Journal != s.Identity().ID {
		t.Fatalf("after the write: %+v", sn)
	}
	// A crash half-way.
	Failpoint = func(name string) {
		if name == "journal/snapshot-write" {
			panic("crash")
		}
	}
	var crashed any
	func() {
		defer func() { crashed = recover() }()
		if err := s.SaveSnapshot(first); err != nil {
			t.Errorf("the write that should crash failed instead: %v", err)
		}
	}()
	if crashed != "crash" {
		t.Fatalf("the write did not crash half-way (recovered %v)", crashed)
	}
	if sn, _ := s.LoadSnapshot(); sn.Seq != 2 {
		t.Fatalf("a crash half-way replaced the snapshot: %+v", sn)
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, ".snapshot-*")); len(tmps) != 0 {
		t.Fatalf("temporary files left: %v", tmps)
	}
}

func TestSnapshotFileErrorsNameTheFile(t *testing.T) {
	dir := testtemp.Dir(t)
	if err := os.WriteFile(filepath.Join(dir, SnapshotFileName), []byte("OVS2short"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ReadSnapshotFile(dir)
	if !errors.Is(err, ErrSnapshotCorrupt) || !strings.Contains(err.Error(), filepath.Join(dir, SnapshotFileName)) {
		t.Fatalf("%v", err)
	}
	if sn, err := ReadSnapshotFile(testtemp.Dir(t)); sn != nil || err != nil {
		t.Fatalf("no snapshot: %v %v", sn, err)
	}
}
