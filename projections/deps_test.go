package projections

import (
	"os/exec"
	"path"
	"strings"
	"testing"
)

// TestImportDirection pins which packages may import which (DESIGN.md,
// "Packages"): the pure core stays pure, the wire stays stdlib-only.
func TestImportDirection(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH (a test binary run elsewhere, e.g. under wine): the import rule is checked where the code is built")
	}
	// Without go list there is nothing to check, and a check that cannot
	// run must not pass: fail, with go list's own words.
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "github.com/zlayer/overlayd/...")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	const mod = "github.com/zlayer/overlayd"
	isStd := func(p string) bool { return !strings.Contains(strings.SplitN(p, "/", 2)[0], ".") }
	rules := map[string]func(imp string) bool{
		mod + "/projections": isStd,
		mod + "/ipc":         isStd,
		mod + "/journal": func(imp string) bool {
			return isStd(imp) || strings.HasPrefix(imp, "go.etcd.io/bbolt") || strings.HasPrefix(imp, "github.com/oklog/ulid")
		},
		mod + "/effects": func(imp string) bool {
			return isStd(imp) || imp == mod+"/projections" || imp == mod+"/effects" ||
				strings.HasPrefix(imp, mod+"/effects/internal/") || !strings.HasPrefix(imp, mod)
		},
		// The audit tool reads; it never links the daemon or the effects.
		mod + "/cmd/overlayctl": func(imp string) bool {
			switch imp {
			case mod + "/journal", mod + "/projections", mod + "/ipc", mod + "/cmd/internal/replay",
				mod + "/cmd/internal/audit", mod + "/cmd/internal/version":
				return true
			}
			return isStd(imp) || strings.HasPrefix(imp, "github.com/spf13/") || imp == "golang.org/x/sys/unix" || imp == "golang.org/x/sys/windows"
		},
		mod + "/cmd/internal/audit": func(imp string) bool {
			return isStd(imp) || imp == mod+"/journal" || imp == mod+"/projections" || imp == mod+"/ipc" ||
				imp == mod+"/cmd/internal/replay" || strings.HasPrefix(imp, "github.com/oklog/ulid")
		},
		mod + "/cmd/internal/replay": func(imp string) bool {
			return isStd(imp) || imp == mod+"/journal" || imp == mod+"/projections" || imp == mod+"/ipc"
		},
	}
	checked := 0
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pkg := f[0]
		seen[pkg] = true
		allow, ok := rules[pkg]
		if !ok {
			// effects subpackages follow the effects rule.
			if strings.HasPrefix(pkg, mod+"/effects/") {
				allow = rules[mod+"/effects"]
			} else {
				continue
			}
		}
		checked++
		for _, imp := range f[1:] {
			// The fake of an effect package's API (effects/hcn/hcnfake)
			// implements it, so it imports that package, and only that one
			// of the effects.
			if strings.HasPrefix(pkg, mod+"/effects/") && strings.HasSuffix(pkg, "fake") && path.Dir(pkg) == imp {
				continue
			}
			if !allow(imp) {
				t.Errorf("%s must not import %s", pkg, imp)
			}
		}
	}
	// A rule for a package go list did not name (renamed, moved) checks
	// nothing: say so.
	for pkg := range rules {
		if !seen[pkg] {
			t.Errorf("go list does not list %s: its rule checks nothing", pkg)
		}
	}
	if checked < 5 {
		t.Fatalf("only %d packages checked", checked)
	}
}
