//go:build linux

package main

import (
	"bytes"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// --help prints the usage once, on stdout only, and exits 0; a bad flag
// prints its error and the usage once, on stderr only, and exits 2. Every
// flag's header line in the usage names a plain value type (the flag
// package turns a `word` in backticks inside a usage text into the value
// name, which once showed "-wg-private-key-file wg genkey"), and every
// flag has a sentence of its own.
func TestHelpOnceOnStdout(t *testing.T) {
	run := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		var o, e bytes.Buffer
		cmd := exec.Command(daemonBin, args...)
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatal(err)
		}
		return o.String(), e.String(), code
	}
	for _, h := range []string{"--help", "-h", "-help"} {
		out, errOut, code := run(h)
		if code != 0 || errOut != "" {
			t.Fatalf("%s: exit %d, stderr %q; want 0 and nothing on stderr", h, code, errOut)
		}
		if n := strings.Count(out, "usage: zlayer-overlayd"); n != 1 {
			t.Fatalf("%s: the usage %d times on stdout:\n%s", h, n, out)
		}
		checkUsage(t, out)
	}
	out, errOut, code := run("--no-such-flag")
	if code != 2 || out != "" {
		t.Fatalf("a bad flag: exit %d, stdout %q; want 2 and nothing on stdout", code, out)
	}
	if !strings.HasPrefix(errOut, "zlayer-overlayd: flag provided but not defined: -no-such-flag\n") ||
		strings.Count(errOut, "usage: zlayer-overlayd") != 1 || strings.Count(errOut, "not defined") != 1 {
		t.Fatalf("a bad flag: stderr should give the error once, then the usage once:\n%s", errOut)
	}
	_, errOut, code = run("--snapshot-every", "many")
	if code != 2 || !strings.Contains(errOut, `invalid value "many" for flag -snapshot-every`) {
		t.Fatalf("a bad value: exit %d:\n%s", code, errOut)
	}
}

// checkUsage checks the flag lines of a usage text: "  -name [type]"
// then an indented sentence.
func checkUsage(t *testing.T, usage string) {
	t.Helper()
	header := regexp.MustCompile(`^  -([a-z0-9-]+)(?: (string|int|uint|duration|value|float))?$`)
	_, flags, ok := strings.Cut(usage, "\nflags:\n")
	if !ok {
		t.Fatalf("no flags section:\n%s", usage)
	}
	lines := strings.Split(strings.TrimRight(flags, "\n"), "\n")
	n := 0
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasPrefix(l, "  -") {
			t.Fatalf("line %q is neither a flag nor its text", l)
		}
		m := header.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("flag line %q: the value name is not a type (a backtick placeholder in its usage?)", l)
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "    \t") || len(strings.TrimSpace(lines[i+1])) < 10 {
			t.Fatalf("flag -%s has no usage sentence", m[1])
		}
		if strings.Contains(lines[i+1], "`") {
			t.Fatalf("flag -%s: a backtick in its usage: %q", m[1], lines[i+1])
		}
		i++
		n++
	}
	if n < 15 {
		t.Fatalf("only %d flags in the usage", n)
	}
}
