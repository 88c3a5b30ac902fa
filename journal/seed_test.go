package journal

// This file is the same in every package with random tests (projections,
// journal, effects/nat, cmd/zlayer-overlayd, tools/netlab): keep the copies
// alike.

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// seedEnv names the one environment variable that replays a random test
// of this repository: OVERLAYD_TEST_SEED=<seed> go test -run '^TestX$' ./pkg.
const seedEnv = "OVERLAYD_TEST_SEED"

// envSeed returns the seed given in OVERLAYD_TEST_SEED, if any; a value
// that is not an integer fails the test.
func envSeed(t testing.TB) (int64, bool) {
	t.Helper()
	s := os.Getenv(seedEnv)
	if s == "" {
		return 0, false
	}
	seed, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		t.Fatalf("%s=%q is not an integer: %v", seedEnv, s, err)
	}
	return seed, true
}

// testSeed returns the seed of a random test: the one in
// OVERLAYD_TEST_SEED when it is set, a fresh one otherwise. It logs the
// seed, and when the test fails it logs the command that replays it.
func testSeed(t testing.TB) int64 {
	t.Helper()
	seed, ok := envSeed(t)
	if !ok {
		seed = time.Now().UnixNano()
	}
	t.Logf("random seed %d (from %s: %v)", seed, seedEnv, ok)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s", replayHint(t, seed))
		}
	})
	return seed
}

// replayHint says how to run this test again with seed.
func replayHint(t testing.TB, seed int64) string {
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return "replay with: " + seedEnv + "=" + strconv.FormatInt(seed, 10) +
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
