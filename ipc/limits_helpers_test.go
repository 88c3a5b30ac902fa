package ipc

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// atLeast returns the records at level or above.
func (h *logRecorder) atLeast(level slog.Level) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.recs {
		if r.Level >= level {
			out = append(out, r)
		}
	}
	return out
}

func (h *logRecorder) attr(r slog.Record, key string) slog.Value {
	var v slog.Value
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return v
}

// serve starts s (Log set to a recorder unless set, Handler to one that
// answers ok unless set) on a fresh socket, closed at cleanup.
func serve(t testing.TB, s *Server) (string, *logRecorder) {
	t.Helper()
	rec := &logRecorder{}
	if s.Log == nil {
		s.Log = slog.New(rec)
	}
	if s.Handler == nil {
		s.Handler = func(Meta, Request) <-chan Response { return Reply(OK{}) }
	}
	path, l := listen(t)
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return path, rec
}

// listen binds a fresh socket (closed by whoever closes the listener).
func listen(t testing.TB) (string, net.Listener) {
	t.Helper()
	path := testSocketPath(t)
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, l
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// requestFrame is a request frame for an op without fields.
func requestFrame(id uint64, op string) []byte {
	return []byte(`{"frame":"request","id":` + strconv.FormatUint(id, 10) + `,"request":{"op":"` + op + `"}}`)
}

func statusFrame(id uint64) []byte { return requestFrame(id, "status") }

// roundTrip sends a status request and reads one frame back.
func roundTrip(t *testing.T, c net.Conn, id uint64) Frame {
	t.Helper()
	if err := WriteFrame(c, statusFrame(id)); err != nil {
		t.Fatalf("write: %v", err)
	}
	return readResp(t, c)
}

// isRefusal reports an id-0 err frame and returns its message.
func isRefusal(f Frame) (string, bool) {
	e, ok := f.Response.(Err)
	if f.Kind != "response" || f.ID != 0 || !ok {
		return "", false
	}
	return e.Message, true
}
