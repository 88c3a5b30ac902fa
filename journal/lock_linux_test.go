package journal

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A journal locked by another process: the error names the holder's pid
// and command line, and says what to do.
func TestLockedNamesTheHolder(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("needs flock(1) (util-linux) to hold the lock from another process")
	}
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	holder := exec.Command("flock", "--exclusive", path, "sleep", "30")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	// Wait until flock holds it (its child, sleep, inherits the lock).
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, ok := lockHolder(path); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("flock did not take the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = Open(dir, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("open of a locked journal: %v, want ErrLocked", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, fmt.Sprintf("pid %d (flock --exclusive %s sleep 30)", holder.Process.Pid, path)) ||
		!strings.Contains(msg, fmt.Sprintf("kill -TERM %d", holder.Process.Pid)) || !strings.Contains(msg, "held by another process") {
		t.Fatalf("the error does not name the holder (pid %d) and the fix: %s", holder.Process.Pid, msg)
	}
	t.Log(msg)
}
