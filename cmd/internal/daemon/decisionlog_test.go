package daemon

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

// One line per answer: decisions at info with op, caller, result and
// duration; reads, a nat_tick that changed nothing, a refusal (logged at
// warn by the authorizer) and an unreadable frame at debug. A guest's
// answer is logged by its kind, never its content.
func TestDecisionLogLevels(t *testing.T) {
	var buf syncBuffer
	l := &decisionLog{log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), changed: map[reqKey]bool{}}
	peer := ipc.Meta{ConnID: 1, HasPeer: true, Peer: ipc.Creds{UID: 1001, GID: 1001, PID: 77, Exe: "/usr/bin/orchestrator"}}
	meta := func(id uint64) ipc.Meta { m := peer; m.RequestID = id; return m }
	ticked := meta(5)
	l.markChanged(ticked)
	for _, a := range []ipc.Answered{
		{Meta: meta(1), Request: ipc.AddPeer{}, Response: ipc.OK{}, Took: 3 * time.Millisecond},
		{Meta: meta(2), Request: ipc.Status{}, Response: ipc.StatusResult{}},
		{Meta: meta(3), Request: ipc.AllocateIP{}, Response: ipc.Err{Message: "allocate_ip: service: unknown service \"x\""}},
		{Meta: meta(4), Request: ipc.NatTick{}, Response: ipc.OK{}},
		{Meta: ticked, Request: ipc.NatTick{}, Response: ipc.OK{}},
		{Meta: meta(6), Request: ipc.AddPeer{}, Response: ipc.Err{Message: "permission denied: uid 1001 may not send add_peer"}},
		{Meta: meta(7), Response: ipc.Err{Message: "unreadable frame"}},
		{Meta: meta(8), Request: ipc.AttachContainer{}, Response: ipc.GuestConfig{PrivateKey: "c2VjcmV0"}},
	} {
		l.observe(a)
	}
	lines := logLines(t, buf.Bytes())
	want := []struct{ level, msg, result string }{
		{"INFO", "decision", "ok"},
		{"DEBUG", "read", "status"},
		{"INFO", "decision", "err"},
		{"DEBUG", "decision", "ok"},
		{"INFO", "decision", "ok"},
		{"DEBUG", "decision refused", "err"},
		{"DEBUG", "unreadable request", "err"},
		{"INFO", "decision", "guest_config"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines: %v", len(lines), lines)
	}
	for i, w := range want {
		m := lines[i]
		if m["level"] != w.level || m["msg"] != w.msg || m["result"] != w.result || m["request_id"] != float64(i+1) {
			t.Errorf("line %d: %v, want %+v", i, m, w)
		}
		for _, k := range []string{"op", "uid", "gid", "pid", "exe", "took", "conn"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d without %s: %v", i, k, m)
			}
		}
	}
	if lines[0]["took"] != float64(3*time.Millisecond) || lines[2]["err"] != "allocate_ip: service: unknown service \"x\"" {
		t.Errorf("took / err: %v %v", lines[0], lines[2])
	}
	if len(l.changed) != 0 {
		t.Errorf("marks left: %v", l.changed)
	}
	if strings.Contains(string(buf.Bytes()), "c2VjcmV0") {
		t.Error("an answer's content was logged")
	}
}

// The cost of one decision line (text handler, info; formatted only, and
// written to a file) and of a read's line when debug is off (not formatted).
func BenchmarkDecisionLog(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "daemon.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		name string
		req  ipc.Request
		w    io.Writer
	}{{"decision", ipc.AddPeer{}, io.Discard}, {"decision-to-file", ipc.AddPeer{}, f}, {"read-at-info", ipc.Status{}, io.Discard}} {
		b.Run(c.name, func(b *testing.B) {
			l := &decisionLog{log: slog.New(slog.NewTextHandler(c.w, nil)), changed: map[reqKey]bool{}}
			a := ipc.Answered{Meta: ipc.Meta{ConnID: 1, RequestID: 1, HasPeer: true, Peer: ipc.Creds{UID: 0, PID: 77, Exe: "/usr/bin/zlayer"}},
				Request: c.req, Response: ipc.OK{}, Took: time.Millisecond}
			b.ReportAllocs()
			for b.Loop() {
				l.observe(a)
			}
		})
	}
}

func BenchmarkAuthorizerCheck(b *testing.B) {
	a := newAuthorizer(slog.New(slog.DiscardHandler), AuthzConfig{Group: "64050"})
	a.setTransport("unix")
	a.procGroups = func(uint32) ([]uint32, error) { return []uint32{64050}, nil }
	for _, c := range []struct {
		name string
		m    ipc.Meta
	}{
		{"root", ipc.Meta{ConnID: 1, HasPeer: true}},
		{"supplementary-member", ipc.Meta{ConnID: 2, HasPeer: true, Peer: ipc.Creds{UID: 64003, GID: 1, PID: 3}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if a.check(c.m, "add_peer") != nil {
					b.Fatal("refused")
				}
			}
		})
	}
}
