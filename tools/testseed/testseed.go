// Package testseed gives the repository's random tests their seed: each
// logs it, and OVERLAYD_TEST_SEED=<seed> replays one (a failing test logs
// the whole command).
package testseed

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Env names the one environment variable that replays a random test
// of this repository: OVERLAYD_TEST_SEED=<seed> go test -run '^TestX$' ./pkg.
const Env = "OVERLAYD_TEST_SEED"

// FromEnv returns the seed given in OVERLAYD_TEST_SEED, if any; a value
// that is not an integer fails the test.
func FromEnv(t testing.TB) (int64, bool) {
	t.Helper()
	s := os.Getenv(Env)
	if s == "" {
		return 0, false
	}
	seed, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		t.Fatalf("%s=%q is not an integer: %v", Env, s, err)
	}
	return seed, true
}

// New returns the seed of a random test: the one in
// OVERLAYD_TEST_SEED when it is set, a fresh one otherwise. It logs the
// seed, and when the test fails it logs the command that replays it.
func New(t testing.TB) int64 {
	t.Helper()
	seed, ok := FromEnv(t)
	if !ok {
		seed = time.Now().UnixNano()
	}
	return logged(t, seed, ok)
}

// Or is New with a fixed default seed: the test is the same every run
// unless OVERLAYD_TEST_SEED says otherwise.
func Or(t testing.TB, def int64) int64 {
	t.Helper()
	seed, ok := FromEnv(t)
	if !ok {
		seed = def
	}
	return logged(t, seed, ok)
}

func logged(t testing.TB, seed int64, fromEnv bool) int64 {
	t.Helper()
	t.Logf("random seed %d (from %s: %v)", seed, Env, fromEnv)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s", ReplayHint(t, seed))
		}
	})
	return seed
}

// ReplayHint says how to run this test again with seed.
func ReplayHint(t testing.TB, seed int64) string {
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return "replay with: " + Env + "=" + strconv.FormatInt(seed, 10) +
		" go test -count=1 -run '" + strings.Join(parts, "/") + "' " + pkgDir()
}

// pkgDir is the package's directory relative to the module root (tests run
// in their package's directory), for the replay command.
func pkgDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if rel, err := filepath.Rel(dir, wd); err == nil {
				return "./" + filepath.ToSlash(rel)
			}
			return "."
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "."
		}
		dir = up
	}
}
