package ipc

import (
	"sync"
	"testing"
	"time"
)

// Observe sees every request once, with its answer, whether the answer
// was ready at once, came later, or the frame did not decode.
func TestObserveSeesEveryAnswer(t *testing.T) {
	var mu sync.Mutex
	var seen []Answered
	s := &Server{
		Handler: func(m Meta, r Request) <-chan Response {
			if _, ok := r.(NatTick); ok {
				ch := make(chan Response, 1)
				go func() { time.Sleep(20 * time.Millisecond); ch <- OK{} }()
				return ch
			}
			return Reply(StatusResult{})
		},
		Observe: func(a Answered) {
			mu.Lock()
			seen = append(seen, a)
			mu.Unlock()
		},
	}
	path, _ := serve(t, s)
	c := rawConn(t, path)
	for _, body := range []string{
		`{"frame":"request","id":1,"request":{"op":"status"}}`,
		`{"frame":"request","id":2,"request":{"op":"nat_tick"}}`,
		`{"frame":"request","id":3,"request":{"op":"no_such_op"}}`,
	} {
		if err := WriteFrame(c, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		readResp(t, c)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 {
		t.Fatalf("observed %d answers, want 3: %+v", len(seen), seen)
	}
	byID := map[uint64]Answered{}
	for _, a := range seen {
		byID[a.Meta.RequestID] = a
	}
	if a := byID[1]; a.Op() != "status" || a.Response.Result() != "status" {
		t.Errorf("request 1 observed as %q → %v", a.Op(), a.Response)
	}
	if a := byID[2]; a.Op() != "nat_tick" || a.Response.Result() != "ok" || a.Took < 20*time.Millisecond {
		t.Errorf("request 2 observed as %q → %v after %v (want nat_tick, ok, ≥ 20ms)", a.Op(), a.Response, a.Took)
	}
	if a := byID[3]; a.Request != nil || a.Op() != "" || a.Response.Result() != "err" {
		t.Errorf("request 3 observed as %q → %v (want no request, err)", a.Op(), a.Response)
	}
}
