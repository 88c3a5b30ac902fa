//go:build linux

package netlab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Container is a process in a network namespace of its own, standing for a
// container: the daemon wires it by PID. Its namespace dies with it.
type Container struct {
	Cmd *exec.Cmd
	PID int
	lab *Lab
}

// NewContainer starts a container process. The lab kills it on Close.
func (l *Lab) NewContainer() (*Container, error) {
	cmd := exec.Command("unshare", "--net", "sleep", "infinity")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &Container{Cmd: cmd, PID: cmd.Process.Pid, lab: l}
	go cmd.Wait()
	// Wait until the new namespace is in place (unshare has exec'd sleep).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c.PID)); err == nil && strings.TrimSpace(string(b)) == "sleep" {
			break
		}
		time.Sleep(time.Millisecond)
	}
	l.mu.Lock()
	l.containers = append(l.containers, c)
	l.mu.Unlock()
	return c, nil
}

// NewContainerWithPID starts a container whose process gets the given PID,
// by setting the kernel's last PID just below it (for PID-reuse tests). It
// retries a few times, since any fork on the machine can take the PID first.
func (l *Lab) NewContainerWithPID(pid int) (*Container, error) {
	for attempt := 0; attempt < 200; attempt++ {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0o644); err != nil {
			return nil, err
		}
		c, err := l.NewContainer()
		if err != nil {
			return nil, err
		}
		if c.PID == pid {
			return c, nil
		}
		c.Kill()
	}
	return nil, fmt.Errorf("netlab: could not start a process with pid %d", pid)
}

// Kill kills the container's process (its namespace goes with it).
func (c *Container) Kill() {
	c.Cmd.Process.Signal(syscall.SIGKILL)
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", c.PID)); err != nil {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Run runs a command in the container's network namespace.
func (c *Container) Run(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.PID), "-n"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in container %d: %v: %s", strings.Join(args, " "), c.PID, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// procAlive reports whether pid names a live process with a network
// namespace.
func procAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid))
	return err == nil
}
