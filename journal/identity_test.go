package journal

import (
	"encoding/binary"
	"errors"
	"github.com/zlayer/overlayd/tools/testtemp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestIdentityOfANewJournal(t *testing.T) {
	dir := testtemp.Dir(t)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := s.Identity()
	if id.ID.IsZero() || !id.Fresh || id.Legacy {
		t.Fatalf("new journal: %+v", id)
	}
	appendWait(t, s, rec(1))
	s.Close()
	for _, ro := range []bool{false, true} {
		s, err = Open(dir, Options{ReadOnly: ro})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Identity(); got.ID != id.ID || got.Fresh || got.Legacy {
			t.Fatalf("reopened (read-only %v): %+v, want id %s, not fresh", ro, got, id.ID)
		}
		s.Close()
	}
}

// A 0-byte file is a journal without history: a writable open initialises
// it and says Fresh; a read-only open refuses with an error naming it.
func TestIdentityOfAnEmptyFile(t *testing.T) {
	dir := testtemp.Dir(t)
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir, Options{ReadOnly: true})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "is empty (0 bytes)") {
		t.Fatalf("read-only open of a 0-byte file: %v", err)
	}
	if _, err := Open(testtemp.Dir(t), Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read-only open of a missing file: %v", err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if id := s.Identity(); !id.Fresh || id.ID.IsZero() || id.Legacy {
		t.Fatalf("0-byte file opened: %+v", id)
	}
}

// writeOldFormat writes a journal as the code before journal ids did:
// meta {format}, events {seq -> envelope}, nothing else.
func writeOldFormat(t *testing.T, path string, n int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := m.Put(keyFormat, binary.BigEndian.AppendUint32(nil, 1)); err != nil {
			return err
		}
		b, err := tx.CreateBucket(bucketEvents)
		if err != nil {
			return err
		}
		var ids idSource
		var prev [32]byte
		now := time.Now()
		for i := 1; i <= n; i++ {
			r := rec(i)
			e := Envelope{ID: ids.next(now), Seq: uint64(i), Time: now, Type: r.Type, Version: r.Version, Cause: r.Cause, Payload: r.Payload, PrevHash: prev}
			if err := b.Put(seqKey(uint64(i)), e.encode(nil)); err != nil {
				return err
			}
			prev = e.Hash
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A journal written before ids gets one at its first writable open, and is
// Legacy from then on; read-only, it has no id yet and is Legacy.
func TestIdentityOfALegacyJournal(t *testing.T) {
	dir := testtemp.Dir(t)
	writeOldFormat(t, filepath.Join(dir, FileName), 5)
	ro, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if id := ro.Identity(); !id.ID.IsZero() || !id.Legacy || id.Fresh {
		t.Fatalf("legacy journal read-only: %+v", id)
	}
	if seq, _ := ro.Head(); seq != 5 {
		t.Fatalf("head %d", seq)
	}
	ro.Close()
	if _, err := Open(dir, Options{CreateWithID: &ID{1}}); err == nil || !strings.Contains(err.Error(), "before journal ids") {
		t.Fatalf("CreateWithID on a legacy journal: %v", err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := s.Identity()
	if id.ID.IsZero() || !id.Legacy || id.Fresh {
		t.Fatalf("legacy journal migrated: %+v", id)
	}
	appendWait(t, s, rec(6))
	if rep, err := s.Verify(); err != nil || !rep.OK() || rep.Events != 6 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	s.Close()
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Identity(); got.ID != id.ID || !got.Legacy {
		t.Fatalf("reopened: %+v, want %s legacy", got, id.ID)
	}
}

func TestCreateWithID(t *testing.T) {
	dir := testtemp.Dir(t)
	want := NewID()
	s, err := Open(dir, Options{CreateWithID: &want, CreateLegacy: true})
	if err != nil {
		t.Fatal(err)
	}
	if id := s.Identity(); id.ID != want || !id.Legacy || !id.Fresh {
		t.Fatalf("created: %+v", id)
	}
	s.Close()
	s, err = Open(dir, Options{CreateWithID: &want})
	if err != nil {
		t.Fatalf("the same id again: %v", err)
	}
	s.Close()
	other := NewID()
	if _, err := Open(dir, Options{CreateWithID: &other}); err == nil || !strings.Contains(err.Error(), want.String()) {
		t.Fatalf("another id: %v", err)
	}
}

func TestIDStrings(t *testing.T) {
	id := NewID()
	back, err := ParseID(id.String())
	if err != nil || back != id || len(id.Short()) != 12 {
		t.Fatalf("%s -> %s, %v", id, back, err)
	}
	if _, err := ParseID("xyz"); err == nil {
		t.Fatal("bad id parsed")
	}
}
