//go:build linux

package bridge

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/zlayer/overlayd/effects"
)

// Another journal's bridge where ours should be: the pass fails for the
// service naming the link and its owner, and changes nothing: the bridge
// is not adopted, re-marked or deleted, and no container is put on it.
func TestFakeForeignBridgeInTheWay(t *testing.T) {
	h := newHarness(t, ownerA)
	h.must(h.k.AddBridge("web-b", bridgeMAC("x")))
	h.must(h.k.SetAlias("web-b", "zlayer-overlayd bridge web j=bbbbbbbbbbbb"))
	h.service("web", "10.200.1.0/28")
	h.container(100)
	h.attach(100, "web", "10.200.1.2", "")
	before := h.k.render()
	h.k.mutations()
	err := h.full()
	for _, key := range []string{"service/web", "attachment/linux_pid:100"} {
		e := keyErr(t, err, key)
		if !errors.Is(e, ErrNotOurs) || !strings.Contains(e.Error(), "web-b is marked by journal bbbbbbbbbbbb") {
			t.Fatalf("%s: %v, want ErrNotOurs naming web-b and journal bbbbbbbbbbbb", key, e)
		}
	}
	same(t, "after the pass", h.k.render(), before)
	if m := h.k.mutations(); len(m) != 0 {
		t.Fatalf("the pass changed %q", m)
	}
}

// Another journal's veth under the name one of our legs needs: the attach
// fails naming the link and the owner; the link is neither deleted nor
// adopted, and the container is left as it was.
func TestFakeForeignHostEndInTheWay(t *testing.T) {
	h := webHarness(t)
	h.container(101)
	a := &Attachment{Key: "linux_pid:101", NetnsInode: h.inode(101)}
	alias := "zlayer-overlayd attach linux_pid:101/1 s j=bbbbbbbbbbbb"
	h.makeVeth(a.HostName(LegService), alias, 0, "p1")
	before := h.k.render()
	h.attach(101, "web", "10.200.1.3", "")
	err := keyErr(t, h.change("attachment/linux_pid:101"), "attachment/linux_pid:101")
	var se *StepError
	if !errors.As(err, &se) || se.Step != "veth" || !errors.Is(err, ErrNotOurs) ||
		!strings.Contains(err.Error(), a.HostName(LegService)+" is marked by journal bbbbbbbbbbbb") {
		t.Fatalf("attach = %v", err)
	}
	same(t, "after the refused attach", h.k.render(), before)
}

func (h *harness) inode(pid uint32) uint64 {
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	return h.k.procs[pid].ino
}

// A data dir copied to a second daemon on the same machine (same journal,
// another home, another node namespace, the same PIDs and namespace
// inodes): the copy's passes refuse every container the original wired,
// naming the original's owner, change nothing in them, and detach none;
// the original's wiring stays converged. The same for another journal.
// And when the copy's namespace already holds a host end of its own for
// the container (the adopt path), the refusal still comes before anything
// in the container changes.
func TestFakeCopiedDataDirRefused(t *testing.T) {
	for _, copyOwner := range []effects.Owner{ownerACopy, ownerB} {
		t.Run(copyOwner.Journal+"-"+copyOwner.Home, func(t *testing.T) {
			orig := webHarness(t)
			ctr := section(orig.k.render(), "pid 100")
			cp := newHarnessOn(t, orig.k.sibling(), copyOwner)
			cp.service("web", "10.200.1.0/28")
			cp.mu.Lock()
			cp.st.Attachments = orig.st.Attachments
			cp.mu.Unlock()
			for pass := 0; pass < 2; pass++ {
				err := keyErr(t, cp.full(), "attachment/linux_pid:100")
				var se *StepError
				if !errors.As(err, &se) || !errors.Is(err, ErrNotOurs) ||
					!strings.Contains(err.Error(), "eth0 is marked by journal aaaaaaaaaaaa at home home1") {
					t.Fatalf("pass %d: %v, want a StepError naming the original's owner", pass, err)
				}
			}
			same(t, "the container after the copy's passes", section(orig.k.render(), "pid 100"), ctr)
			if d := cp.detaches(); len(d) != 0 {
				t.Fatalf("the copy detached %q", d)
			}
			if node := section(cp.k.render(), "node"); strings.Contains(node, "veth") {
				t.Fatalf("the copy left links in its namespace:\n%s", node)
			}
			orig.k.mutations()
			if err := orig.full(); err != nil {
				t.Fatal(err)
			}
			if m := orig.k.mutations(); len(m) != 0 {
				t.Fatalf("the original had to repair %q", m)
			}

			// The adopt path: a host end with the copy's own mark exists in
			// its namespace (its peer elsewhere).
			a := &Attachment{Key: "linux_pid:100", NetnsInode: orig.inode(100)}
			m := newMarks(copyOwner)
			cp.makeVeth(a.HostName(LegService), m.host(a, LegService), 0, "p1")
			cp.k.mutations()
			err := keyErr(t, cp.full(), "attachment/linux_pid:100")
			if !errors.Is(err, ErrNotOurs) || !strings.Contains(err.Error(), "at home home1") {
				t.Fatalf("adopt path: %v", err)
			}
			same(t, "the container after the adopt path", section(orig.k.render(), "pid 100"), ctr)
			if m := cp.k.mutations(); len(m) != 0 {
				t.Fatalf("the copy changed %q", m)
			}
		})
	}
}

// legacyWired is a kernel wired by a daemon from before journal ids (a
// zero Owner): marks without j=, container ends unmarked; plus a legacy
// stray (the legs of an attachment that is gone).
func legacyWired(t *testing.T) *fakeKernel {
	old := newHarness(t, effects.Owner{})
	old.service("web", "10.200.1.0/28")
	old.container(100)
	old.attach(100, "web", "10.200.1.2", "10.200.128.2")
	old.converge()
	r := old.k.render()
	for _, want := range []string{`alias "zlayer-overlayd bridge web"`, `alias "zlayer-overlayd attach linux_pid:100/4026531842 s"`,
		"veth eth0 mtu 1420 up peer node/zvcfa3a244s\n"} {
		if !strings.Contains(r, want) {
			t.Fatalf("a zero owner did not write the old marks (%s):\n%s", want, r)
		}
	}
	old.makeVeth("zv11111111s", "zlayer-overlayd attach linux_pid:7/4026539999 s", 0, "p1")
	return old.k
}

// A journal from before ids (Owner.Legacy) takes the old marks as its
// own: it adopts the bridge and the container's legs without making them
// again, marks them with its owner (the container ends too), and removes
// the old stray.
func TestFakeLegacyMarksAdopted(t *testing.T) {
	k := legacyWired(t)
	h := newHarnessOn(t, k, effects.Owner{Journal: ownerA.Journal, Home: ownerA.Home, Legacy: true})
	h.service("web", "10.200.1.0/28")
	h.attach(100, "web", "10.200.1.2", "10.200.128.2")
	k.mutations()
	if err := h.full(); err != nil {
		t.Fatal(err)
	}
	m := k.mutations()
	slices.Sort(m)
	want := []string{
		"dellink zv11111111s",
		`setalias eth0 "zlayer-overlayd ctr linux_pid:100/4026531842 s j=aaaaaaaaaaaa h=home1"`,
		`setalias eth1 "zlayer-overlayd ctr linux_pid:100/4026531842 g j=aaaaaaaaaaaa h=home1"`,
		`setalias web-b "zlayer-overlayd bridge web j=aaaaaaaaaaaa"`,
		`setalias zvcfa3a244g "zlayer-overlayd attach linux_pid:100/4026531842 g j=aaaaaaaaaaaa"`,
		`setalias zvcfa3a244s "zlayer-overlayd attach linux_pid:100/4026531842 s j=aaaaaaaaaaaa"`,
	}
	if !slices.Equal(m, want) {
		t.Fatalf("the adoption did\n%q\nwant (marks only, and the stray removed)\n%q", m, want)
	}
	h.converge()
	same(t, "after the adoption", strings.Replace(h.k.render(), "pid 9999\n  lo up\n", "pid 9999\n", 1), wiredWeb+"pid 9999\n")
}

// A journal that is not that old leaves the old marks alone: the legacy
// bridge in the way of its own is an error naming it and saying whose it
// is, the stray stays, and nothing changes.
func TestFakeLegacyMarksNotOurs(t *testing.T) {
	k := legacyWired(t)
	h := newHarnessOn(t, k, ownerA)
	h.service("web", "10.200.1.0/28")
	h.attach(100, "web", "10.200.1.2", "10.200.128.2")
	before := k.render()
	k.mutations()
	e := keyErr(t, h.full(), "service/web")
	if !errors.Is(e, ErrNotOurs) || !strings.Contains(e.Error(), "web-b is marked by a daemon from before journal ids") {
		t.Fatalf("pass: %v", e)
	}
	same(t, "after the pass", k.render(), before)
	if m := k.mutations(); slices.ContainsFunc(m, func(s string) bool { return strings.HasPrefix(s, "dellink") || strings.HasPrefix(s, "setalias") }) {
		t.Fatalf("the pass changed another owner's links: %q", m)
	}
}
