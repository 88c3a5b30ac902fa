//go:build windows

package hcn

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/Microsoft/hcsshim/hcn"
)

// sameAsHcsshim checks that doc marshals exactly as hcsshim's type T holding
// the same document does, both ways: the bytes this package's types send
// are the bytes hcsshim would send, and nothing is lost going through
// hcsshim's types (what api_windows.go does on every call).
func sameAsHcsshim[T any](t *testing.T, what string, doc any) {
	t.Helper()
	ours, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := convert[T](doc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(theirs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, b) {
		t.Fatalf("%s: hcsshim marshals\n%s\nthis package\n%s", what, b, ours)
	}
}

// Every golden document (testdata/*.json) marshals as hcsshim v0.14.1's
// hcn types marshal it.
func TestDocumentsAreHcsshims(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden documents: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(b, &probe); err != nil {
			t.Fatal(err)
		}
		if _, isAttach := probe["Namespace"]; !isAttach {
			var n Network
			if err := json.Unmarshal(b, &n); err != nil {
				t.Fatal(err)
			}
			sameAsHcsshim[hcn.HostComputeNetwork](t, f, &n)
			continue
		}
		var a struct {
			Namespace Namespace
			Endpoints []struct{ Document Endpoint }
		}
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatal(err)
		}
		sameAsHcsshim[hcn.HostComputeNamespace](t, f+" namespace", &a.Namespace)
		for _, e := range a.Endpoints {
			sameAsHcsshim[hcn.HostComputeEndpoint](t, f+" "+e.Document.Name, &e.Document)
		}
	}
}
