package journal

import (
	"os/exec"
	"strings"
	"testing"
)

// The journal imports only the standard library, bbolt and ulid
// (DESIGN.md, "Packages").
func TestJournalImports(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH (a test binary run elsewhere, e.g. under wine): the import rule is checked where the code is built")
	}
	out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, "github.com/zlayer/overlayd/journal").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, imp := range strings.Fields(string(out)) {
		std := !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".")
		if !std && !strings.HasPrefix(imp, "go.etcd.io/bbolt") && !strings.HasPrefix(imp, "github.com/oklog/ulid") {
			t.Errorf("journal imports %s", imp)
		}
	}
}
