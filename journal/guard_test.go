package journal

import (
	"errors"
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// within fails the test if fn does not return within d (a deadlock).
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v (deadlock?)", what, d)
	}
}

// A panic in the caller's own callback is the caller's: it propagates
// unchanged, and the read transaction is closed (a commit that needs to
// grow the file, and Close, do not hang on it).
func TestCallbackPanicPropagates(t *testing.T) {
	s, err := Open(testtemp.Dir(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendWait(t, s, rec(1))
	func() {
		defer func() {
			if r := recover(); r != "mine" {
				t.Fatalf("recovered %v, want the callback's panic", r)
			}
		}()
		s.Iterate(0, false, func(*Envelope) error { panic("mine") })
	}()
	if !s.Health().OK() {
		t.Fatalf("a callback's panic made the store unhealthy: %v", s.Health().Err)
	}
	within(t, 10*time.Second, "a commit growing the file after a panicking reader", func() {
		big := make([]Record, 2000)
		for i := range big {
			big[i] = rec(i)
			big[i].Payload = make([]byte, 2000)
		}
		if _, err := s.Append(big).Wait(); err != nil {
			t.Error(err)
		}
	})
	within(t, 5*time.Second, "Close", func() { s.Close() })
}

// A panic inside the write transaction (here from the failpoint "after
// append, before fsync") fails the batch as damage, leaves the store
// read-only with its head, and Recover brings it back.
func TestPanicInsideCommit(t *testing.T) {
	s, err := Open(testtemp.Dir(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendWait(t, s, rec(1))
	Failpoint = func(name string) {
		if name == "journal/before-commit" {
			panic("assertion failed: injected")
		}
	}
	_, err = s.Append([]Record{rec(2)}).Wait()
	Failpoint = nil
	if !IsDamage(err) || !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), "injected") || !strings.Contains(err.Error(), s.Path()) {
		t.Fatalf("append that panicked: %v", err)
	}
	if seq, _ := s.Head(); seq != 1 {
		t.Fatalf("head %d", seq)
	}
	within(t, 5*time.Second, "a read after the panic", func() {
		if n := len(allEvents(t, s)); n != 1 {
			t.Errorf("%d events", n)
		}
	})
	within(t, 10*time.Second, "Recover", func() {
		if err := s.Recover(); err != nil {
			t.Error(err)
		}
	})
	if envs := appendWait(t, s, rec(3)); envs[0].Seq != 2 {
		t.Fatalf("after recover: seq %d", envs[0].Seq)
	}
}

// Both meta pages overwritten under an open store: bbolt's Begin panics
// holding its meta lock. The handle is then never called again (reads and
// writes fail at once instead of blocking), Recover refuses the damaged
// file, and once the file is mended Recover reopens it.
func TestStuckHandleDoesNotDeadlock(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("on Windows a stuck bbolt handle cannot be reopened in the same process (dupFile is Linux-only): Recover says so and the daemon stays read-only until restarted")
	}
	dir := testtemp.Dir(t)
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendWait(t, s, rec(1), rec(2))
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := readLayout(f, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	saved := make([][]byte, 2)
	for i := range saved {
		saved[i] = make([]byte, 80)
		if _, err := f.ReadAt(saved[i], int64(i*l.pageSize)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(make([]byte, 64), int64(i*l.pageSize+16)); err != nil {
			t.Fatal(err)
		}
	}
	err = s.Iterate(0, false, func(*Envelope) error { return nil })
	if !IsDamage(err) {
		t.Fatalf("read with both meta pages gone: %v", err)
	}
	within(t, 2*time.Second, "reads and writes on a stuck handle", func() {
		if _, err := s.HashAt(1); !IsDamage(err) {
			t.Errorf("HashAt: %v", err)
		}
		if _, err := s.Append([]Record{rec(3)}).Wait(); !errors.Is(err, ErrReadOnly) {
			t.Errorf("append: %v", err)
		}
		if err := s.Check(); !IsDamage(err) {
			t.Errorf("check: %v", err)
		}
	})
	within(t, 5*time.Second, "Recover on the damaged file", func() {
		if err := s.Recover(); !IsDamage(err) || !strings.Contains(err.Error(), "meta page") {
			t.Errorf("recover: %v", err)
		}
	})
	for i := range saved {
		if _, err := f.WriteAt(saved[i], int64(i*l.pageSize)); err != nil {
			t.Fatal(err)
		}
	}
	within(t, 5*time.Second, "Recover on the mended file", func() {
		if err := s.Recover(); err != nil {
			t.Error(err)
		}
	})
	if envs := appendWait(t, s, rec(3)); envs[0].Seq != 3 {
		t.Fatalf("after recover: %d", envs[0].Seq)
	}
}

// A file truncated under an open store: reading the pages past its new
// end faults (SIGBUS on the mapping), and the fault is an error naming
// the page, not a crash.
func TestFaultOnTruncatedMappingIsAnError(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows refuses to truncate a file that is mapped (\"File has a user-mapped section\"): the fault this test provokes cannot happen there")
	}
	dir := testtemp.Dir(t)
	w, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		recs := make([]Record, 100)
		for j := range recs {
			recs[j] = rec(i*100 + j)
		}
		appendWait(t, w, recs...)
	}
	w.Close()
	s, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Truncate(filepath.Join(dir, FileName), 16384); err != nil {
		t.Fatal(err)
	}
	err = s.Iterate(0, true, func(*Envelope) error { return nil })
	var d *DamageError
	if !errors.As(err, &d) || d.Page < 4 || !strings.Contains(err.Error(), "page") {
		t.Fatalf("reading past the end of a truncated file: %v", err)
	}
	t.Logf("%v", err)
}

// Recover swaps the bbolt handle while readers run: they wait or work,
// never fail, never see an event past the head, and nothing deadlocks
// (run with -race).
func TestRecoverWhileReading(t *testing.T) {
	s, err := Open(testtemp.Dir(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 20; i++ {
		appendWait(t, s, rec(2*i), rec(2*i+1))
	}
	var broken atomic.Bool
	s.faultHook = func(op string) error {
		if broken.Load() && op != "recover" {
			return syscall.EIO
		}
		return nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				head, _ := s.Head()
				n := uint64(0)
				if err := s.Iterate(0, true, func(e *Envelope) error {
					n = e.Seq
					return nil
				}); err != nil {
					errs <- err
					return
				}
				if n < head {
					errs <- fmt.Errorf("read %d events, head was %d", n, head)
					return
				}
				if _, err := s.HashAt(head); head > 0 && err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for round := 0; round < 10; round++ {
		broken.Store(true)
		if _, err := s.Append([]Record{rec(1000 + round)}).Wait(); !errors.Is(err, ErrReadOnly) {
			t.Fatalf("round %d: %v", round, err)
		}
		broken.Store(false)
		within(t, 10*time.Second, "Recover", func() {
			if err := s.Recover(); err != nil {
				t.Error(err)
			}
		})
		appendWait(t, s, rec(2000+round))
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if rep, err := s.Verify(); err != nil || !rep.OK() || rep.Events != 50 {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

// A reader that reads again from inside its callback while Recover waits
// for it: Recover gives up after RecoverDrain instead of deadlocking, and
// the reader finishes.
func TestRecoverGivesUpOnANestedReader(t *testing.T) {
	s, err := Open(testtemp.Dir(t), Options{RecoverDrain: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendWait(t, s, rec(1), rec(2))
	s.faultHook = func(op string) error {
		if op == "commit" {
			return syscall.EIO
		}
		return nil
	}
	if _, err := s.Append([]Record{rec(3)}).Wait(); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("the injected commit failure: %v", err)
	}
	s.faultHook = nil
	inside, nested := make(chan struct{}), make(chan error, 1)
	go func() {
		nested <- s.Iterate(0, false, func(e *Envelope) error {
			if e.Seq == 1 {
				close(inside)
				// Read again only once Recover waits for this reader.
				if !waitRecovering(s, 5*time.Second) {
					return errors.New("Recover did not start draining the readers")
				}
				_, err := s.HashAt(2)
				return err
			}
			return nil
		})
	}()
	<-inside
	within(t, 5*time.Second, "Recover with a nested reader", func() {
		if err := s.Recover(); err == nil || !strings.Contains(err.Error(), "in flight") {
			t.Errorf("recover: %v", err)
		}
	})
	if err := <-nested; err != nil {
		t.Fatalf("nested reader: %v", err)
	}
	if err := s.Recover(); err != nil {
		t.Fatalf("recover once the reader is done: %v", err)
	}
}

// waitRecovering waits until Recover is swapping s's handle (new reads
// wait), or until d has passed; it reports which.
func waitRecovering(s *BoltStore, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s.hmu.Lock()
		r := s.recovering
		s.hmu.Unlock()
		if r {
			return true
		}
	}
	return false
}

func TestPageOf(t *testing.T) {
	for msg, want := range map[string]int64{
		"assertion failed: Page expected to be: 128, but self identifies as 127":                         128,
		"page 12: unreachable unfreed":                                                                   12,
		"the file is 8192 bytes but its pages reach byte 720896 (high-water mark page 176, meta page 1)": 176,
		"invalid freelist page: 0, page type is leaf":                                                    0,
		"no number here": -1,
	} {
		if got := pageOf(msg); got != want {
			t.Errorf("pageOf(%q) = %d, want %d", msg, got, want)
		}
	}
}
