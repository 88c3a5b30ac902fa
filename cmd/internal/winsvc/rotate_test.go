package winsvc

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/zlayer/overlayd/tools/testtemp"
)

// TestRotatingFile writes numbered lines past the size limit several
// times: the live file and the kept ones are each at most max bytes, hold
// whole lines only, the oldest beyond keep are gone, and the kept files
// hold the newest lines in order.
func TestRotatingFile(t *testing.T) {
	dir := testtemp.Dir(t)
	path := filepath.Join(dir, "overlayd", "logs", "overlayd.log")
	const max, keep = 100, 3
	r, err := OpenLog(path, max, keep)
	if err != nil {
		t.Fatal(err)
	}
	var lines [][]byte
	for i := 0; i < 40; i++ {
		l := []byte(fmt.Sprintf("line %03d xxxxxxxxxxxxxxxx\n", i)) // 26 bytes: 3 a file
		lines = append(lines, l)
		if _, err := r.Write(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Write([]byte("late\n")); err == nil {
		t.Error("Write after Close succeeded")
	}
	var got []byte
	for i := keep; i >= 0; i-- {
		p := path
		if i > 0 {
			p = fmt.Sprintf("%s.%d", path, i)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("kept log %s: %v", p, err)
		}
		if len(b) > max {
			t.Errorf("%s holds %d bytes, past the limit %d", p, len(b), max)
		}
		if len(b) == 0 || b[len(b)-1] != '\n' {
			t.Errorf("%s does not end with a whole line: %q", p, b)
		}
		got = append(got, b...)
	}
	if _, err := os.Stat(fmt.Sprintf("%s.%d", path, keep+1)); !os.IsNotExist(err) {
		t.Errorf("%s.%d exists (keep is %d): %v", path, keep+1, keep, err)
	}
	// 40 lines, 3 a file: the live file holds 1, the three kept 3 each.
	want := bytes.Join(lines[40-10:], nil)
	if !bytes.Equal(got, want) {
		t.Errorf("the kept files hold\n%s\nwant the newest 10 lines\n%s", got, want)
	}

	// Reopened, it appends to what is there and counts its size.
	r, err = OpenLog(path, max, keep)
	if err != nil {
		t.Fatal(err)
	}
	r.Write(bytes.Repeat([]byte("y"), 90))
	r.Close()
	b, _ := os.ReadFile(path)
	if !bytes.Equal(b, bytes.Repeat([]byte("y"), 90)) {
		t.Errorf("a write past the limit of the reopened file did not rotate it first: %q", b)
	}
}
