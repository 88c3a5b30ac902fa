package daemon

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zlayer/overlayd/effects"
	"github.com/zlayer/overlayd/ipc"
)

// Who may talk to the daemon. Anyone who can open the socket may read
// (status, dumps, the journal's inspection ops); only an admin may send an
// op that changes something or stops the daemon. An admin is a caller whose
// SO_PEERCRED uid is 0, or is listed with --admin-uid, or who is in the
// --admin-group (default "zlayer") by its primary gid or by a supplementary
// group of its process (/proc/PID/status "Groups:", read at the
// connection's first mutating request and cached for the connection).
//
// A connection without credentials (Meta.HasPeer false) is allowed only on
// a listener that is not a unix socket: a Windows named pipe, whose ACL
// admits only SYSTEM and Administrators, or a test's in-memory transport.
// On a unix socket Linux always gives SO_PEERCRED; a unix connection
// without it is refused every mutating op (fail closed).

// DefaultAdminGroup is the group whose members may send mutating ops.
const DefaultAdminGroup = "zlayer"

// permissionDenied starts every refusal's message.
const permissionDenied = "permission denied: "

// readOps are the ops anyone who can open the socket may send. Every other
// op the ipc package decodes is mutating (mutating).
var readOps = map[string]bool{
	"status":         true,
	"state_dump":     true,
	"journal_list":   true,
	"journal_query":  true,
	"journal_stats":  true,
	"journal_verify": true,
	"journal_follow": true,
	"journal_backup": true,
}

// mutatingOps lists the ops that change state, journal an event, or stop
// the daemon: nat_tick journals observed endpoints, journal_compact
// rewrites the journal file, shutdown stops the daemon.
var mutatingOps = map[string]bool{
	"set_local_node_id":        true,
	"set_local_wg_pubkey":      true,
	"setup_global_overlay":     true,
	"teardown_global_overlay":  true,
	"setup_service_overlay":    true,
	"teardown_service_overlay": true,
	"allocate_ip":              true,
	"release_ip":               true,
	"attach_container":         true,
	"detach_container":         true,
	"add_peer":                 true,
	"remove_peer":              true,
	"add_allowed_ip":           true,
	"remove_allowed_ip":        true,
	"register_dns":             true,
	"unregister_dns":           true,
	"nat_tick":                 true,
	"shutdown":                 true,
	"journal_compact":          true,
}

// mutating reports whether op needs an admin. An op in neither table (one a
// newer ipc package decodes and this table does not know yet) is treated
// as mutating: refusing a read by mistake is safer than allowing a write;
// TestEveryOpClassified fails until it is listed.
func mutating(op string) bool { return !readOps[op] }

// AuthzConfig is who may send mutating ops besides root (flags
// --admin-group, --admin-uid).
type AuthzConfig struct {
	// Group is a group name or a numeric GID ("" = DefaultAdminGroup). A
	// name is resolved once at boot; a group that does not exist leaves
	// only root and UIDs.
	Group string
	UIDs  []uint32
}

// ParseUIDs parses a --admin-uid value: one uid or a comma-separated list.
func ParseUIDs(s string) ([]uint32, error) {
	var out []uint32
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--admin-uid: %q is not a numeric uid", f)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

// authzCacheMax bounds the per-connection caches (supplementary groups,
// refusal counters): about the number of connections the server admits.
// Past it the oldest connection's entry is dropped (it is read again if
// that connection sends another mutating op).
const authzCacheMax = 1024

// refusalEvery is how often identical refusals on one connection are
// logged: the first at once, then at most one line per refusalEvery
// carrying how many were not logged.
const refusalEvery = time.Minute

type refusalKey struct {
	conn uint64
	op   string
}

// authorizer decides per request whether its caller may send its op.
type authorizer struct {
	log      *slog.Logger
	gid      uint32
	hasGroup bool
	group    string // as configured, for the logs
	uids     map[uint32]bool
	// credsRequired is set when the listener is a unix socket: a
	// connection without SO_PEERCRED is then refused mutating ops.
	credsRequired bool

	now        func() time.Time
	procGroups func(pid uint32) ([]uint32, error)

	mu       sync.Mutex
	groups   map[uint64][]uint32 // supplementary groups by ConnID
	refusals effects.Folder[refusalKey]
}

// newAuthorizer resolves cfg's group (logging once at info when it does
// not exist) and returns the authorizer.
func newAuthorizer(log *slog.Logger, cfg AuthzConfig) *authorizer {
	a := &authorizer{log: log, uids: map[uint32]bool{}, now: time.Now, procGroups: procStatusGroups,
		groups: map[uint64][]uint32{}, refusals: effects.Folder[refusalKey]{Every: refusalEvery, Max: authzCacheMax}}
	for _, u := range cfg.UIDs {
		a.uids[u] = true
	}
	a.group = cfg.Group
	if a.group == "" {
		a.group = DefaultAdminGroup
	}
	if n, err := strconv.ParseUint(a.group, 10, 32); err == nil {
		a.gid, a.hasGroup = uint32(n), true
	} else if g, err := user.LookupGroup(a.group); err == nil {
		if n, err := strconv.ParseUint(g.Gid, 10, 32); err == nil {
			a.gid, a.hasGroup = uint32(n), true
		}
	}
	uids := make([]uint32, 0, len(cfg.UIDs))
	uids = append(uids, cfg.UIDs...)
	if runtime.GOOS == "windows" {
		// The named pipe has no SO_PEERCRED: its security descriptor
		// (SYSTEM, Administrators, the --admin-group's SID) decides who
		// may connect, and a connected client may send every op.
		return a
	}
	if a.hasGroup {
		log.Info("mutating ops are allowed to root, the admin group and the admin uids", "admin_group", a.group, "gid", a.gid, "admin_uids", uids)
	} else {
		log.Info("the admin group does not exist; only root and the admin uids may send mutating ops", "admin_group", a.group, "admin_uids", uids)
	}
	return a
}

// setTransport records the listener's network ("unix" requires creds).
func (a *authorizer) setTransport(network string) {
	a.mu.Lock()
	a.credsRequired = network == "unix" || network == "unixpacket"
	a.mu.Unlock()
}

// check returns nil when m's caller may send op, else the refusal to
// answer (logged at warn, rate-limited per connection and op).
func (a *authorizer) check(m ipc.Meta, op string) ipc.Response {
	if !mutating(op) {
		return nil
	}
	if !m.HasPeer {
		a.mu.Lock()
		required := a.credsRequired
		a.mu.Unlock()
		if !required {
			return nil
		}
		a.refused(m, op, "no peer credentials")
		return ipc.Err{Message: fmt.Sprintf("%sa caller without credentials may not send %s", permissionDenied, op)}
	}
	p := m.Peer
	if p.UID == 0 || a.uids[p.UID] {
		return nil
	}
	if a.hasGroup {
		if p.GID == a.gid {
			return nil
		}
		for _, g := range a.supplementary(m) {
			if g == a.gid {
				return nil
			}
		}
	}
	a.refused(m, op, "")
	return ipc.Err{Message: fmt.Sprintf("%suid %d may not send %s", permissionDenied, p.UID, op)}
}

// supplementary returns the supplementary groups of m's process, read once
// per connection.
func (a *authorizer) supplementary(m ipc.Meta) []uint32 {
	a.mu.Lock()
	gs, ok := a.groups[m.ConnID]
	a.mu.Unlock()
	if ok {
		return gs
	}
	gs, err := a.procGroups(m.Peer.PID)
	if err != nil {
		a.log.Debug("cannot read the caller's groups; deciding on its primary gid", "pid", m.Peer.PID, "err", err)
		gs = nil
	}
	a.mu.Lock()
	if len(a.groups) >= authzCacheMax {
		dropOldest(a.groups)
	}
	a.groups[m.ConnID] = gs
	a.mu.Unlock()
	return gs
}

// refused logs a refusal: the first of an op on a connection at once, then
// at most one per refusalEvery with the number left out since.
func (a *authorizer) refused(m ipc.Meta, op, why string) {
	ok, suppressed := a.refusals.Allow(refusalKey{conn: m.ConnID, op: op}, a.now())
	if !ok {
		return
	}
	args := []any{"op", op, "request_id", m.RequestID, "conn", m.ConnID}
	if m.HasPeer {
		args = append(args, "uid", m.Peer.UID, "gid", m.Peer.GID, "pid", m.Peer.PID, "exe", m.Peer.Exe)
	}
	if why != "" {
		args = append(args, "why", why)
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	a.log.Warn("permission denied", args...)
}

func dropOldest(m map[uint64][]uint32) {
	first := true
	var oldest uint64
	for k := range m {
		if first || k < oldest {
			oldest, first = k, false
		}
	}
	delete(m, oldest)
}

// procStatusGroups reads the supplementary groups of pid from
// /proc/PID/status (the "Groups:" line). Elsewhere than Linux it fails,
// and only the primary gid counts.
func procStatusGroups(pid uint32) ([]uint32, error) {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/status")
	if err != nil {
		return nil, err
	}
	return parseStatusGroups(b)
}

func parseStatusGroups(b []byte) ([]uint32, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "Groups:")
		if !ok {
			continue
		}
		var out []uint32
		for _, f := range strings.Fields(rest) {
			n, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("/proc status: Groups: %q is not a gid", f)
			}
			out = append(out, uint32(n))
		}
		return out, nil
	}
	return nil, fmt.Errorf("/proc status: no Groups: line")
}
