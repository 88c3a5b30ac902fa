package projections

import (
	"net/netip"
	"regexp"
	"testing"
)

var bareGUID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// The namespace GUID is a bare lowercase version-5 UUID, a pure function
// of its inputs (a fixed vector pins it: a change would give a replayed
// journal's containers other GUIDs than those answered), different when
// any input differs.
func TestNamespaceGUID(t *testing.T) {
	g := NamespaceGUID("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "windows_container:ctr-abc", 5)
	if g != "6a2a4773-3f87-5f1d-b345-f67701743561" {
		t.Fatalf("NamespaceGUID = %s", g)
	}
	if !bareGUID.MatchString(g) {
		t.Fatalf("%s is not a bare lowercase v5 GUID", g)
	}
	seen := map[string]bool{g: true}
	for _, o := range []string{
		NamespaceGUID("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "windows_container:ctr-abc", 6),
		NamespaceGUID("AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=", "windows_container:ctr-abc", 5),
		NamespaceGUID("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "windows_container:ctr-abd", 5),
	} {
		if seen[o] || !bareGUID.MatchString(o) {
			t.Fatalf("GUID %s repeated or malformed", o)
		}
		seen[o] = true
	}
	for in, want := range map[string]string{
		"{6A2A4773-3F87-5F1D-B345-F67701743561}": g,
		"6A2A4773-3f87-5F1D-b345-F67701743561":   g,
		"6a2a4773-3f87-5f1d-b345-f6770174356":    "",
		"6a2a4773x3f87-5f1d-b345-f67701743561":   "",
		"ctr-abc":                                "",
	} {
		got, ok := CanonicalGUID(in)
		if got != want || ok != (want != "") {
			t.Errorf("CanonicalGUID(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// A Linux attach is still journaled as container_attached v1 (journals of
// Linux nodes are unchanged); a Windows attach, which carries a namespace
// GUID, as v2, and both decode back to what was encoded.
func TestContainerAttachedVersions(t *testing.T) {
	linux := &ContainerAttached{Handle: Handle{Platform: PlatformLinuxPID, PID: 4}, Service: "web", IP: netip.MustParseAddr("10.0.0.2")}
	win := &ContainerAttached{Handle: Handle{Platform: PlatformWindows, ContainerID: "c"}, Service: "web",
		IP: netip.MustParseAddr("10.0.0.3"), NamespaceGUID: "6a2a4773-3f87-5f1d-b345-f67701743561"}
	for want, ev := range map[uint16]*ContainerAttached{1: linux, 2: win} {
		typ, ver, payload, err := EncodeEvent(ev)
		if err != nil || typ != "container_attached" || ver != want {
			t.Fatalf("encode: %s v%d, %v; want v%d", typ, ver, err, want)
		}
		back, err := DecodeEvent(typ, ver, payload)
		if err != nil {
			t.Fatal(err)
		}
		if got := back.(*ContainerAttached); *got != *ev {
			t.Fatalf("decoded %+v, encoded %+v", got, ev)
		}
	}
}
