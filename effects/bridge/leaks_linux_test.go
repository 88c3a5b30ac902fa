//go:build linux

package bridge

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// openFDs counts the test process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory's own
}

// strayThreads lists the threads of the process that are not in its
// network namespace (a thread left in a container).
func strayThreads(t *testing.T) []string {
	t.Helper()
	var home syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &home); err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/self/task/"+task.Name()+"/ns/net", &st); err == nil && st.Ino != home.Ino {
			out = append(out, fmt.Sprintf("thread %s in namespace %d", task.Name(), st.Ino))
		}
	}
	return out
}

// Attaches, detaches and failed attaches (a container that already has an
// eth0, a process that is gone, a namespace that is not the attached one)
// against the real kernel leave no descriptor open and no thread in a
// container's namespace.
func TestRealNoLeaks(t *testing.T) {
	h := realHarness(t, ownerA)
	h.service("web", "10.200.1.0/28")
	h.converge()
	if _, err := h.r.k.Index("lo"); err != nil { // the node's socket, kept open
		t.Fatal(err)
	}
	cycle := func() {
		var ctrs []*testContainer
		for i := range 4 {
			c := newTestContainer(t)
			ctrs = append(ctrs, c)
			h.attachIno(c.pid, c.inode, "web", fmt.Sprintf("10.200.1.%d", 2+i), fmt.Sprintf("10.200.128.%d", 2+i))
		}
		h.converge()
		blocked := newTestContainer(t)
		blocked.run(t, "ip", "link", "add", "eth0", "type", "bridge")
		h.attachIno(blocked.pid, blocked.inode, "web", "10.200.1.10", "")
		h.attachIno(ctrs[0].pid, ctrs[0].inode+1, "web", "10.200.1.2", "") // not its namespace
		h.attachIno(4000000, 1, "web", "10.200.1.11", "")                  // no such process
		if err := h.change(attachmentKey(fmt.Sprintf("linux_pid:%d", blocked.pid)), attachmentKey(fmt.Sprintf("linux_pid:%d", ctrs[0].pid)), "attachment/linux_pid:4000000"); err == nil {
			t.Fatal("the failing attaches succeeded")
		}
		h.mu.Lock()
		for k := range h.st.Attachments {
			delete(h.st.Attachments, k)
		}
		h.mu.Unlock()
		h.must(h.full())
		for _, c := range ctrs {
			if out := c.run(t, "ip", "-o", "link"); strings.Contains(out, "eth0") {
				t.Fatalf("container %d still wired:\n%s", c.pid, out)
			}
			c.stop()
		}
		blocked.stop()
	}
	cycle() // the runtime's own descriptors (epoll, pidfds) settle
	base := openFDs(t)
	for range 3 {
		cycle()
	}
	if n := openFDs(t); n != base {
		t.Fatalf("%d descriptors open after three cycles, %d before", n, base)
	}
	if s := strayThreads(t); len(s) > 0 {
		t.Fatalf("threads left in other namespaces: %v", s)
	}
}

// limitLeaving is the descriptor limit under which exactly n more
// descriptors can be opened (a limit bounds descriptor numbers, and the
// open ones leave holes).
func limitLeaving(t *testing.T, n int) uint64 {
	t.Helper()
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	ents, err := dir.ReadDir(-1)
	self := int(dir.Fd())
	dir.Close()
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	for _, e := range ents {
		var fd int
		if _, err := fmt.Sscan(e.Name(), &fd); err == nil && fd != self {
			used[fd] = true
		}
	}
	free, l := 0, 0
	for ; free < n || used[l]; l++ {
		if !used[l] {
			free++
		}
	}
	return uint64(l)
}

// With the descriptor limit at every point of an attach's path (the
// namespace, the netlink socket in it, the node's sockets), the real
// kernel's failures are errors, never "gone": no container is detached,
// nothing is left open, no thread stays in the container; once
// descriptors are back, a full pass wires the container.
func TestRealEMFILE(t *testing.T) {
	h := realHarness(t, ownerA)
	h.service("web", "10.200.1.0/28")
	h.converge()
	var lim syscall.Rlimit
	h.must(syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	// The node's packet socket stays open as long as the reconciler: it
	// is opened before the counting.
	if _, err := h.r.k.Index("lo"); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	failed := 0
	for extra := 0; extra < 12; extra++ {
		c := newTestContainer(t)
		key := fmt.Sprintf("linux_pid:%d", c.pid)
		h.attachIno(c.pid, c.inode, "web", "10.200.1.2", "10.200.128.2")
		base := openFDs(t)
		low := lim
		low.Cur = limitLeaving(t, extra)
		h.must(syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
		err := h.full()
		h.must(syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
		if err != nil {
			failed++
			t.Logf("limit %d descriptors above the open ones: %v", extra, err)
		}
		if d := h.detaches(); len(d) != 0 {
			t.Fatalf("limit +%d: detached %q", extra, d)
		}
		if n := openFDs(t); n != base {
			t.Fatalf("limit +%d: %d descriptors open, %d before: %v", extra, n, base, fdList(t))
		}
		if s := strayThreads(t); len(s) > 0 {
			t.Fatalf("limit +%d: threads left in other namespaces: %v", extra, s)
		}
		h.must(h.full())
		if out := c.run(t, "ip", "-o", "addr", "show", "eth0"); !strings.Contains(out, "10.200.1.2/28") {
			t.Fatalf("limit +%d: not wired once descriptors were back:\n%s", extra, out)
		}
		h.detach(c.pid)
		h.must(h.change(attachmentKey(key)))
		c.stop()
	}
	if failed == 0 {
		t.Fatal("no limit made the pass fail: the test tests nothing")
	}
	t.Logf("%d of 12 limits failed the pass", failed)
}

func fdList(t *testing.T) []string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"="+l)
	}
	return out
}
