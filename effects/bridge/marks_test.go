package bridge

import (
	"strings"
	"testing"

	"github.com/zlayer/overlayd/effects"
)

// Every mark a daemon writes parses back to what it says, and is judged
// its own; the same mark is another owner's for another journal, and (on a
// container's end) for another home.
func TestMarksRoundTrip(t *testing.T) {
	o := newMarks(effects.Owner{Journal: "0123456789ab", Home: "c0ffee"})
	a := &Attachment{Key: "linux_pid:4242", NetnsInode: 4026532001}
	for _, tc := range []struct {
		alias string
		want  mark
	}{
		{o.bridge("web"), mark{kind: kindBridge, id: "web", journal: "0123456789ab"}},
		{o.host(a, LegService), mark{kind: kindAttach, id: a.ID(), leg: LegService, journal: "0123456789ab"}},
		{o.host(a, LegGlobal), mark{kind: kindAttach, id: a.ID(), leg: LegGlobal, journal: "0123456789ab"}},
		{o.ctr(a, LegService), mark{kind: kindCtr, id: a.ID(), leg: LegService, journal: "0123456789ab", home: "c0ffee"}},
	} {
		m, ok := parseMark(tc.alias)
		if !ok || m != tc.want {
			t.Errorf("parseMark(%q) = %+v, %v; want %+v", tc.alias, m, ok, tc.want)
		}
		if v, _ := o.judge(tc.alias); v != own {
			t.Errorf("%q is not judged its writer's own (%d)", tc.alias, v)
		}
		other := newMarks(effects.Owner{Journal: "ba9876543210", Home: "c0ffee"})
		if v, _ := other.judge(tc.alias); v != foreign {
			t.Errorf("%q is not foreign to another journal (%d)", tc.alias, v)
		}
		copyAt := newMarks(effects.Owner{Journal: "0123456789ab", Home: "elsewhere"})
		if v, _ := copyAt.judge(tc.alias); (v == foreign) != (tc.want.kind == kindCtr) {
			t.Errorf("%q judged %d by a copy of the journal at another home", tc.alias, v)
		}
	}
	if got := o.ctr(a, LegService); got != "zlayer-overlayd ctr linux_pid:4242/4026532001 s j=0123456789ab h=c0ffee" {
		t.Errorf("container mark %q", got)
	}
}

// The marks from before journal ids parse without an owner; they are an
// owner's only when it is Legacy (or has no journal id: it writes them).
// Container ends never had such marks.
func TestMarksLegacy(t *testing.T) {
	for _, alias := range []string{"zlayer-overlayd bridge web", "zlayer-overlayd attach linux_pid:1/2 s"} {
		m, ok := parseMark(alias)
		if !ok || m.journal != "" {
			t.Fatalf("parseMark(%q) = %+v, %v", alias, m, ok)
		}
		for _, tc := range []struct {
			o    effects.Owner
			want verdict
		}{
			{effects.Owner{Journal: "0123456789ab"}, foreign},
			{effects.Owner{Journal: "0123456789ab", Legacy: true}, own},
			{effects.Owner{}, own},
		} {
			if v, _ := newMarks(tc.o).judge(alias); v != tc.want {
				t.Errorf("%+v judges %q %d, want %d", tc.o, alias, v, tc.want)
			}
		}
	}
	zero := newMarks(effects.Owner{})
	a := &Attachment{Key: "linux_pid:1", NetnsInode: 2}
	if zero.bridge("web") != "zlayer-overlayd bridge web" || zero.host(a, LegService) != "zlayer-overlayd attach linux_pid:1/2 s" || zero.ctr(a, LegService) != "" {
		t.Errorf("a zero owner writes %q %q %q", zero.bridge("web"), zero.host(a, LegService), zero.ctr(a, LegService))
	}
	if _, ok := parseMark("zlayer-overlayd ctr linux_pid:1/2 s"); ok {
		t.Error("a container mark without an owner parsed")
	}
}

// What is not a mark of this daemon is not parsed as one (and is judged
// alien): other programs' aliases, unknown kinds, wrong shapes. Fields a
// newer version may add are ignored.
func TestMarksOthers(t *testing.T) {
	for _, alias := range []string{"not ours", "zlayer-overlayd", "zlayer-overlayd tunnel x", "zlayer-overlayd bridge",
		"zlayer-overlayd bridge a b", "zlayer-overlayd attach x/1 q j=0123456789ab", "zlayer-overlayd attach x/1", "zlayer-overlaydbridge web"} {
		if m, ok := parseMark(alias); ok {
			t.Errorf("parseMark(%q) = %+v", alias, m)
		}
		if v, _ := newMarks(effects.Owner{Journal: "0123456789ab"}).judge(alias); v != alien {
			t.Errorf("%q judged %d", alias, v)
		}
	}
	m, ok := parseMark("zlayer-overlayd bridge web j=0123456789ab v=3")
	if !ok || m.journal != "0123456789ab" || m.id != "web" {
		t.Errorf("a mark with a newer field: %+v %v", m, ok)
	}
}

// The longest marks (a 63-byte service, the largest PID and inode, owner
// fields sanitised to 64 bytes) fit the kernel's 255 bytes; spaces in an
// owner's fields cannot split a mark.
func TestMarksFit(t *testing.T) {
	long := strings.Repeat("x", 200)
	o := newMarks(effects.Owner{Journal: long + " j=evil", Home: "a b\tc" + long})
	a := &Attachment{Key: "linux_pid:4294967295", NetnsInode: 18446744073709551615}
	for _, alias := range []string{o.bridge(strings.Repeat("s", 63)), o.host(a, LegGlobal), o.ctr(a, LegGlobal)} {
		if len(alias) > aliasMax {
			t.Errorf("%d bytes: %q", len(alias), alias)
		}
		m, ok := parseMark(alias)
		if !ok || m.journal != o.journal || (m.kind == kindCtr && m.home != o.home) {
			t.Errorf("parseMark(%q) = %+v, %v", alias, m, ok)
		}
		if v, _ := o.judge(alias); v != own {
			t.Errorf("%q is not its writer's own", alias)
		}
	}
}
