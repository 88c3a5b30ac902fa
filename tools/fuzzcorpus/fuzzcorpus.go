// Package fuzzcorpus keeps the repository's committed fuzz seed corpora
// (testdata/fuzz/<Target>/, in the format `go test -fuzz` reads) in step
// with the fixtures they come from: a package's TestFuzzSeeds lists its
// seeds and calls Check, which fails when a seed file is missing or
// differs; OVERLAYD_WRITE_FUZZ_SEEDS=1 writes them instead. Files the
// fuzzer added (crashers and kept inputs) are left alone.
package fuzzcorpus

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Env, set to 1, makes Check write the seed files instead of checking them.
const Env = "OVERLAYD_WRITE_FUZZ_SEEDS"

// Encode renders one corpus entry: the fuzz function's arguments in order
// ([]byte, string, bool, uint8, uint16, uint32, uint64 and int64 values).
func Encode(args ...any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
		case string:
			fmt.Fprintf(&b, "string(%s)\n", strconv.Quote(v))
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", v)
		case uint8:
			fmt.Fprintf(&b, "byte(%d)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		case uint32:
			fmt.Fprintf(&b, "uint32(%d)\n", v)
		case uint64:
			fmt.Fprintf(&b, "uint64(%d)\n", v)
		case int64:
			fmt.Fprintf(&b, "int64(%d)\n", v)
		default:
			panic(fmt.Sprintf("fuzzcorpus: unsupported seed type %T", a))
		}
	}
	return b.Bytes()
}

// Seed is one named corpus entry.
type Seed struct {
	Name string // the file name under testdata/fuzz/<Target>/
	Args []any
}

// Check verifies (or, with OVERLAYD_WRITE_FUZZ_SEEDS=1, writes) the seed
// files of target in dir/testdata/fuzz/<target>/: each must hold exactly
// its seed.
func Check(t testing.TB, dir, target string, seeds []Seed) {
	t.Helper()
	CheckFunc(t, dir, target, seeds, bytes.Equal)
}

// CheckFunc is Check with same deciding whether a committed file (got)
// still matches its seed's encoding (want): for fixtures whose bytes vary
// between runs for the same value (a map's order).
func CheckFunc(t testing.TB, dir, target string, seeds []Seed, same func(got, want []byte) bool) {
	t.Helper()
	root := filepath.Join(dir, "testdata", "fuzz", target)
	write := os.Getenv(Env) == "1"
	if write {
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, s := range seeds {
		name := s.Name
		body := Encode(s.Args...)
		if name == "" {
			sum := sha256.Sum256(body)
			name = fmt.Sprintf("seed-%x", sum[:8])
		}
		if seen[name] {
			t.Fatalf("%s: seed name %s twice", target, name)
		}
		seen[name] = true
		path := filepath.Join(root, name)
		if write {
			if err := os.WriteFile(path, body, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s: seed %s: %v (write the corpus with %s=1 go test -run TestFuzzSeeds)", target, name, err, Env)
			continue
		}
		if !same(got, body) {
			t.Errorf("%s: seed %s differs from its fixture (rewrite with %s=1 go test -run TestFuzzSeeds)", target, name, Env)
		}
	}
	if write {
		t.Logf("%s: wrote %d seeds to %s", target, len(seeds), root)
	}
}

// Bytes decodes a corpus entry of one []byte argument (Encode([]byte)).
func Bytes(entry []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(entry, []byte("go test fuzz v1\n[]byte("))
	if !ok {
		return nil, fmt.Errorf("fuzzcorpus: not a one-[]byte entry")
	}
	q, ok := bytes.CutSuffix(bytes.TrimRight(rest, "\n"), []byte(")"))
	if !ok {
		return nil, fmt.Errorf("fuzzcorpus: not a one-[]byte entry")
	}
	s, err := strconv.Unquote(string(q))
	if err != nil {
		return nil, fmt.Errorf("fuzzcorpus: %w", err)
	}
	return []byte(s), nil
}
