//go:build race

package ipc

// raceEnabled: the race detector slows everything several times over;
// tests that measure latency allow for it.
const raceEnabled = true
