package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zlayer/overlayd/cmd/internal/replay"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// ctl runs overlayctl in this process.
func ctl(t *testing.T, dataDir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(append([]string{"--data-dir", dataDir, "--socket", filepath.Join(dataDir, "no.sock")}, args...), &o, &e)
	return code, o.String(), e.String()
}

// makeNode journals a small node's history (a global overlay, a service,
// addresses and DNS names) under dataDir and snapshots it at the head, as
// the daemon does at shutdown. It returns the state's JSON without seq.
func makeNode(t *testing.T, dataDir string, names int) string {
	t.Helper()
	st, err := journal.Open(filepath.Join(dataDir, "overlayd"), journal.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := projections.New()
	cfg := projections.DefaultConfig()
	do := func(c projections.Command) {
		d, err := projections.Decide(s, cfg, c)
		if err != nil {
			t.Fatal(err)
		}
		var recs []journal.Record
		for _, ev := range d.Events {
			if err := s.Apply(ev); err != nil {
				t.Fatal(err)
			}
			s.Seq++
			typ, ver, payload, err := projections.EncodeEvent(ev)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, journal.Record{Type: typ, Version: ver, Cause: journal.Cause{Op: c.Op()}, Payload: payload})
		}
		if len(recs) > 0 {
			if _, err := st.Append(recs).Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	do(projections.SetupGlobal{Deployment: "prod", InstanceID: "1", ClusterCIDR: "10.200.0.0/16", SliceCIDR: "10.200.64.0/18", Port: 51820})
	do(projections.SetupService{Service: "web", Mode: "shared"})
	for i := 0; i < names; i++ {
		do(projections.RegisterDNS{Name: fmt.Sprintf("task-%d.web.prod.local", i), IP: netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)})})
		if i%3 == 0 {
			do(projections.AllocateIP{})
		}
	}
	_, hash := st.Head()
	if err := st.SaveSnapshot(replay.Snapshot(s, hash)); err != nil {
		t.Fatal(err)
	}
	return stateWithoutSeq(t, mustJSON(t, s))
}

func mustJSON(t *testing.T, s *projections.State) string {
	t.Helper()
	b, err := s.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func stateWithoutSeq(t *testing.T, js string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatalf("%v: %s", err, js)
	}
	delete(m, "seq")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Offline, a damaged, empty or truncated journal never panics overlayctl:
// journal ls, journal verify and state exit non-zero with an error naming
// the file and what is wrong.
func TestOfflineCommandsOnBrokenJournals(t *testing.T) {
	pristine := t.TempDir()
	makeNode(t, pristine, 2000)
	raw, err := os.ReadFile(filepath.Join(pristine, "overlayd", journal.FileName))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := os.ReadFile(filepath.Join(pristine, "overlayd", journal.SnapshotFileName))
	if err != nil {
		t.Fatal(err)
	}
	// The page header of a page of events (a page in the middle of the
	// file may be free, or the index's, which these commands never read).
	at := bytes.Index(raw[len(raw)/2:], []byte(`{"name":"`))
	if at < 0 {
		t.Fatal("no event page in the second half of the journal")
	}
	mid := ((len(raw)/2 + at) / 4096) * 4096
	for name, damaged := range map[string][]byte{
		"empty":               {},
		"truncated to 8192":   raw[:8192],
		"truncated to half":   raw[:len(raw)/2],
		"page header flipped": append(append(append([]byte(nil), raw[:mid]...), raw[mid]^0xff), raw[mid+1:]...),
		"not a journal":       bytes.Repeat([]byte("garbage!"), 4096),
	} {
		t.Run(name, func(t *testing.T) {
			data := t.TempDir()
			dir := filepath.Join(data, "overlayd")
			// A file that was not written would fail every command with
			// an error naming its path: the setup must not fail silently.
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, journal.FileName)
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, journal.SnapshotFileName), snap, 0o600); err != nil {
				t.Fatal(err)
			}
			failed := 0
			for _, args := range [][]string{{"journal", "ls"}, {"journal", "verify"}, {"state"}, {"journal", "verify", "-o", "json"}} {
				code, out, errs := ctl(t, data, args...)
				if code == 0 {
					continue // the damage is in a part this command does not read
				}
				failed++
				msg := errs + out
				// verify reports what it found (1) or fails to read (4);
				// the other commands fail (4).
				if (code != exitFailure && !(code == exitProblem && len(args) > 1 && args[1] == "verify")) || !(strings.Contains(msg, path) || strings.Contains(msg, "event ") || strings.Contains(msg, "page ")) {
					t.Errorf("%v: exit %d, does not name the file, page or event:\n%s", args, code, msg)
				}
				t.Logf("%v: exit %d: %s", args, code, firstLine(msg))
			}
			if failed == 0 {
				t.Fatal("no command noticed the damage")
			}
			if code, out, _ := ctl(t, data, "journal", "verify"); code == 0 {
				t.Fatalf("verify passed on a damaged journal:\n%s", out)
			}
		})
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// journal repair end to end: a truncated journal fails verify; repair
// keeps a copy, reports what was lost and that the snapshot covers it;
// verify then passes and the state is the node's; a second repair finds
// nothing to do (-o json).
func TestRepairEndToEnd(t *testing.T) {
	data := t.TempDir()
	want := makeNode(t, data, 3000)
	dir := filepath.Join(data, "overlayd")
	path := filepath.Join(dir, journal.FileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/3); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := ctl(t, data, "journal", "verify"); code != 1 {
		t.Fatalf("verify of a truncated journal: exit %d", code)
	}
	code, out, errs := ctl(t, data, "journal", "repair")
	if code != 0 {
		t.Fatalf("repair: exit %d\n%s%s", code, out, errs)
	}
	t.Logf("repair:\n%s", out)
	for _, s := range []string{"copy:", "journal.db.broken-", "lost:      events", "the snapshot at", "covers them", "verified:"} {
		if !strings.Contains(out, s) {
			t.Fatalf("repair output lacks %q:\n%s", s, out)
		}
	}
	if code, out, errs := ctl(t, data, "journal", "verify"); code != 0 {
		t.Fatalf("verify after repair: exit %d\n%s%s", code, out, errs)
	}
	code, got, errs := ctl(t, data, "state", "-o", "json")
	if code != 0 {
		t.Fatalf("state: %d %s", code, errs)
	}
	if stateWithoutSeq(t, got) != want {
		t.Fatalf("state after repair is not the node's:\n%s\nwant\n%s", got, want)
	}
	code, js, errs := ctl(t, data, "journal", "repair", "-o", "json")
	if code != 0 {
		t.Fatalf("second repair: %d %s", code, errs)
	}
	var rep replay.RepairReport
	if err := json.Unmarshal([]byte(js), &rep); err != nil || rep.Changed {
		t.Fatalf("second repair: %v %s", err, js)
	}
}

func TestRepairRefusesWhileTheJournalIsHeld(t *testing.T) {
	data := t.TempDir()
	makeNode(t, data, 10)
	st, err := journal.Open(filepath.Join(data, "overlayd"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	code, _, errs := ctl(t, data, "journal", "repair")
	if code != exitFailure || !strings.Contains(errs, "held by another process") {
		t.Fatalf("repair while held: exit %d: %s", code, errs)
	}
	if left, _ := filepath.Glob(filepath.Join(data, "overlayd", "journal.db.broken-*")); len(left) != 0 {
		t.Fatalf("a copy was made while refusing: %v", left)
	}
}

func TestSubcommandHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"journal", "repair", "-h"}, {"journal", "verify", "--help"}, {"state", "-h"}} {
		code, out, _ := ctl(t, t.TempDir(), args...)
		if code != 0 || !strings.Contains(out, "-o") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
}
