package main

import (
	"strings"
	"testing"
)

// Every read command's output, table and JSON, on the fixture node read
// offline, against testdata/*.golden.
func TestGoldenOffline(t *testing.T) {
	data := t.TempDir()
	fixtureNode(t, data)
	for _, args := range [][]string{
		{"status"}, {"peers"}, {"ipam"}, {"ipam", "--addresses"}, {"services"}, {"attachments"}, {"dns"},
		{"state"}, {"journal", "ls"}, {"journal", "ls", "--after", "10", "--limit", "3"}, {"journal", "verify"},
	} {
		for _, o := range []string{"table", "json", "jsonl"} {
			name := strings.ReplaceAll(strings.Join(args, "_"), "-", "") + "." + o
			code, out, errs := ctl(t, data, append(args, "-o", o)...)
			if code != 0 {
				t.Errorf("%v -o %s: exit %d: %s", args, o, code, errs)
				continue
			}
			golden(t, name, scrub(out, data))
		}
	}
}
