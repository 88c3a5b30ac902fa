package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	for _, c := range []struct {
		name        string
		bi          *debug.BuildInfo
		ok          bool
		ver, commit string
	}{
		{"no build info", nil, false, "devel", "unknown"},
		{"devel, no vcs", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "devel", "unknown"},
		{"tagged module", &debug.BuildInfo{Main: debug.Module{Version: "v0.13.0"}}, true, "0.13.0", "unknown"},
		{"clean tree", &debug.BuildInfo{Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "f72c5990123456789abcdef"}, {Key: "vcs.modified", Value: "false"}}}, true, "devel", "f72c59901234"},
		{"dirty tree", &debug.BuildInfo{Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}, true, "devel", "abc123-dirty"},
	} {
		v, cm := fromBuildInfo(c.bi, c.ok)
		if v != c.ver || cm != c.commit {
			t.Errorf("%s: got %q %q, want %q %q", c.name, v, cm, c.ver, c.commit)
		}
	}
}

func TestStringNamesVersionCommitProtocolAndGo(t *testing.T) {
	s := String()
	for _, want := range []string{"overlayd ", "commit ", "protocol v1", "go1."} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
}
