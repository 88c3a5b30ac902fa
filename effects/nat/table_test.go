//go:build linux

package nat

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/zlayer/overlayd/effects"
)

// testNetns creates a network namespace named for the test and returns
// its name and an open fd; both go at cleanup.
func testNetns(tb testing.TB) (string, int) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: works in a network namespace it creates")
	}
	var b [3]byte
	rand.Read(b[:])
	name := "natt" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add: %v: %s", err, out)
	}
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		exec.Command("ip", "netns", "delete", name).Run()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		f.Close()
		exec.Command("ip", "netns", "delete", name).Run()
	})
	return name, int(f.Fd())
}

func nft(tb testing.TB, ns string, args ...string) string {
	tb.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func testConfig(subnets int) Config {
	c := Config{Enabled: true,
		Sources: []netip.Prefix{netip.MustParsePrefix("10.200.7.0/24")},
		Overlay: []netip.Prefix{netip.MustParsePrefix("10.200.0.0/16"), netip.MustParsePrefix("10.200.7.0/24")},
		Devices: []string{"zl-lab-1-g"}}
	for i := 0; i < subnets; i++ {
		// /28s spread over 10.201.0.0/16 and beyond, not adjacent.
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(210 + i/4096), byte(i / 16 % 256), byte(i % 16 * 16)}), 28)
		c.Sources = append(c.Sources, p)
		c.Overlay = append(c.Overlay, p)
		c.Bridges = append(c.Bridges, fmt.Sprintf("zl-s%d-b", i))
	}
	return c
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var testOwner = effects.Owner{Journal: "0123456789ab"}

func TestTableLifecycle(t *testing.T) {
	ns, fd := testNetns(t)
	// Someone else's table, which must survive everything below.
	nft(t, ns, "add", "table", "ip", "theirs")
	nft(t, ns, "add", "chain", "ip", "theirs", "c", "{ type filter hook forward priority 0; policy accept; }")
	nft(t, ns, "add", "rule", "ip", "theirs", "c", "counter")
	theirs := nft(t, ns, "list", "table", "ip", "theirs")

	r := NewInNetns(quiet(), testOwner, fd)
	defer r.Close()
	cfg := testConfig(3)
	for i := 0; i < 100; i++ {
		if err := r.Apply(cfg, true); err != nil {
			t.Fatalf("reconcile %d: %v", i, err)
		}
	}
	if s := r.Stats(); s.Rebuilds != 1 {
		t.Fatalf("100 reconciles of one state rebuilt %d times", s.Rebuilds)
	}
	out := nft(t, ns, "list", "table", "inet", Table)
	t.Logf("\n%s", out)
	for _, want := range []string{
		"type nat hook postrouting priority srcnat; policy accept;",
		"type filter hook forward priority filter; policy accept;",
		`ip saddr @src4 ip daddr != @dst4 oifname != @overlay_ifs counter packets 0 bytes 0 masquerade comment "zlayer-overlayd: masquerade ipv4 leaving the overlay"`,
		"10.200.0.0/16",
		`iifname @bridges oifname @wg_devices counter`,
	} {
		if c := strings.Count(out, want); c != 1 {
			t.Errorf("%q appears %d times in the table, want once", want, c)
		}
	}
	if c := strings.Count(out, `"zl-s2-b"`); c != 2 {
		t.Errorf("bridge zl-s2-b is in %d sets, want 2 (bridges, overlay_ifs)", c)
	}
	if strings.Contains(out, "src6") {
		t.Error("IPv6 sets without IPv6 sources")
	}

	// A new reconciler (a restarted daemon) adopts the table as it is.
	r2 := NewInNetns(quiet(), testOwner, fd)
	if err := r2.Apply(cfg, true); err != nil {
		t.Fatal(err)
	}
	r2.Close()
	if s := r2.Stats(); s.Rebuilds != 0 || s.Repairs != 0 {
		t.Fatalf("a restarted reconciler rebuilt an intact table: %+v", s)
	}

	// Someone flushes the ruleset: the next check puts the table back.
	nft(t, ns, "flush", "ruleset")
	if err := r.Apply(cfg, true); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s.Repairs != 1 || s.Rebuilds != 2 {
		t.Fatalf("after flush ruleset: %+v", s)
	}
	if again := nft(t, ns, "list", "table", "inet", Table); again != out {
		t.Fatalf("restored table differs:\n%s\nwant\n%s", again, out)
	}
	nft(t, ns, "add", "table", "ip", "theirs")
	nft(t, ns, "add", "chain", "ip", "theirs", "c", "{ type filter hook forward priority 0; policy accept; }")
	nft(t, ns, "add", "rule", "ip", "theirs", "c", "counter")

	// A hand edit inside our table: a rule added, a set element deleted.
	nft(t, ns, "add", "rule", "inet", Table, chainPost, "counter")
	if err := r.Apply(cfg, true); err != nil {
		t.Fatal(err)
	}
	nft(t, ns, "delete", "element", "inet", Table, setBridges, `{ "zl-s1-b" }`)
	if err := r.Apply(cfg, true); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s.Repairs != 3 {
		t.Fatalf("hand edits repaired %d times, want 2 more", s.Repairs-1)
	}
	if again := nft(t, ns, "list", "table", "inet", Table); again != out {
		t.Fatalf("repaired table differs:\n%s\nwant\n%s", again, out)
	}

	// A change rebuilds; disabling removes exactly our table.
	cfg2 := testConfig(4)
	if err := r.Apply(cfg2, false); err != nil {
		t.Fatal(err)
	}
	if out := nft(t, ns, "list", "set", "inet", Table, setBridges); !strings.Contains(out, `"zl-s3-b"`) {
		t.Fatalf("new bridge missing:\n%s", out)
	}
	if err := r.Apply(Config{}, false); err != nil {
		t.Fatal(err)
	}
	rs := nft(t, ns, "list", "ruleset")
	if strings.Contains(rs, Table) || strings.Contains(rs, "zlayer") {
		t.Fatalf("our table is still there:\n%s", rs)
	}
	if got := nft(t, ns, "list", "table", "ip", "theirs"); got != theirs {
		t.Fatalf("their table changed:\n%s\nwas\n%s", got, theirs)
	}
	// Removing again is a no-op.
	if err := r.Apply(Config{}, true); err != nil {
		t.Fatal(err)
	}
}

func TestIPv6Sources(t *testing.T) {
	ns, fd := testNetns(t)
	r := NewInNetns(quiet(), testOwner, fd)
	defer r.Close()
	cfg := Config{Enabled: true,
		Sources: []netip.Prefix{netip.MustParsePrefix("fd00:200::/64"), netip.MustParsePrefix("10.200.7.0/24")},
		Overlay: []netip.Prefix{netip.MustParsePrefix("fd00::/16"), netip.MustParsePrefix("10.200.0.0/16")},
		Devices: []string{"zl-g"}}
	if err := r.Apply(cfg, true); err != nil {
		t.Fatal(err)
	}
	out := nft(t, ns, "list", "table", "inet", Table)
	if !strings.Contains(out, "ip6 saddr @src6 ip6 daddr != @dst6") || !strings.Contains(out, "fd00::/16") {
		t.Fatalf("no IPv6 rule:\n%s", out)
	}
	if err := r.Apply(cfg, true); err != nil || r.Stats().Repairs != 0 {
		t.Fatalf("second pass: %v, %+v", err, r.Stats())
	}
}

func TestMerge(t *testing.T) {
	ps := []netip.Prefix{
		netip.MustParsePrefix("10.200.1.0/28"), netip.MustParsePrefix("10.200.0.0/16"),
		netip.MustParsePrefix("10.201.0.0/24"), netip.MustParsePrefix("10.201.1.0/24"),
		netip.MustParsePrefix("10.203.0.0/24"), netip.MustParsePrefix("fd00::/64"),
	}
	got := fmt.Sprint(Merge(ps, true))
	// Nested and adjacent prefixes merge: the /16 swallows the /28, and
	// 10.201.0.0/24 + 10.201.1.0/24 follow 10.200.255.255 without a gap.
	want := "[{10.200.0.0 10.201.1.255} {10.203.0.0 10.203.0.255}]"
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if got := fmt.Sprint(Merge(ps, false)); got != "[{fd00:: fd00::ffff:ffff:ffff:ffff}]" {
		t.Fatalf("v6: %s", got)
	}
}

// BenchmarkRebuild1000 rebuilds the table for 1,000 service subnets (and
// bridges) in one batch; the baseline is the same content as 1,000
// single-subnet rules... see tools/bench for the side-by-side run.
func BenchmarkRebuild1000(b *testing.B) {
	_, fd := testNetns(b)
	r := NewInNetns(quiet(), testOwner, fd)
	defer r.Close()
	cfgs := []Config{testConfig(1000), testConfig(999)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.Apply(cfgs[i%2], false); err != nil {
			b.Fatal(err)
		}
	}
}

func TestIntervalsRoundTrip(t *testing.T) {
	ps := []netip.Prefix{netip.MustParsePrefix("10.200.7.0/24"), netip.MustParsePrefix("10.210.0.16/28"),
		netip.MustParsePrefix("255.255.255.0/24"), netip.MustParsePrefix("fd00::/64")}
	for _, v4 := range []bool{true, false} {
		want := Merge(ps, v4)
		got := intervals(rangeElems(want))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("v4=%v: %v, want %v", v4, got, want)
		}
	}
}

// On the real kernel: the owner mark survives a round trip through the
// kernel; another journal's table, or an unmarked one for a journal that
// is not a legacy one, is left as it is; a legacy journal adopts an
// unmarked table and marks it.
func TestOwnerMarkRealKernel(t *testing.T) {
	ns, fd := testNetns(t)
	a := NewInNetns(quiet(), effects.Owner{Journal: "aaaaaaaaaaaa"}, fd)
	defer a.Close()
	if err := a.Apply(testConfig(2), true); err != nil {
		t.Fatal(err)
	}
	theirs := nft(t, ns, "list", "table", "inet", Table)
	if !strings.Contains(theirs, `comment "zlayer-overlayd owner journal=aaaaaaaaaaaa"`) {
		t.Fatalf("no owner mark:\n%s", theirs)
	}
	b := NewInNetns(quiet(), effects.Owner{Journal: "bbbbbbbbbbbb"}, fd)
	defer b.Close()
	for _, cfg := range []Config{testConfig(3), {}} {
		err := b.Apply(cfg, true)
		if !errors.Is(err, ErrNotOwner) || !strings.Contains(err.Error(), "owned by journal aaaaaaaaaaaa") {
			t.Fatalf("enabled %v: %v", cfg.Enabled, err)
		}
		if got := nft(t, ns, "list", "table", "inet", Table); got != theirs {
			t.Fatalf("another journal's table changed:\n%s\nwas\n%s", got, theirs)
		}
	}
	// An unmarked table (by hand, or by a daemon from before marks).
	nft(t, ns, "delete", "table", "inet", Table)
	nft(t, ns, "add", "table", "inet", Table)
	nft(t, ns, "add", "chain", "inet", Table, "postrouting", "{ type nat hook postrouting priority srcnat; policy accept; }")
	unmarked := nft(t, ns, "list", "table", "inet", Table)
	if err := b.Apply(testConfig(2), true); !errors.Is(err, ErrNotOwner) || !strings.Contains(err.Error(), "no owner mark") {
		t.Fatalf("unmarked table, non-legacy journal: %v", err)
	}
	if got := nft(t, ns, "list", "table", "inet", Table); got != unmarked {
		t.Fatalf("the unmarked table changed:\n%s", got)
	}
	legacy := NewInNetns(quiet(), effects.Owner{Journal: "bbbbbbbbbbbb", Legacy: true}, fd)
	defer legacy.Close()
	if err := legacy.Apply(testConfig(2), true); err != nil {
		t.Fatal(err)
	}
	if got := nft(t, ns, "list", "table", "inet", Table); !strings.Contains(got, "owner journal=bbbbbbbbbbbb") || !strings.Contains(got, "masquerade") {
		t.Fatalf("the legacy journal did not adopt and mark the table:\n%s", got)
	}
	// Marked now: the same journal (not legacy) manages it.
	if err := b.Apply(Config{}, true); err != nil {
		t.Fatal(err)
	}
	if rs := nft(t, ns, "list", "ruleset"); strings.Contains(rs, Table) {
		t.Fatalf("not removed:\n%s", rs)
	}
}

// BenchmarkCheck1000 is the periodic check of an intact table for 1,000
// service subnets: the owner mark, the chains, rules and every set read
// back and compared.
func BenchmarkCheck1000(b *testing.B) {
	_, fd := testNetns(b)
	r := NewInNetns(quiet(), testOwner, fd)
	defer r.Close()
	cfg := testConfig(1000)
	if err := r.Apply(cfg, false); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.Apply(cfg, true); err != nil {
			b.Fatal(err)
		}
	}
	if s := r.Stats(); s.Repairs != 0 {
		b.Fatalf("an intact table was repaired: %+v", s)
	}
}
