//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zlayer/overlayd/cmd/internal/daemon"
	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/journal"
)

// Enabled reports whether this build carries failpoints.
const Enabled = true

type term struct {
	action string // kill, sleep, panic, off
	ms     int
	left   int // -1: always
}

var (
	mu     sync.Mutex
	static map[string]*term
	file   string
	stamp  string
	fromFs map[string]*term
)

// Install arms the failpoints named by the environment and hooks them into
// journal, effects and the daemon.
func Install() {
	static = parse(os.Getenv("OVERLAYD_FAILPOINTS"))
	file = os.Getenv("OVERLAYD_FAILPOINTS_FILE")
	journal.Failpoint = Hit
	effects.Failpoint = Hit
	daemon.Failpoint = Hit
}

// Hit runs the action armed for name, if any.
func Hit(name string) {
	mu.Lock()
	if file != "" {
		if fi, err := os.Stat(file); err == nil {
			if s := fmt.Sprint(fi.Size(), fi.ModTime().UnixNano()); s != stamp {
				b, _ := os.ReadFile(file)
				fromFs, stamp = parse(string(b)), s
			}
		} else {
			fromFs, stamp = nil, ""
		}
	}
	t := fromFs[name]
	if t == nil {
		t = static[name]
	}
	if t == nil || t.action == "off" || t.left == 0 {
		mu.Unlock()
		return
	}
	if t.left > 0 {
		t.left--
	}
	act := *t
	mu.Unlock()
	fmt.Fprintf(os.Stderr, "failpoint %s: %s\n", name, act.action)
	switch act.action {
	case "kill":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Hour) // the signal is on its way
	case "sleep":
		time.Sleep(time.Duration(act.ms) * time.Millisecond)
	case "panic":
		panic("failpoint " + name)
	}
}

func parse(spec string) map[string]*term {
	out := map[string]*term{}
	for _, f := range strings.FieldsFunc(spec, func(r rune) bool { return r == ';' || r == '\n' }) {
		name, act, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			continue
		}
		t := &term{left: -1}
		if n, rest, ok := strings.Cut(act, "*"); ok {
			if v, err := strconv.Atoi(n); err == nil {
				t.left, act = v, rest
			}
		}
		switch {
		case strings.HasPrefix(act, "sleep(") && strings.HasSuffix(act, ")"):
			t.action = "sleep"
			t.ms, _ = strconv.Atoi(act[len("sleep(") : len(act)-1])
		case act == "kill", act == "panic", act == "off":
			t.action = act
		default:
			fmt.Fprintf(os.Stderr, "failpoint %s: unknown action %q ignored\n", name, act)
			continue
		}
		out[strings.TrimSpace(name)] = t
	}
	return out
}
