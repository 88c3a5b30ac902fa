package projections

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/zlayer/overlayd/tools/fuzzcorpus"
)

// fuzzArgs is the inverse of fuzzCommand: the op selector and fields that
// build cmd (ok false for a command fuzzCommand cannot express).
func fuzzArgs(cmd Command) (op uint8, a, b, c, d string, n uint64, flag bool, ok bool) {
	str := func(x fmt.Stringer) string {
		if reflect.ValueOf(x).IsZero() {
			return ""
		}
		return x.String()
	}
	handle := func(h Handle) (string, string, string, uint64, bool) {
		switch h.Platform {
		case PlatformLinuxPID:
			return "", "", "", uint64(h.PID) << 2, true
		case PlatformWindows:
			return h.ContainerID, "", "", 1, true
		case PlatformGuest:
			return h.ID, "", "", 2, true
		}
		return "", "", "", 0, false
	}
	switch c0 := cmd.(type) {
	case SetNodeID:
		return 0, "", "", "", "", c0.NodeID, false, true
	case AnnounceKey:
		return 1, c0.PublicKey, "", "", "", 0, false, true
	case SetNodeIdentity:
		return 2, c0.PublicKey, c0.Source, "", "", 0, false, true
	case SetupGlobal:
		return 3, c0.Deployment, c0.InstanceID, c0.ClusterCIDR, c0.SliceCIDR, uint64(c0.Port), c0.NATEnabled, true
	case TeardownGlobal:
		return 4, "", "", "", "", 0, false, true
	case SetupService:
		return 5, c0.Service, c0.Mode, c0.NewPublicKey, "", 0, false, true
	case TeardownService:
		return 6, c0.Service, "", "", "", 0, false, true
	case AllocateIP:
		return 7, c0.Service, "", "", "", 0, c0.JoinGlobal, true
	case ReleaseIP:
		return 8, str(c0.IP), "", "", "", 0, false, true
	case Attach:
		hb, _, _, hn, ok := handle(c0.Handle)
		if c0.Handle.Platform == PlatformLinuxPID {
			hn = uint64(c0.Handle.PID)<<2 | (c0.Proc.NetnsInode&(1<<39-1))<<1
		}
		if !c0.Proc.Exists {
			hn |= 1
		}
		if c0.Proc.HostNetwork {
			hn |= 1 << 40
		}
		d := str(c0.NodeAddress)
		if c0.DNSServer.IsValid() {
			d, hn = str(c0.DNSServer), hn|1<<41
		}
		if c0.DNSDomain != "" {
			d, hn = c0.DNSDomain, hn|1<<42
		}
		return 9, c0.Service, hb, c0.NewGuestKey, d, hn, c0.JoinGlobal, ok
	case Detach:
		hb, _, _, hn, ok := handle(c0.Handle)
		return 10, c0.Reason, hb, "", "", hn, false, ok
	case AddPeer:
		return 11, c0.PublicKey, c0.Endpoint, c0.AllowedIPs, c0.Scope.Service, c0.Keepalive, false, true
	case RemovePeer:
		return 12, c0.PublicKey, "", "", c0.Scope.Service, 0, false, true
	case AddAllowedIP:
		return 13, c0.PublicKey, "", c0.CIDR, c0.Scope.Service, 0, false, true
	case RemoveAllowedIP:
		return 14, c0.PublicKey, "", c0.CIDR, c0.Scope.Service, 0, false, true
	case RegisterDNS:
		return 15, c0.Name, str(c0.IP), "", "", 0, false, true
	case UnregisterDNS:
		return 16, c0.Name, "", "", "", 0, false, true
	}
	return 0, "", "", "", "", 0, false, false
}

// TestFuzzSeeds keeps testdata/fuzz/FuzzDecide in step with its sources:
// every command of the testdata scripts (against a small generated state
// and against none), and the property generator's own next command after
// a few seeded scripts (those mostly succeed, so the fuzzer starts from
// acceptances as well as refusals).
func TestFuzzSeeds(t *testing.T) {
	var seeds []fuzzcorpus.Seed
	add := func(name string, seed int64, steps uint8, cmd Command) {
		op, a, b, c, d, n, flag, ok := fuzzArgs(cmd)
		if !ok {
			return
		}
		seeds = append(seeds, fuzzcorpus.Seed{Name: name, Args: []any{seed, steps, op, a, b, c, d, n, flag}})
	}
	scripts, err := filepath.Glob("testdata/*.script")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range scripts {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for line := 1; sc.Scan(); line++ {
			text := sc.Text()
			if !strings.HasPrefix(text, "> ") {
				continue
			}
			name, args, _ := strings.Cut(text[2:], " ")
			ptr := reflect.New(reflect.TypeOf(commandTypes[name]))
			if strings.TrimSpace(args) != "" {
				if err := json.Unmarshal([]byte(args), ptr.Interface()); err != nil {
					t.Fatalf("%s:%d: %v", path, line, err)
				}
			}
			base := strings.TrimSuffix(filepath.Base(path), ".script")
			add(fmt.Sprintf("script-%s-%d", base, line), int64(line), 0, ptr.Elem().Interface().(Command))
		}
		f.Close()
	}
	cfg := DefaultConfig()
	cfg.SlicePrefix4 = 26
	for seed := int64(1); seed <= 24; seed++ {
		steps := uint8(seed * 5 % 64)
		s := scriptedState(t, cfg, seed, int(steps))
		// The generator's state after scriptedState: replay it to draw
		// the command that would come next.
		g := &gen{r: rand.New(rand.NewSource(seed))}
		s2 := New()
		apply := func(cmd Command) {
			if d, err := Decide(s2, cfg, cmd); err == nil {
				for _, ev := range d.Events {
					_ = s2.Apply(ev)
				}
			}
		}
		apply(SetNodeIdentity{PublicKey: genKey(999), Source: "generated"})
		for i := 0; i < int(steps); i++ {
			apply(g.command(s2))
		}
		if a, b := mustJSON(t, s), mustJSON(t, s2); string(a) != string(b) {
			t.Fatalf("seed %d: scriptedState is not the generator's state", seed)
		}
		add(fmt.Sprintf("gen-%d", seed), seed, steps, g.command(s2))
	}
	fuzzcorpus.Check(t, ".", "FuzzDecide", seeds)

	// Snapshots: the empty state, generated states of several sizes
	// (services, dedicated devices, peers, guests, attachments, DNS).
	snaps := []fuzzcorpus.Seed{{Name: "empty", Args: []any{New().EncodeSnapshot()}}}
	for _, size := range []int{5, 20, 60, 120} {
		for seed := int64(1); seed <= 3; seed++ {
			st := scriptedState(t, cfg, seed, size)
			snaps = append(snaps, fuzzcorpus.Seed{Name: fmt.Sprintf("gen-%d-%d", size, seed), Args: []any{st.EncodeSnapshot()}})
		}
	}
	// A snapshot's bytes follow map order: compare the states they hold.
	fuzzcorpus.CheckFunc(t, ".", "FuzzDecodeSnapshot", snaps, func(got, want []byte) bool {
		state := func(entry []byte) []byte {
			b, err := fuzzcorpus.Bytes(entry)
			if err != nil {
				return nil
			}
			st, err := DecodeSnapshot(b)
			if err != nil {
				return nil
			}
			return mustJSON(t, st)
		}
		g, w := state(got), state(want)
		return g != nil && bytes.Equal(g, w)
	})
}
