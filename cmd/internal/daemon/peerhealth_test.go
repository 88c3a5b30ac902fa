package daemon

import (
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

func TestPeerHealth(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	th := 180 * time.Second
	for _, c := range []struct {
		last time.Time
		want string
	}{
		{time.Time{}, ipc.PeerUnhealthy},
		{now.Add(-10 * time.Second), ipc.PeerHealthy},
		{now.Add(-th), ipc.PeerHealthy},
		{now.Add(-th - time.Second), ipc.PeerUnhealthy},
	} {
		if got := peerHealth(now, c.last, th); got != c.want {
			t.Errorf("handshake %v before: %s, want %s", now.Sub(c.last), got, c.want)
		}
	}
}
