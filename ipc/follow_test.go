package ipc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/zlayer/overlayd/tools/testtemp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeJournal is a growing list of events that a follow handler streams
// from, the way the daemon does: from the last pushed event, waiting for
// room before each push.
type fakeJournal struct {
	mu      sync.Mutex
	head    uint64
	payload int // bytes of padding per event
	skip    uint64
}

func (j *fakeJournal) append(n int) {
	j.mu.Lock()
	j.head += uint64(n)
	j.mu.Unlock()
}

func (j *fakeJournal) headSeq() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.head
}

func (j *fakeJournal) event(seq uint64) JournalFollowEvent {
	p, _ := json.Marshal(map[string]string{"pad": strings.Repeat("x", j.payload)})
	return JournalFollowEvent{Entry: JournalEvent{Seq: seq, ID: fmt.Sprint(seq), Type: "t", Payload: p, Hash: "h"}}
}

func (j *fakeJournal) handler(m Meta, r Request) <-chan Response {
	f, ok := r.(JournalFollow)
	if !ok {
		return Reply(OK{})
	}
	return Reply(Streaming{Response: Following{HeadSeq: j.headSeq()}, Start: func(c Conn) {
		last := f.AfterSeq
		if j.skip > 0 && last == 0 {
			last = j.skip // a journal compacted up to skip
		}
		for {
			for last < j.headSeq() {
				if c.WaitRoom(context.Background()) != nil {
					return
				}
				last++
				if c.Push(j.event(last)) != nil {
					return
				}
			}
			select {
			case <-c.Done():
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}})
}

// The answer comes first, then the events in order, on that connection.
func TestFollowAnswerThenEventsInOrder(t *testing.T) {
	j := &fakeJournal{head: 50}
	path, _ := serve(t, &Server{Handler: j.handler})
	c := rawConn(t, path)
	b, _ := EncodeRequest(7, JournalFollow{AfterSeq: 10})
	if err := WriteFrame(c, b); err != nil {
		t.Fatal(err)
	}
	f := readResp(t, c)
	if f.Kind != "response" || f.ID != 7 {
		t.Fatalf("first frame %+v, want the response to request 7", f)
	}
	if r, ok := f.Response.(Following); !ok || r.HeadSeq != 50 {
		t.Fatalf("answer %#v, want following {head_seq: 50}", f.Response)
	}
	for want := uint64(11); want <= 50; want++ {
		f := readResp(t, c)
		ev, ok := f.Event.(JournalFollowEvent)
		if f.Kind != "event" || !ok || ev.Entry.Seq != want {
			t.Fatalf("frame %+v, want journal_event %d", f, want)
		}
	}
}

// A follower that reads slowly is pushed to at its pace: with a queue
// bound of 16 KiB, 2 MiB of events arrive, none lost, and the connection
// is never closed for overflowing.
func TestFollowSlowReaderIsNotClosed(t *testing.T) {
	j := &fakeJournal{head: 2000, payload: 1000}
	s := &Server{Handler: j.handler, MaxQueuedBytes: 16 << 10}
	path, _ := serve(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got uint64
	err := Follow(ctx, func(ctx context.Context) (*Client, error) { return Dial(ctx, path, DialOptions{}) }, 0, func(e JournalEvent) error {
		got = e.Seq
		if e.Seq%100 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		if e.Seq == 2000 {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) || got != 2000 {
		t.Fatalf("follow: %v after event %d, want all 2000", err, got)
	}
	if st := s.Stats(); st.QueueOverflows != 0 || st.WriteTimeouts != 0 {
		t.Fatalf("stats %+v: the slow follower was closed", st)
	}
}

var errDone = errors.New("done")

// Across a daemon restart (the server closed, a new one on the same path)
// the follower sees every event exactly once, in order.
func TestFollowResumesAcrossRestart(t *testing.T) {
	j := &fakeJournal{head: 100}
	s1 := &Server{Handler: j.handler}
	path, l := listen(t)
	go s1.Serve(l)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var seen []uint64
	var reconnects atomic.Int32
	done := make(chan error, 1)
	restarted := make(chan struct{})
	go func() {
		done <- FollowWith(ctx, func(ctx context.Context) (*Client, error) { return Dial(ctx, path, DialOptions{}) }, 0, func(e JournalEvent) error {
			seen = append(seen, e.Seq)
			if e.Seq == 60 {
				s1.Close() // the daemon dies mid-stream
				go func() {
					j.append(100)
					s2 := &Server{Handler: j.handler}
					l2, err := Listen(path)
					if err != nil {
						t.Error(err)
						return
					}
					go s2.Serve(l2)
					t.Cleanup(func() { s2.Close() })
					close(restarted)
				}()
			}
			if e.Seq == 200 {
				return errDone
			}
			return nil
		}, FollowOptions{Backoff: 10 * time.Millisecond, OnReconnect: func(error, time.Duration) { reconnects.Add(1) }})
	}()
	if err := <-done; !errors.Is(err, errDone) {
		t.Fatalf("follow: %v", err)
	}
	<-restarted
	for i, s := range seen {
		if s != uint64(i+1) {
			t.Fatalf("event %d is %d: %v", i+1, s, seen)
		}
	}
	if len(seen) != 200 || reconnects.Load() == 0 {
		t.Fatalf("saw %d events with %d reconnects, want 200 across at least one reconnect", len(seen), reconnects.Load())
	}
}

// A journal that does not hold the event after the one the follow resumes
// from (compacted past it) is a *GapError naming both.
func TestFollowGapIsAnError(t *testing.T) {
	j := &fakeJournal{head: 20, skip: 5}
	path, _ := serve(t, &Server{Handler: j.handler})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := Follow(ctx, func(ctx context.Context) (*Client, error) { return Dial(ctx, path, DialOptions{}) }, 0, func(JournalEvent) error { return nil })
	var ge *GapError
	if !errors.As(err, &ge) || ge.Last != 0 || ge.Got != 6 || !strings.Contains(err.Error(), "events 1..5") {
		t.Fatalf("follow: %v, want a gap after 0 at 6", err)
	}
}

// The endpoint file round-trips and is removed only by the process that
// wrote it.
func TestEndpointFile(t *testing.T) {
	dir := testtemp.Dir(t)
	if _, err := ReadEndpoint(dir); !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("no file: %v, want ErrNoEndpoint", err)
	}
	if got := SocketFor(dir); got != DefaultSocketPath(dir) {
		t.Fatalf("SocketFor without a file: %s", got)
	}
	if err := WriteEndpoint(dir, Endpoint{Socket: "/tmp/elsewhere.sock", PID: 42, Version: "v", Protocol: 1}); err == nil {
		t.Fatal("WriteEndpoint into a missing overlayd dir succeeded")
	}
	if err := mkdirOverlayd(dir); err != nil {
		t.Fatal(err)
	}
	want := Endpoint{Socket: "/tmp/elsewhere.sock", PID: 42, Version: "v", Protocol: 1}
	if err := WriteEndpoint(dir, want); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadEndpoint(dir); err != nil || got != want {
		t.Fatalf("read %+v, %v; want %+v", got, err, want)
	}
	if got := SocketFor(dir); got != want.Socket {
		t.Fatalf("SocketFor: %s", got)
	}
	if err := RemoveEndpoint(dir, 43); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadEndpoint(dir); err != nil {
		t.Fatalf("another pid's RemoveEndpoint removed the file: %v", err)
	}
	if err := RemoveEndpoint(dir, 42); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadEndpoint(dir); !errors.Is(err, ErrNoEndpoint) {
		t.Fatalf("after remove: %v", err)
	}
}

func mkdirOverlayd(dir string) error { return os.MkdirAll(filepath.Join(dir, "overlayd"), 0o700) }
