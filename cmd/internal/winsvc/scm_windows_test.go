package winsvc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/tools/testtemp"
)

// TestRealSCM installs the daemon binary as the service Name with the
// service control manager (wine's services.exe here), starts it, waits for
// Running, talks to it over its pipe, stops it, waits for Stopped with
// exit code 0, checks the log file and the final snapshot, and deletes the
// service (in Cleanup, whatever happened). What the SCM at hand does not
// do is skipped with a message naming it. An existing service of that
// name is left alone (skip).
func TestRealSCM(t *testing.T) {
	exe := filepath.Join("..", "..", "..", "bin", "windows", "zlayer-overlayd.exe")
	if p := os.Getenv("OVERLAYD_WIN_DAEMON"); p != "" {
		exe = p
	}
	exe, _ = filepath.Abs(exe)
	if _, err := os.Stat(exe); err != nil {
		t.Skipf("no Windows daemon binary at %s (GOOS=windows go build -o bin/windows/ ./cmd/zlayer-overlayd): %v", exe, err)
	}
	m, err := mgr.Connect()
	if err != nil {
		t.Skipf("cannot connect to the service control manager: %v", err)
	}
	defer m.Disconnect()
	if s, err := m.OpenService(Name); err == nil {
		s.Close()
		t.Skipf("a service %s exists already; not touching it", Name)
	}
	dir := testtemp.Dir(t)
	s, err := m.CreateService(Name, exe, mgr.Config{StartType: mgr.StartManual, DisplayName: "overlayd test"},
		"--data-dir", dir, "--service", "--dns-listen=", "--reconcile-interval=1h")
	if err != nil {
		t.Skipf("the service control manager does not create a service: %v", err)
	}
	t.Cleanup(func() {
		if st, err := s.Query(); err == nil && st.State != svc.Stopped {
			s.Control(svc.Stop)
			waitState(s, svc.Stopped, 30*time.Second)
		}
		if err := s.Delete(); err != nil {
			t.Errorf("delete the test service %s: %v", Name, err)
		}
		s.Close()
		// Deletion completes once no handle is open: check it is gone.
		for i := 0; i < 50; i++ {
			if s2, err := m.OpenService(Name); err != nil {
				return
			} else {
				s2.Close()
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("the test service %s is still there after Delete", Name)
	})
	if err := s.Start(); err != nil {
		t.Skipf("the service control manager does not start the service: %v\n%s", err, logTail(dir))
	}
	st, seen := waitState(s, svc.Running, 60*time.Second)
	t.Logf("states while starting: %v", seen)
	if st.State != svc.Running {
		t.Fatalf("the service is %d after 60 s, want Running (%d); states seen %v\n%s", st.State, svc.Running, seen, logTail(dir))
	}
	if st.Accepts&svc.AcceptStop == 0 || st.Accepts&svc.AcceptShutdown == 0 {
		t.Errorf("Running accepts %#x, want Stop and Shutdown", st.Accepts)
	}
	x := &run{t: t, pipe: ipc.DefaultSocketPath(dir)}
	x.call(ipc.Status{})
	if _, err := s.Control(svc.Stop); err != nil {
		t.Fatalf("Stop: %v\n%s", err, logTail(dir))
	}
	st, seen = waitState(s, svc.Stopped, 60*time.Second)
	t.Logf("states while stopping: %v", seen)
	if st.State != svc.Stopped {
		t.Fatalf("the service is %d 60 s after Stop, want Stopped; states %v\n%s", st.State, seen, logTail(dir))
	}
	if st.Win32ExitCode != 0 || st.ServiceSpecificExitCode != 0 {
		t.Errorf("stopped with exit codes win32 %d, service-specific %d; want 0\n%s", st.Win32ExitCode, st.ServiceSpecificExitCode, logTail(dir))
	}
	log := logTail(dir)
	for _, want := range []string{"service running", "service stopping", "stopped graceful=true", "service stopped"} {
		if !strings.Contains(log, want) {
			t.Errorf("the service's log file has no %q line:\n%s", want, log)
		}
	}
	finalSnapshot(t, dir)
}

// waitState polls s until it is in want or timeout passes; it returns the
// last status and the states seen (each change once).
func waitState(s *mgr.Service, want svc.State, timeout time.Duration) (svc.Status, []svc.State) {
	var seen []svc.State
	var st svc.Status
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		q, err := s.Query()
		if err != nil {
			continue
		}
		st = q
		if len(seen) == 0 || seen[len(seen)-1] != q.State {
			seen = append(seen, q.State)
		}
		if q.State == want {
			break
		}
	}
	return st, seen
}

func logTail(dir string) string {
	b, err := os.ReadFile(LogPath(dir))
	if err != nil {
		return "(no log file: " + err.Error() + ")"
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
