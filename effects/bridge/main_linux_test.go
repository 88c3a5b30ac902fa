//go:build linux

package bridge

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// inNetnsEnv is set in the copy of the test binary that runs in a network
// namespace of its own.
const inNetnsEnv = "OVERLAYD_BRIDGE_TEST_IN_NETNS"

// TestMain runs the package's tests, as root, in a copy of the test binary
// started in a new, anonymous network namespace (the "node"): the real
// kernel code acts on the calling process's namespace from several
// goroutines, so the whole process must live in the namespace it tests.
// The namespace dies with that process, whatever happens to it; nothing of
// the machine's own namespace is touched. Without root the tests run here
// (those that need the kernel skip).
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(inNetnsEnv) == "" {
		cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
		cmd.Env = append(os.Environ(), inNetnsEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			os.Exit(exit.ExitCode())
		case err != nil:
			fmt.Fprintln(os.Stderr, "bridge tests: start the test binary in a new network namespace:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// requireNetns skips a test that needs root and a namespace of its own.
func requireNetns(tb testing.TB) {
	tb.Helper()
	if os.Getenv(inNetnsEnv) == "" {
		tb.Skip("needs root: runs in a network namespace it creates")
	}
}

// testContainer is a process in a new network namespace, standing for a
// container; it is killed (and its namespace goes) at the end of the test.
type testContainer struct {
	pid   uint32
	inode uint64
	stop  func() // kills it (at the end of the test if not before)
}

func newTestContainer(tb testing.TB) *testContainer {
	tb.Helper()
	requireNetns(tb)
	cmd := exec.Command("sleep", "infinity")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start a container process: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	tb.Cleanup(stop)
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), &st); err != nil {
		tb.Fatalf("container namespace: %v", err)
	}
	return &testContainer{pid: uint32(cmd.Process.Pid), inode: st.Ino, stop: stop}
}

// run runs a command in the container's network namespace.
func (c *testContainer) run(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command("nsenter", append([]string{"-t", fmt.Sprint(c.pid), "-n"}, args...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s in container %d: %v: %s", strings.Join(args, " "), c.pid, err, out)
	}
	return string(out)
}

// runHere runs a command in the test's (node) namespace.
func runHere(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
