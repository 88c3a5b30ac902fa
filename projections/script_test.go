package projections

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// commandTypes maps script names to command types.
var commandTypes = map[string]Command{}

func init() {
	for _, c := range []Command{SetNodeID{}, AnnounceKey{}, SetNodeIdentity{}, SetupGlobal{}, TeardownGlobal{},
		SetupService{}, TeardownService{}, AllocateIP{}, ReleaseIP{}, Attach{}, Detach{}, AddPeer{}, RemovePeer{},
		AddAllowedIP{}, RemoveAllowedIP{}, RegisterDNS{}, UnregisterDNS{}, ObserveEndpoints{}} {
		commandTypes[reflect.TypeOf(c).Name()] = c
	}
}

// TestScripts runs testdata/*.script: each line "> Command {json}" is
// decided and applied against one state, with a config line "config
// {json}" allowed first. The golden file records every reply or error and
// every event, then the final state.
func TestScripts(t *testing.T) {
	scripts, err := filepath.Glob("testdata/*.script")
	if err != nil {
		t.Fatal(err)
	}
	if len(scripts) == 0 {
		t.Fatal("no scripts")
	}
	for _, path := range scripts {
		t.Run(filepath.Base(path), func(t *testing.T) {
			got := runScript(t, path)
			golden := strings.TrimSuffix(path, ".script") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("output differs from %s (run with -update after checking the change):\n%s", golden, diffLines(string(want), string(got)))
			}
		})
	}
}

func runScript(t *testing.T, path string) []byte {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := DefaultConfig()
	s := New()
	var out bytes.Buffer
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		switch {
		case strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#"):
			out.WriteString(text + "\n")
		case strings.HasPrefix(text, "config "):
			if err := json.Unmarshal([]byte(text[len("config "):]), &cfg); err != nil {
				t.Fatalf("%s:%d: %v", path, line, err)
			}
			out.WriteString(text + "\n")
		case strings.HasPrefix(text, "> "):
			name, args, _ := strings.Cut(text[2:], " ")
			proto, ok := commandTypes[name]
			if !ok {
				t.Fatalf("%s:%d: unknown command %q", path, line, name)
			}
			ptr := reflect.New(reflect.TypeOf(proto))
			if strings.TrimSpace(args) != "" {
				if err := json.Unmarshal([]byte(args), ptr.Interface()); err != nil {
					t.Fatalf("%s:%d: %v", path, line, err)
				}
			}
			cmd := ptr.Elem().Interface().(Command)
			out.WriteString(text + "\n")
			d, err := Decide(s, cfg, cmd)
			if err != nil {
				fmt.Fprintf(&out, "! %v\n", err)
				continue
			}
			for _, ev := range d.Events {
				if err := s.Apply(ev); err != nil {
					t.Fatalf("%s:%d: apply %s: %v", path, line, ev.EventType(), err)
				}
				s.Seq++
				b, err := json.Marshal(ev)
				if err != nil {
					t.Fatalf("%s:%d: encode %s: %v", path, line, ev.EventType(), err)
				}
				fmt.Fprintf(&out, "+ %s %s\n", ev.EventType(), b)
			}
			b, err := json.Marshal(d.Reply)
			if err != nil {
				t.Fatalf("%s:%d: encode the reply: %v", path, line, err)
			}
			fmt.Fprintf(&out, "= %s %s\n", reflect.TypeOf(d.Reply).Name(), b)
			if err := s.CheckInvariants(); err != nil {
				t.Fatalf("%s:%d: %v", path, line, err)
			}
		default:
			t.Fatalf("%s:%d: cannot parse %q", path, line, text)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := s.CanonicalJSON()
	if err != nil {
		t.Fatalf("%s: final state: %v", path, err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, b, "", "  "); err != nil {
		t.Fatalf("%s: final state: %v", path, err)
	}
	out.WriteString("\nfinal state:\n")
	out.Write(pretty.Bytes())
	out.WriteString("\n")
	return out.Bytes()
}

func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d\n  want: %s\n  got:  %s\n", i+1, wl, gl)
			if b.Len() > 2000 {
				break
			}
		}
	}
	return b.String()
}
