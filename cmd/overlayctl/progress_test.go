package main

import (
	"regexp"
	"strings"
	"testing"
)

// journal verify draws its progress on stderr only when asked to or when
// stderr is a terminal (a test's buffer is not: no bar), erases it at the
// end, and ends its report with the speed.
func TestVerifyProgress(t *testing.T) {
	data := t.TempDir()
	makeNode(t, data, 3000)
	code, out, errs := ctl(t, data, "journal", "verify")
	if code != 0 || errs != "" {
		t.Fatalf("verify on a pipe: exit %d, stderr %q", code, errs)
	}
	if !speedLine.MatchString(out) {
		t.Fatalf("no speed summary:\n%s", out)
	}
	code, out, errs = ctl(t, data, "journal", "verify", "--progress", "always")
	if code != 0 {
		t.Fatalf("verify --progress always: exit %d: %s", code, errs)
	}
	for _, want := range []string{"checking the hash chain", "replaying [", "\r\033[K"} {
		if !strings.Contains(errs, want) {
			t.Errorf("progress lacks %q: %q", want, errs)
		}
	}
	if !regexp.MustCompile(`replaying \[=+\] (\d+)/(\d+) events 100%`).MatchString(errs) {
		t.Errorf("progress never reaches 100%%: %q", errs)
	}
	if !strings.HasSuffix(errs, "\r\033[K") {
		t.Errorf("the progress line is not erased at the end: %q", errs[max(0, len(errs)-40):])
	}
	if strings.Contains(out, "\r") {
		t.Errorf("progress went to stdout")
	}
	if code, _, errs := ctl(t, data, "journal", "verify", "--progress", "sometimes"); code != exitUsage {
		t.Errorf("--progress sometimes: exit %d: %s", code, errs)
	}
}
