//go:build linux

package netlab

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/zlayer/overlayd/tools/testseed"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/projections"
)

// A damaged journal file, through the real binaries: 20 truncation points
// and 20 flipped bytes spread across the file. Neither the daemon nor
// overlayctl panics; each time the daemon either boots with nothing lost
// (its state is the state before the damage) or refuses, naming the
// damage; `overlayctl journal repair` then makes a journal the daemon boots
// from, and reports a lost range that is exactly the events it did not
// keep.
func TestDamagedJournal(t *testing.T) {
	seed := testseed.New(t)
	l := newLab(t, 1, "--snapshot-every", "400", "--log-level", "info")
	nd := l.Nodes[0]
	if err := nd.Start(); err != nil {
		t.Fatal(err)
	}
	c := client(t, nd, nil)
	if _, err := nd.Setup(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	for i := range 1500 {
		call(t, c, ipc.RegisterDNS{Name: fmt.Sprintf("d%d.prod.local", i), IP: ipc.AddrOf(netip.MustParseAddr("10.200.7.7"))})
	}
	c.Close()
	if err := nd.Stop(); err != nil {
		t.Fatal(err)
	}
	jd := filepath.Join(nd.DataDir, "overlayd")
	pristine := filepath.Join(t.TempDir(), "pristine")
	cp(t, jd, pristine)
	want := ctl(t, nd, 0, "state", "-o", "json")
	head := 1500 + 3 // identity, global overlay, names
	jfile := filepath.Join(jd, "journal.db")
	fi, err := os.Stat(jfile)
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	r := rand.New(rand.NewSource(seed))
	type damage struct {
		what string
		do   func() error
	}
	var cases []damage
	for i := range 20 {
		at := int64(i)*size/20 + r.Int63n(size/20)
		cases = append(cases, damage{fmt.Sprintf("truncated to %d bytes", at), func() error { return os.Truncate(jfile, at) }})
	}
	for i := range 20 {
		at := int64(i)*size/20 + r.Int63n(size/20)
		bit := byte(1) << r.Intn(8)
		cases = append(cases, damage{fmt.Sprintf("byte %d flipped (bit %#x)", at, bit), func() error {
			f, err := os.OpenFile(jfile, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			b := []byte{0}
			if _, err := f.ReadAt(b, at); err != nil {
				return err
			}
			b[0] ^= bit
			_, err = f.WriteAt(b, at)
			return err
		}})
	}
	booted, refused, covered := 0, 0, 0
	for _, d := range cases {
		os.RemoveAll(jd)
		cp(t, pristine, jd)
		if err := d.do(); err != nil {
			t.Fatal(err)
		}
		// overlayctl never panics on it.
		for _, args := range [][]string{{"journal", "verify"}, {"state", "-o", "json"}, {"journal", "ls", "--limit", "5"}} {
			ctl(t, nd, -1, args...)
		}
		if err := nd.Start(); err == nil {
			booted++
			if got := ctl(t, nd, 0, "state", "-o", "json"); got != want {
				t.Fatalf("%s: the daemon booted but serves another state than before the damage", d.what)
			}
			if err := nd.Stop(); err != nil {
				t.Fatalf("%s: %v", d.what, err)
			}
		} else {
			refused++
			msg := err.Error()
			if !strings.Contains(msg, "cannot start") || !(strings.Contains(msg, "page") || strings.Contains(msg, "event") || strings.Contains(msg, "journal.db")) {
				t.Fatalf("%s: the refusal does not name the damage:\n%s", d.what, msg)
			}
		}
		noPanic(t, d.what, nd.Logs())
		// Repair, then boot.
		var rep struct {
			Changed  bool   `json:"changed"`
			Salvaged uint64 `json:"salvaged"`
			Head     uint64 `json:"head"`
			Lost     *struct {
				From, To          uint64
				CoveredBySnapshot bool `json:"covered_by_snapshot"`
			} `json:"lost"`
		}
		out := ctl(t, nd, 0, "journal", "repair", "-o", "json")
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("%s: repair output: %v\n%s", d.what, err, out)
		}
		if rep.Lost != nil {
			if rep.Lost.From != rep.Salvaged+1 || rep.Lost.To != uint64(head) {
				t.Fatalf("%s: repair kept 1..%d and reports %d..%d lost; the journal held 1..%d", d.what, rep.Salvaged, rep.Lost.From, rep.Lost.To, head)
			}
			if rep.Lost.CoveredBySnapshot {
				covered++
			}
		} else if rep.Changed && rep.Salvaged != uint64(head) {
			t.Fatalf("%s: repair kept 1..%d of 1..%d and reports no loss", d.what, rep.Salvaged, head)
		}
		if err := nd.Start(); err != nil {
			t.Fatalf("%s: no boot after the repair: %v", d.what, err)
		}
		cl := client(t, nd, nil)
		if v := call(t, cl, ipc.JournalVerify{}).(ipc.JournalReport); !v.OK {
			t.Fatalf("%s: the repaired journal does not verify: %v", d.what, v.Problems)
		}
		if rep.Lost == nil || rep.Lost.CoveredBySnapshot {
			// The same state; its sequence number is the repaired journal's.
			if got := ctl(t, nd, 0, "state", "-o", "json"); withoutSeq(t, got) != withoutSeq(t, want) {
				t.Fatalf("%s: repair reports nothing lost (or covered by the snapshot), but the state differs:\n%s", d.what, out)
			}
		}
		cl.Close()
		if err := nd.Stop(); err != nil {
			t.Fatal(err)
		}
		noPanic(t, d.what, nd.Logs())
	}
	t.Logf("seed %d: %d damaged files: %d booted with nothing lost, %d refused naming the damage; repair covered %d losses with the snapshot", seed, len(cases), booted, refused, covered)
}

// withoutSeq is a state's canonical JSON with its sequence number zeroed.
func withoutSeq(t *testing.T, js string) string {
	t.Helper()
	st, err := projections.ParseCanonicalJSON([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	st.Seq = 0
	b, err := st.CanonicalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ctl runs overlayctl against nd's data dir; wantCode -1 accepts 0 or 1
// (a check that found a problem). It never accepts a panic.
func ctl(t *testing.T, nd *Node, wantCode int, args ...string) string {
	t.Helper()
	cmd := exec.Command(ctlBin, append([]string{"--data-dir", nd.DataDir, "--socket", nd.Socket}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	noPanic(t, "overlayctl "+strings.Join(args, " "), errb.String()+out.String())
	// Any failure is 1 (a check found a problem) or 4 (a failure): 2 is
	// a usage error, and also a Go panic's exit code.
	if (wantCode >= 0 && code != wantCode) || (wantCode < 0 && code != 0 && code != 1 && code != 4) {
		t.Fatalf("overlayctl %s: exit %d: %s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String()
}

func noPanic(t *testing.T, what, out string) {
	t.Helper()
	for _, bad := range []string{"panic:", "fatal error:", "goroutine "} {
		if strings.Contains(out, bad) {
			t.Fatalf("%s: %q in its output:\n%s", what, bad, out)
		}
	}
}

func cp(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp %s %s: %v %s", from, to, err, out)
	}
}

// The journal file damaged under a running daemon (a page header flipped
// in the middle of the file, as in issue 9): journal verify reports the
// damage instead of panicking the daemon, which stays up, stops writing
// into the damaged file, and says so in status.
func TestOnlineVerifyOfDamagedFile(t *testing.T) {
	_, nd, c := setUpNode(t)
	booted := time.Now() // the boot's page check passed before this
	for i := range 3000 {
		call(t, c, ipc.RegisterDNS{Name: fmt.Sprintf("v%d.prod.local", i), IP: ipc.AddrOf(netip.MustParseAddr("10.200.7.8"))})
	}
	jfile := filepath.Join(nd.DataDir, "overlayd", "journal.db")
	const page = 4096
	// A page header near the midpoint, of a page in use: a free page's
	// header is read by nobody, so flipping it damages nothing (CI once
	// picked a free one; the background indexer moves pages about).
	at := inUsePageNear(t, jfile, page) * page
	f, err := os.OpenFile(jfile, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	f.ReadAt(b, at)
	b[0] ^= 0xff
	f.WriteAt(b, at)
	f.Close()
	// journal verify reuses a page check that passed in the last 10 s
	// (journal.pageCheckReuse) and then reads only the events' pages; the
	// page may be one of the index's, so let the boot's check expire.
	time.Sleep(time.Until(booted.Add(11 * time.Second)))
	r := call(t, c, ipc.JournalVerify{}).(ipc.JournalReport)
	if r.OK || len(r.Problems) == 0 {
		t.Fatalf("journal verify found nothing wrong in a file with page %d's header flipped", at/page)
	}
	t.Logf("verify: %s", r.Problems[0])
	st := status(t, c) // still up
	if !st.Degraded || !hasProblem(st, "journal", "") {
		t.Fatalf("status after the damage was found: degraded=%v %+v", st.Degraded, st.Problems)
	}
	if _, err := c.Call(context.Background(), ipc.RegisterDNS{Name: "after.prod.local", IP: ipc.AddrOf(netip.MustParseAddr("10.200.7.9"))}); err == nil {
		t.Fatal("a write into the damaged journal was acknowledged")
	}
	if out, err := nd.Run(context.Background(), "ip", "link", "show", "zl-lab-1-g"); err != nil || !strings.Contains(out, ",UP") {
		t.Fatalf("the data plane went down: %v %s", err, out)
	}
	noPanic(t, "the daemon", nd.Logs())
}

// inUsePageNear waits for the journal file to stop changing (the daemon's
// background indexer writes after the commands), then returns the page
// nearest the file's midpoint that a copy of it, opened with bbolt, says
// is a branch or leaf page in use (not free, not an overflow's tail).
func inUsePageNear(t *testing.T, file string, pageSize int64) int64 {
	t.Helper()
	var last time.Time
	var lastSize int64
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(300 * time.Millisecond) {
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if fi.ModTime().Equal(last) && fi.Size() == lastSize {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still changing after 20 s", file)
		}
		last, lastSize = fi.ModTime(), fi.Size()
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	cp(t, file, copyPath)
	raw, err := os.ReadFile(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(copyPath, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mid := int64(len(raw)) / 2 / pageSize
	var found int64 = -1
	err = db.View(func(tx *bolt.Tx) error {
		for d := int64(0); d < mid && found < 0; d++ {
			for _, id := range []int64{mid + d, mid - d} {
				if id < 2 || (id+1)*pageSize > int64(len(raw)) {
					continue
				}
				info, err := tx.Page(int(id))
				if err != nil {
					return err
				}
				if info == nil || (info.Type != "leaf" && info.Type != "branch") {
					continue
				}
				if binary.LittleEndian.Uint64(raw[id*pageSize:]) != uint64(id) {
					continue // not a page's own header
				}
				found = id
				break
			}
		}
		return nil
	})
	if err != nil || found < 0 {
		t.Fatalf("no branch or leaf page in use in %s: %v", file, err)
	}
	return found
}
