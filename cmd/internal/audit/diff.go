package audit

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"

	"github.com/zlayer/overlayd/projections"
)

// Diff is what changed between two states: objects added, removed and
// changed, by kind. Kinds: "node", "global", "service", "address"
// (an IPAM owner), "cursor", "peer" (key "scope/public key"; scope
// "global" or the service), "attachment" and "dns".
type Diff struct {
	FromSeq uint64   `json:"from_seq"`
	ToSeq   uint64   `json:"to_seq"`
	Changes []Change `json:"changes"`
}

// Change is one object that differs. Before is absent for an added
// object, After for a removed one.
type Change struct {
	Kind   string          `json:"kind"`
	Key    string          `json:"key"`
	Action string          `json:"action"` // added, removed or changed
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
}

// Actions of a Change.
const (
	Added   = "added"
	Removed = "removed"
	Changed = "changed"
)

// DiffStates compares a (earlier) with b, object by object, in a stable
// order (kind, then key).
func DiffStates(a, b *projections.State) (Diff, error) {
	d := Diff{FromSeq: a.Seq, ToSeq: b.Seq, Changes: []Change{}}
	ka, err := objects(a)
	if err != nil {
		return d, err
	}
	kb, err := objects(b)
	if err != nil {
		return d, err
	}
	for _, kind := range kinds {
		oa, ob := ka[kind], kb[kind]
		keys := slices.Sorted(maps.Keys(oa))
		for k := range ob {
			if _, ok := oa[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			x, inA := oa[k]
			y, inB := ob[k]
			switch {
			case inA && !inB:
				d.Changes = append(d.Changes, Change{Kind: kind, Key: k, Action: Removed, Before: x})
			case !inA && inB:
				d.Changes = append(d.Changes, Change{Kind: kind, Key: k, Action: Added, After: y})
			case !bytes.Equal(x, y):
				d.Changes = append(d.Changes, Change{Kind: kind, Key: k, Action: Changed, Before: x, After: y})
			}
		}
	}
	return d, nil
}

var kinds = []string{"node", "global", "service", "address", "cursor", "peer", "attachment", "dns"}

// objects splits a state into its objects' canonical JSON, by kind and key.
func objects(s *projections.State) (map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]json.RawMessage{}
	for _, k := range kinds {
		out[k] = map[string]json.RawMessage{}
	}
	put := func(kind, key string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		out[kind][key] = b
		return nil
	}
	if err := put("node", "node", s.Node); err != nil {
		return nil, err
	}
	if s.Global != nil {
		if err := put("global", "global", s.Global); err != nil {
			return nil, err
		}
	}
	for n, v := range s.Services {
		if err := put("service", n, v); err != nil {
			return nil, err
		}
	}
	for a, o := range s.IPAM.Owners {
		if err := put("address", a.String(), o); err != nil {
			return nil, err
		}
	}
	for p, a := range s.IPAM.Cursors {
		if err := put("cursor", p, a); err != nil {
			return nil, err
		}
	}
	for scope, peers := range s.Peers {
		for k, p := range peers {
			if err := put("peer", scope+"/"+k, p); err != nil {
				return nil, err
			}
		}
	}
	for k, a := range s.Attachments {
		if err := put("attachment", k, a); err != nil {
			return nil, err
		}
	}
	for n, r := range s.DNS {
		if err := put("dns", n, r); err != nil {
			return nil, err
		}
	}
	return out, nil
}
