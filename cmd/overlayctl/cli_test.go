package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// walk calls fn for c and every command below it.
func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, s := range c.Commands() {
		walk(s, fn)
	}
}

// commandPaths lists every command of overlayctl's tree (with cobra's
// completion and help commands), as argument lists.
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	a := &app{out: &bytes.Buffer{}, errOut: &bytes.Buffer{}}
	root := newRootCmd(a)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var paths [][]string
	walk(root, func(c *cobra.Command) {
		paths = append(paths, strings.Fields(c.CommandPath())[1:])
	})
	if len(paths) < 8 {
		t.Fatalf("only %d commands in the tree: %v", len(paths), paths)
	}
	return paths
}

// everyCommand is every command overlayctl has: the walk below must find
// each of them (a command left out of root.go's lists would not be).
var everyCommand = []string{
	"", "status", "peers", "ipam", "services", "attachments", "dns", "history", "state", "diff", "call",
	"backup", "restore", "completion", "help",
	"journal", "journal ls", "journal show", "journal verify", "journal stats", "journal export",
	"journal repair", "journal follow", "journal compact",
}

// -h and --help on every command of the tree exit 0 and print a usage
// naming the command; the tree holds every command of everyCommand.
func TestHelpOnEveryCommandExitsZero(t *testing.T) {
	paths := commandPaths(t)
	found := map[string]bool{}
	for _, p := range paths {
		found[strings.Join(p, " ")] = true
	}
	for _, c := range everyCommand {
		if !found[c] {
			t.Errorf("the help walk does not reach %q (walked %v)", c, paths)
		}
	}
	for _, path := range paths {
		for _, h := range []string{"-h", "--help"} {
			args := append(append([]string(nil), path...), h)
			code, out, errs := ctl(t, t.TempDir(), args...)
			name := "overlayctl"
			if len(path) > 0 {
				name = path[len(path)-1]
			}
			if code != 0 || !strings.Contains(out, "Usage:") || !strings.Contains(out, name) {
				t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
			}
		}
	}
}

func TestCompletionScriptsGenerate(t *testing.T) {
	for shell, marker := range map[string]string{
		"bash": "__start_overlayctl", "zsh": "#compdef overlayctl", "fish": "complete -c overlayctl",
	} {
		code, out, errs := ctl(t, t.TempDir(), "completion", shell)
		if code != 0 || !strings.Contains(out, marker) || len(out) < 1000 {
			t.Errorf("completion %s: exit %d, %d bytes, stderr %q", shell, code, len(out), errs)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := ctl(t, t.TempDir(), "--version")
	if code != 0 || !strings.HasPrefix(out, "overlayd ") || !strings.Contains(out, "protocol v1") {
		t.Fatalf("--version: exit %d: %q", code, out)
	}
}

// The documented exit codes: 2 for usage errors, 3 when the daemon does
// not answer a command that needs it, 4 for other failures.
func TestExitCodes(t *testing.T) {
	data := t.TempDir()
	makeNode(t, data, 3)
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{nil, exitUsage, "a command is needed"},
		{[]string{"journal"}, exitUsage, "a command is needed"},
		{[]string{"nosuch"}, exitUsage, `unknown command "nosuch"`},
		{[]string{"journal", "lss"}, exitUsage, "did you mean ls"},
		{[]string{"journal", "ls", "--nosuch"}, exitUsage, "unknown flag: --nosuch"},
		{[]string{"journal", "ls", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"journal", "ls", "-o", "xml"}, exitUsage, `-o "xml"`},
		{[]string{"call"}, exitUsage, "want one argument"},
		{[]string{"call", "{not json"}, exitUsage, "call:"},
		{[]string{"call", `{"op":"status"}`}, exitUnreachable, "does not answer"},
		{[]string{"journal", "ls"}, exitOK, ""},
		{[]string{"journal", "verify"}, exitOK, ""},
	} {
		code, _, errs := ctl(t, data, c.args...)
		if code != c.code || !strings.Contains(errs, c.says) {
			t.Errorf("%v: exit %d, want %d; stderr %q (want %q)", c.args, code, c.code, errs, c.says)
		}
	}
	// No journal at all: a failure naming the directory.
	empty := t.TempDir()
	code, _, errs := ctl(t, empty, "state")
	if code != exitFailure || !strings.Contains(errs, filepath.Join(empty, "overlayd")) {
		t.Errorf("state without a journal: exit %d: %q", code, errs)
	}
}

// call --help is help, not a request.
func TestCallHelpIsHelp(t *testing.T) {
	code, out, errs := ctl(t, t.TempDir(), "call", "--help")
	if code != 0 || !strings.Contains(out, "REQUEST-JSON") || errs != "" {
		t.Fatalf("call --help: exit %d\n%s%s", code, out, errs)
	}
}
