package journal

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/journal/journaltest"
	"github.com/zlayer/overlayd/tools/testseed"

	bolt "go.etcd.io/bbolt"
)

// buildJournal writes n events in commits of 1 to 40 records, with
// payloads of 20 bytes to 6 KiB (some span overflow pages), and a snapshot
// at the head. It returns the encoded envelopes, as stored.
func buildJournal(t *testing.T, dir string, n int, r *rand.Rand) [][]byte {
	t.Helper()
	freelistType = bolt.FreelistArrayType // pages allocated in a fixed order
	defer func() { freelistType = bolt.FreelistMapType }()
	s, err := Open(dir, deterministic(r))
	if err != nil {
		t.Fatal(err)
	}
	for done := 0; done < n; {
		k := min(1+r.Intn(40), n-done)
		recs := make([]Record, k)
		for i := range recs {
			size := 20 + r.Intn(300)
			if r.Intn(50) == 0 {
				size = 4000 + r.Intn(2000)
			}
			recs[i] = Record{Type: fmt.Sprintf("type_%d", (done+i)%7), Version: 1, Cause: Cause{Op: "test"},
				Payload: []byte(fmt.Sprintf(`{"n":%d,"pad":%q}`, done+i, strings.Repeat("x", size)))}
		}
		if _, err := s.Append(recs).Wait(); err != nil {
			t.Fatal(err)
		}
		done += k
	}
	head, hash := s.Head()
	if err := s.SaveSnapshot(&Snapshot{Schema: 1, Seq: head, Hash: hash, Body: []byte("state")}); err != nil {
		t.Fatal(err)
	}
	var envs [][]byte
	if err := s.Iterate(0, true, func(e *Envelope) error {
		envs = append(envs, e.encode(nil))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return envs
}

// deterministic returns options that make the file a function of r: a
// fixed journal id, a clock that ticks 1 ms per commit, ids from r.
func deterministic(r *rand.Rand) Options {
	id := ID{0x0f, 0xee}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	return Options{NoSync: true, CreateWithID: &id, Entropy: rand.New(rand.NewSource(r.Int63())),
		Clock: func() time.Time { now = now.Add(time.Millisecond); return now }}
}

// namesDamage reports whether err names the file and says what is wrong.
func namesDamage(err error, path string) bool {
	msg := err.Error()
	return strings.Contains(msg, path) && (IsDamage(err) || errors.Is(err, ErrHashMismatch) || errors.Is(err, ErrMalformed) ||
		errors.Is(err, ErrNotFound) || strings.Contains(msg, "event "))
}

// Truncated and flipped files never panic: each of Open (read-only and
// writable), Iterate, Verify and Check either works, with every event
// equal to the one written, or fails with an error naming the file and the
// damage; SalvageFile keeps a prefix of the original events, and Rewrite
// makes a journal of them that opens and verifies.
func TestDamagedFilesNeverPanic(t *testing.T) {
	r := rand.New(rand.NewSource(testseed.Or(t, 9)))
	pristine := testtemp.Dir(t)
	orig := buildJournal(t, pristine, 3000, r)
	raw, err := os.ReadFile(filepath.Join(pristine, FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events, %d bytes, sha256 %x", len(orig), len(raw), sha256.Sum256(raw))
	outcomes := map[string]int{}
	flip := func(offsets ...int) func([]byte) []byte {
		return func(b []byte) []byte {
			c := append([]byte(nil), b...)
			for _, o := range offsets {
				c[o] ^= 0x40
			}
			return c
		}
	}
	// Beyond the spread: each meta page, and both (a meta page that fails
	// its checksum makes bbolt read the transaction before).
	extra := []journaltest.Damage{
		{Name: "meta page 0 flipped", Apply: flip(16 + 40)},
		{Name: "meta page 1 flipped", Apply: flip(4096 + 16 + 40)},
		{Name: "both meta pages flipped", Apply: flip(16+40, 4096+16+40)},
	}
	for _, d := range append(journaltest.Damages(len(raw), r), extra...) {
		t.Run(d.Name, func(t *testing.T) {
			dir := journaltest.CopyDir(t, pristine)
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, d.Apply(raw), 0o600); err != nil {
				t.Fatal(err)
			}
			verdict := exercise(t, path, orig)
			outcomes[verdict]++
			// The daemon's open, on a copy: no panic, and a write either
			// works or fails cleanly.
			wdir := journaltest.CopyDir(t, dir)
			if ws, err := Open(wdir, Options{}); err == nil {
				if _, err := ws.Append([]Record{rec(1)}).Wait(); err != nil && !errors.Is(err, ErrReadOnly) && !IsDamage(err) {
					t.Errorf("append on a damaged file: %v", err)
				}
				ws.Close()
			} else if !namesDamage(err, filepath.Join(wdir, FileName)) {
				t.Errorf("writable open: %v", err)
			}
			sv, err := SalvageFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for i, b := range sv.Chain {
				if !bytes.Equal(b, orig[i]) {
					t.Fatalf("salvaged event %d differs from the one written", i+1)
				}
			}
			if sv.Highest > uint64(len(orig)) {
				t.Fatalf("salvage saw event %d, only %d were written", sv.Highest, len(orig))
			}
			rdir := testtemp.Dir(t)
			if err := os.WriteFile(filepath.Join(rdir, FileName), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Rewrite(rdir, Identity{ID: sv.ID}, sv.Chain, nil); err != nil {
				t.Fatal(err)
			}
			rs, err := Open(rdir, Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			defer rs.Close()
			if rep, err := rs.Verify(); err != nil || !rep.OK() || rep.Events != uint64(len(sv.Chain)) {
				t.Fatalf("rewritten journal: %v %+v", err, rep)
			}
			if sv.IDFound && rs.Identity().ID != sv.ID {
				t.Fatalf("rewritten journal has id %s, salvaged %s", rs.Identity().ID, sv.ID)
			}
			t.Logf("%s; salvaged %d of %d events (highest seen %d, %d from bbolt's tree)", verdict, len(sv.Chain), len(orig), sv.Highest, sv.TreeEvents)
		})
	}
	t.Logf("outcomes: %v", outcomes)
}

// exercise opens path read-only and reads it every way; it returns what
// happened.
func exercise(t *testing.T, path string, orig [][]byte) string {
	t.Helper()
	s, err := OpenFile(path, Options{ReadOnly: true})
	if err != nil {
		if !namesDamage(err, path) && !strings.Contains(err.Error(), "empty (0 bytes)") {
			t.Fatalf("open: error does not name the damage: %v", err)
		}
		return "refused at open"
	}
	defer s.Close()
	failed := []string{}
	n := 0
	ierr := s.Iterate(0, true, func(e *Envelope) error {
		if int(e.Seq) > len(orig) || !bytes.Equal(e.encode(nil), orig[e.Seq-1]) {
			return fmt.Errorf("event %d differs from the one written", e.Seq)
		}
		n++
		return nil
	})
	if ierr != nil {
		if !namesDamage(ierr, path) && !strings.Contains(ierr.Error(), "event ") {
			t.Fatalf("iterate: error does not name the damage: %v", ierr)
		}
		if strings.Contains(ierr.Error(), "differs from the one written") {
			t.Fatalf("iterate returned a changed event that verified: %v", ierr)
		}
		failed = append(failed, "iterate")
	}
	rep, err := s.Verify()
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !rep.OK() {
		failed = append(failed, "verify")
	}
	cerr := s.Check()
	if cerr != nil {
		if !IsDamage(cerr) || !strings.Contains(cerr.Error(), path) {
			t.Fatalf("check: %v", cerr)
		}
		failed = append(failed, "check")
	}
	head, _ := s.Head()
	if len(failed) == 0 {
		if head != uint64(len(orig)) || n != len(orig) {
			t.Fatalf("everything passed but the journal holds %d events (head %d) of %d", n, head, len(orig))
		}
		return "works"
	}
	if ierr == nil && rep.OK() && cerr != nil {
		t.Logf("only the page check found it: %v", cerr)
	}
	if cerr != nil {
		t.Logf("check: %v", cerr)
	}
	return "opens, " + strings.Join(failed, "+") + " name the damage"
}
