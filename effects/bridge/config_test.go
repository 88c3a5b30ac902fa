package bridge

import (
	"strconv"
	"testing"
)

// Every name HostName gives is recognised by isHostName (the boot pass
// relies on it to find unmarked leftovers), and nothing else of that shape.
func TestHostNamePattern(t *testing.T) {
	for i := 0; i < 2000; i++ {
		a := &Attachment{Key: "linux_pid:" + strconv.Itoa(1+i), NetnsInode: uint64(4026531840 + i)}
		for _, leg := range []Leg{LegService, LegGlobal} {
			if n := a.HostName(leg); !isHostName(n) {
				t.Fatalf("HostName gave %q, which isHostName refuses", n)
			}
		}
	}
	for _, n := range []string{"", "zv", "zv0badc0dex", "zv0BADC0DEs", "zv0badc0de", "zv0badc0dess", "xv0badc0des", "eth0", "zv0badc0d_s"} {
		if isHostName(n) {
			t.Errorf("isHostName(%q) = true", n)
		}
	}
}
