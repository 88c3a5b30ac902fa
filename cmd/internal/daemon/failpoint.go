package daemon

// Failpoint, when set (test builds with the failpoints tag,
// cmd/internal/failpoint), is called at the daemon's named points:
// "daemon/sequencer" at the top of the sequencer's job loop, before each
// job (a command, a read, the watchdog's probe) is decided; `sleep(ms)`
// there stalls the whole command pipeline, as a stuck decision would.
var Failpoint func(name string)

func hit(name string) {
	if Failpoint != nil {
		Failpoint(name)
	}
}
