package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zlayer/overlayd/ipc"
)

const authzHelperEnv = "OVERLAYD_TEST_AUTHZ_SOCKET"

// TestAuthzHelperProcess is the client TestAuthzOverSocket runs as other
// uids: it sends each op of OVERLAYD_TEST_AUTHZ_OPS on one connection and
// prints "AUTHZ <op> <result> <message>" per answer.
func TestAuthzHelperProcess(t *testing.T) {
	sock := os.Getenv(authzHelperEnv)
	if sock == "" {
		t.Skip("the client of TestAuthzOverSocket (run by it as another uid)")
	}
	ctx := context.Background()
	c, err := ipc.Dial(ctx, sock, ipc.DialOptions{Attempts: 5, Backoff: 20 * time.Millisecond, CallTimeout: 20 * time.Second})
	if err != nil {
		fmt.Printf("AUTHZ\t-\tdial\t%v\n", err)
		return
	}
	defer c.Close()
	n, _ := strconv.Atoi(os.Getenv("OVERLAYD_TEST_AUTHZ_N"))
	for _, op := range strings.Split(os.Getenv("OVERLAYD_TEST_AUTHZ_OPS"), ",") {
		resp, err := c.Call(ctx, sampleRequest(op, n))
		var re *ipc.RemoteError
		switch {
		case errors.As(err, &re):
			fmt.Printf("AUTHZ\t%s\terr\t%s\n", op, re.Message)
		case err != nil:
			fmt.Printf("AUTHZ\t%s\tfailed\t%v\n", op, err)
		default:
			fmt.Printf("AUTHZ\t%s\t%s\t\n", op, resp.Result())
		}
	}
}

type answer struct{ result, message string }

// runAs runs the helper as cred (nil: as this process, root) and returns
// its answers by op.
func runAs(t *testing.T, helper, sock string, cred *syscall.Credential, n int, ops []string) map[string]answer {
	t.Helper()
	cmd := exec.Command(helper, "-test.run=^TestAuthzHelperProcess$", "-test.count=1")
	cmd.Dir = filepath.Dir(helper)
	cmd.Env = []string{authzHelperEnv + "=" + sock, "OVERLAYD_TEST_AUTHZ_OPS=" + strings.Join(ops, ","),
		"OVERLAYD_TEST_AUTHZ_N=" + strconv.Itoa(n), "PATH=/usr/bin:/bin"}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as %+v: %v\n%s", cred, err, out)
	}
	got := map[string]answer{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.SplitN(line, "\t", 4)
		if len(f) == 4 && f[0] == "AUTHZ" {
			got[f[1]] = answer{f[2], f[3]}
		}
	}
	if len(got) != len(ops) {
		t.Fatalf("helper as %+v answered %d of %d ops:\n%s", cred, len(got), len(ops), out)
	}
	return got
}

// A uid outside the admin group gets the refusal for every mutating op,
// each logged at warn, nothing journaled, and real answers for every read;
// a member by primary gid, a member by supplementary group, a listed uid
// and root get through. The clients are this test binary run as other
// uids (numeric, no users are created).
func TestAuthzOverSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs clients as other uids")
	}
	const adminGID, outsider = 64050, 64001
	base, err := os.MkdirTemp("", "overlayd-authz-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(base, "helper.test")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := copyExecutable(self, helper, 0o755); err != nil {
		t.Fatal(err)
	}

	var logBuf syncBuffer
	log := slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := Open(Config{DataDir: filepath.Join(base, "data"), Log: log, NoDataPlane: true,
		Authz: AuthzConfig{Group: strconv.Itoa(adminGID), UIDs: []uint32{64004}}})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(base, "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	go d.ServeListener(l)
	t.Cleanup(func() { d.Stop(); <-d.Done() })

	var mutatingList, readList []string
	for _, op := range ipcOps(t) {
		if mutating(op) {
			mutatingList = append(mutatingList, op)
		} else if op != "journal_follow" {
			readList = append(readList, op)
		}
	}
	readList = append(readList, "journal_follow") // last: its events follow the answer

	head0, _ := d.store.Head()
	got := runAs(t, helper, sock, &syscall.Credential{Uid: outsider, Gid: 64100, Groups: []uint32{64101}}, 0, append(slices.Clone(mutatingList), readList...))
	for _, op := range mutatingList {
		want := answer{"err", fmt.Sprintf("permission denied: uid %d may not send %s", outsider, op)}
		if got[op] != want {
			t.Errorf("%s from uid %d: got %+v, want %+v", op, outsider, got[op], want)
		}
	}
	for _, op := range readList {
		if a := got[op]; a.result == "err" || a.result == "failed" || a.result == "" {
			t.Errorf("read %s from uid %d: got %+v", op, outsider, a)
		}
	}
	if head, _ := d.store.Head(); head != head0 {
		t.Errorf("refused requests journaled %d events", head-head0)
	}
	lines := logLines(t, logBuf.Bytes())
	denied := map[string]map[string]any{}
	for _, l := range filterLines(lines, "permission denied") {
		if l["uid"] == float64(outsider) {
			denied[l["op"].(string)] = l
		}
	}
	for _, op := range mutatingList {
		l := denied[op]
		if l == nil {
			t.Errorf("the refusal of %s was not logged", op)
			continue
		}
		if l["level"] != "WARN" || l["gid"] != float64(64100) || l["pid"] == float64(0) || !strings.HasSuffix(l["exe"].(string), "helper.test") || l["request_id"] == nil {
			t.Errorf("refusal line of %s: %v", op, l)
		}
	}

	// Those who may: each registers a name, which is journaled.
	for i, c := range []struct {
		name string
		cred *syscall.Credential
	}{
		{"member by primary gid", &syscall.Credential{Uid: 64002, Gid: adminGID}},
		{"member by supplementary group", &syscall.Credential{Uid: 64003, Gid: 64100, Groups: []uint32{64101, adminGID}}},
		{"listed uid", &syscall.Credential{Uid: 64004, Gid: 64100}},
		{"root", nil},
	} {
		before, _ := d.store.Head()
		a := runAs(t, helper, sock, c.cred, i+1, []string{"register_dns", "status"})
		if a["register_dns"].result != "ok" || a["status"].result != "status" {
			t.Errorf("%s: got %+v", c.name, a)
		}
		if after, _ := d.store.Head(); after != before+1 {
			t.Errorf("%s: journal went %d -> %d", c.name, before, after)
		}
	}
	// The decision log: one line per decision, JSON, with op, caller,
	// result and duration.
	var decisions int
	for _, l := range filterLines(logLines(t, logBuf.Bytes()), "decision") {
		if l["op"] != "register_dns" {
			continue
		}
		decisions++
		for _, k := range []string{"op", "request_id", "uid", "pid", "exe", "result", "took"} {
			if _, ok := l[k]; !ok {
				t.Errorf("decision line without %s: %v", k, l)
			}
		}
		if l["level"] != "INFO" || l["result"] != "ok" {
			t.Errorf("decision line: %v", l)
		}
	}
	if decisions != 4 {
		t.Errorf("%d decision lines for 4 register_dns", decisions)
	}
	// The daemon still serves (the refused shutdown did not stop it).
	select {
	case <-d.Done():
		t.Fatal("the daemon stopped")
	default:
	}
}

func copyExecutable(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
