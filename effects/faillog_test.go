package effects

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A failure retried at every check is one warning: the same error again is
// debug, another error warns again, and the recovery is one info line.
func TestFailLogByTransition(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var f failLog
	since := time.Now()
	p := func(err string) []Problem {
		return []Problem{{Key: "service/web", Err: errors.New(err), Since: since}}
	}
	steps := []struct {
		problems []Problem
		level    string
		msg      string
	}{
		{p("port 51421 in use"), "WARN", "effect failed; retried at every check until it succeeds"},
		{p("port 51421 in use"), "DEBUG", "effect still failing"},
		{p("port 51421 in use"), "DEBUG", "effect still failing"},
		{p("no such device"), "WARN", "effect still failing, with another error"},
		{nil, "INFO", "effect recovered"},
		{nil, "", ""},
	}
	for i, s := range steps {
		buf.Reset()
		f.pass(log, "wireguard", s.problems)
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if s.msg == "" {
			if buf.Len() != 0 {
				t.Fatalf("step %d: logged %s", i, buf.String())
			}
			continue
		}
		if len(lines) != 1 {
			t.Fatalf("step %d: %d lines: %s", i, len(lines), buf.String())
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
			t.Fatal(err)
		}
		if m["level"] != s.level || m["msg"] != s.msg || m["key"] != "service/web" || m["reconciler"] != "wireguard" {
			t.Errorf("step %d: %v, want %s %q", i, m, s.level, s.msg)
		}
	}
}
