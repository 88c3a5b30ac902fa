package projections

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"slices"
	"testing"
)

// The reading of a payload Terms had first, by decoding it into
// map[string]any: the scanner must give the same terms.
// Terms returns the object terms of a persisted event (type, version and
// JSON payload), sorted and without duplicates. It never fails: a payload
// it cannot read has no terms.
func termsByDecode(typ string, _ uint16, payload []byte) []string {
	if len(payload) == 0 || payload[0] != '{' {
		return nil
	}
	var v map[string]any
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return nil
	}
	var out []string
	walkTerms(v, &out)
	slices.Sort(out)
	return slices.Compact(out)
}

func walkTerms(obj map[string]any, out *[]string) {
	for k, v := range obj {
		if skipFields[k] {
			continue
		}
		if k == "handle" {
			if h, ok := handleOf(v); ok {
				*out = append(*out, TermHandle+h.Key())
			}
			continue
		}
		kind, indexed := fieldKinds[k]
		switch x := v.(type) {
		case string:
			if indexed {
				addTerm(kind, x, out)
			}
		case []any:
			for _, e := range x {
				if s, ok := e.(string); ok && indexed {
					addTerm(kind, s, out)
				} else if m, ok := e.(map[string]any); ok {
					walkTerms(m, out)
				}
			}
		case map[string]any:
			walkTerms(x, out)
		}
	}
	// A guest's id is its handle (guest_managed:<id>).
	if id, ok := obj["id"].(string); ok && id != "" {
		if _, hasKey := obj["public_key"]; hasKey {
			*out = append(*out, TermHandle+GuestHandle(id).Key())
		}
	}
}

func handleOf(v any) (Handle, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return Handle{}, false
	}
	var h Handle
	h.Platform, _ = m["platform"].(string)
	h.ContainerID, _ = m["container_id"].(string)
	h.ID, _ = m["id"].(string)
	if n, ok := m["pid"].(json.Number); ok {
		if p, err := n.Int64(); err == nil && p >= 0 && p <= 1<<32-1 {
			h.PID = uint32(p)
		}
	}
	return h, h.Platform != ""
}

// TestTermsScannerEqualsDecoding: on every event shape (each command of a
// seeded random run, through Decide) and on payloads with escapes, nesting
// and odd spacing, the scanner's terms are the decoding's.
func TestTermsScannerEqualsDecoding(t *testing.T) {
	payloads := [][]byte{
		[]byte(`{"handle":{"platform":"linux_pid","pid":4242},"service":"svc12","ip":"10.64.3.7","global_ip":"10.200.3.9","netns_inode":4026531993,"dns_server":"10.64.0.1","dns_domain":"svc.local"}`),
		[]byte(` { "name" : "A\u0042c.Local." , "ip" : "::ffff:10.1.2.3", "x": [1, {"public_key":"k","id":"g1"}, "s"], "state": {"ip":"10.9.9.9"} } `),
		[]byte(`{"scope":{"service":"web"},"public_key":"VVIBVQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","allowed_ips":["10.1.0.0/24","10.2.0.1/32"],"keepalive":25}`),
		[]byte(`{"pool":"service:web","ip":"10.0.0.1"}`),
		[]byte(`{"pool":"slice","ip":"10.0.0.1","handle":{"platform":"windows_container","container_id":"abc"},"reason":"x\"y"}`),
		[]byte(`{"id":"guest-1","public_key":"k2","old_public_key":"k1","bridge":"zl-br","device":"zl-wg","dedicated":{"device":"d","public_key":"k3"}}`),
		[]byte(`{"broken": `),
		[]byte(`{"ip":"10.0.0.1",}`),
	}
	for _, p := range payloads {
		want := termsByDecode("x", 1, p)
		got := Terms("x", 1, p)
		if !slices.Equal(got, want) && !(len(want) == 0 && len(got) == 0) {
			t.Errorf("%s:\n scanner %q\ndecoding %q", p, got, want)
		}
	}
	// Every event of a random run.
	r := rand.New(rand.NewSource(1))
	n := 0
	for _, ev := range randomEvents(t, r, 3000) {
		_, _, p, err := EncodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := Terms("x", 1, p), termsByDecode("x", 1, p); !slices.Equal(got, want) {
			t.Fatalf("%s:\n scanner %q\ndecoding %q", p, got, want)
		}
		n++
	}
	t.Logf("%d payloads", n)
}

func BenchmarkTerms(b *testing.B) {
	p := []byte(`{"handle":{"platform":"linux_pid","pid":4242},"service":"svc12","ip":"10.64.3.7","global_ip":"10.200.3.9","netns_inode":4026531993,"dns_server":"10.64.0.1","dns_domain":"svc.local"}`)
	b.Run("scanner", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			Terms("container_attached", 1, p)
		}
	})
	b.Run("decoding", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			termsByDecode("container_attached", 1, p)
		}
	})
}

// randomEvents decides n random commands (the property test's generator)
// and returns the events accepted.
func randomEvents(t *testing.T, r *rand.Rand, n int) []Event {
	t.Helper()
	cfg := DefaultConfig()
	cfg.SlicePrefix4 = 26
	g := &gen{r: r}
	s := New()
	var evs []Event
	for i := 0; i < n; i++ {
		d, err := Decide(s, cfg, g.command(s))
		if err != nil {
			continue
		}
		for _, ev := range d.Events {
			if err := s.Apply(ev); err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
	}
	return evs
}
