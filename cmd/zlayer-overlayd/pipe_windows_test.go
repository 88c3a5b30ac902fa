package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/tools/testtemp"
)

// These tests run the Windows daemon binary (under wine here:
// `make test-wine`, which builds it first) and talk to it over its named
// pipe with this Windows-built test binary as the client.

// daemonExe is the Windows daemon binary: OVERLAYD_WIN_DAEMON, else
// bin/windows/zlayer-overlayd.exe in the repository.
func daemonExe(t *testing.T) string {
	t.Helper()
	p := os.Getenv("OVERLAYD_WIN_DAEMON")
	if p == "" {
		p = filepath.Join("..", "..", "bin", "windows", "zlayer-overlayd.exe")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no Windows daemon binary at %s (build it with `GOOS=windows go build -o bin/windows/ ./cmd/zlayer-overlayd`, or run `make test-wine`): %v", p, err)
	}
	return p
}

type winDaemon struct {
	t       *testing.T
	dataDir string
	pipe    string
	cmd     *exec.Cmd
	log     *os.File
}

func startWinDaemon(t *testing.T, args ...string) *winDaemon {
	t.Helper()
	dir := testtemp.Dir(t)
	d := &winDaemon{t: t, dataDir: dir, pipe: ipc.DefaultSocketPath(dir)}
	f, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.log = f
	all := append([]string{"--data-dir", dir, "--dns-listen", "", "--reconcile-interval", "1h"}, args...)
	d.cmd = exec.Command(daemonExe(t), all...)
	d.cmd.Stdout, d.cmd.Stderr = f, f
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := winio.DialPipe(d.pipe, nil)
		if err == nil {
			c.Close()
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon does not answer on %s after 30 s: %v\n%s", d.pipe, err, d.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *winDaemon) logs() string {
	b, _ := os.ReadFile(d.log.Name())
	return string(b)
}

// stop sends shutdown over the pipe and waits; kills after 20 s.
func (d *winDaemon) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	if c, err := ipc.Dial(context.Background(), d.pipe, ipc.DialOptions{}); err == nil {
		c.Call(context.Background(), ipc.Shutdown{})
		c.Close()
	}
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-done
		d.t.Errorf("the daemon did not stop within 20 s of shutdown\n%s", d.logs())
	}
	d.log.Close()
}

func pipeConn(t *testing.T, pipe string) net.Conn {
	t.Helper()
	c, err := winio.DialPipe(pipe, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readFrame(c net.Conn) (ipc.Frame, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := ipc.ReadFrame(c, nil)
	if err != nil {
		return ipc.Frame{}, err
	}
	return ipc.DecodeFrame(b)
}

func tsvRows(t *testing.T, name string) [][]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "ipc", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	sc.Scan() // header
	for sc.Scan() {
		if sc.Text() != "" {
			rows = append(rows, strings.Split(sc.Text(), "\t"))
		}
	}
	return rows
}

// Every request of golden-v1.tsv, sent over the pipe, is answered with its
// id; every row of decode-v1.tsv is treated as PROTOCOL.md says: an
// accepted frame answered with its id, a readable rejected one answered
// err with its id on a connection that stays usable, an unreadable one
// closes the connection.
func TestPipeServesTheProtocolVectors(t *testing.T) {
	d := startWinDaemon(t)
	c := pipeConn(t, d.pipe)
	setup := `{"frame":"request","id":1,"request":{"op":"setup_global_overlay","deployment":"prod","instance_id":"42","cluster_cidr":"10.200.0.0/16","slice_cidr":"10.200.9.0/24","wg_port":51820,"nat_enabled":true}}`
	if err := ipc.WriteFrame(c, []byte(setup)); err != nil {
		t.Fatal(err)
	}
	if f, err := readFrame(c); err != nil || f.ID != 1 {
		t.Fatalf("setup_global_overlay: %+v %v\n%s", f, err, d.logs())
	}
	n := 0
	for _, row := range tsvRows(t, "golden-v1.tsv") {
		name, frame := row[0], row[1]
		if !strings.HasPrefix(name, "request/") || strings.Contains(name, "shutdown") {
			continue
		}
		sent, err := ipc.DecodeFrame([]byte(frame))
		if err != nil {
			t.Fatalf("%s: the golden frame does not decode: %v", name, err)
		}
		if err := ipc.WriteFrame(c, []byte(frame)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		f, err := readFrame(c)
		if err != nil || f.Kind != "response" || f.ID != sent.ID {
			t.Fatalf("%s: want a response with id %d, got %+v %v\n%s", name, sent.ID, f, err, d.logs())
		}
		n++
	}
	if n < 25 {
		t.Fatalf("only %d golden requests sent", n)
	}
	t.Logf("%d golden requests answered over %s", n, d.pipe)
	rows := tsvRows(t, "decode-v1.tsv")
	for _, row := range rows {
		verdict, name, frame := row[0], row[1], row[2]
		t.Run(name, func(t *testing.T) {
			conn := pipeConn(t, d.pipe)
			if err := ipc.WriteFrame(conn, []byte(frame)); err != nil {
				t.Fatal(err)
			}
			f, err := readFrame(conn)
			_, derr := ipc.DecodeFrame([]byte(frame))
			var de *ipc.DecodeError
			switch {
			case verdict == "accept":
				if err != nil || f.Kind != "response" {
					t.Fatalf("accepted frame not answered: %+v %v", f, err)
				}
			case errors.As(derr, &de) && de.HasID:
				if _, isErr := f.Response.(ipc.Err); err != nil || !isErr || f.ID != de.ID {
					t.Fatalf("want err with id %d, got %+v %v", de.ID, f, err)
				}
				if err := ipc.WriteFrame(conn, []byte(`{"frame":"request","id":9,"request":{"op":"status"}}`)); err != nil {
					t.Fatalf("connection unusable after err: %v", err)
				}
				if f, err := readFrame(conn); err != nil || f.ID != 9 {
					t.Fatalf("connection unusable after err: %+v %v", f, err)
				}
			default:
				if !errors.Is(err, io.EOF) && !errors.Is(err, windows.ERROR_BROKEN_PIPE) && !errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED) {
					t.Fatalf("unreadable frame: connection not closed (%+v, %v)", f, err)
				}
			}
		})
	}
	t.Logf("%d decode vectors checked", len(rows))
}

// A second daemon asked to serve the same pipe is refused and exits; the
// first goes on answering.
func TestSecondDaemonOnThePipeIsRefused(t *testing.T) {
	d := startWinDaemon(t)
	dir2 := testtemp.Dir(t)
	out, err := exec.Command(daemonExe(t), "--data-dir", dir2, "--socket", d.pipe, "--dns-listen", "").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("the second daemon did not fail: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "in use") && !strings.Contains(string(out), "held by another") {
		t.Errorf("the second daemon's error does not say the pipe is taken:\n%s", out)
	}
	c, err := ipc.Dial(context.Background(), d.pipe, ipc.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := c.Call(context.Background(), ipc.Status{}); err != nil {
		t.Fatalf("the first daemon stopped answering: %v", err)
	} else if _, ok := r.(ipc.StatusResult); !ok {
		t.Fatalf("status: %+v", r)
	}
}

// The pipe's security descriptor, read back from the pipe, is the one
// specified: a protected DACL with full access for SYSTEM and the
// Administrators group and nothing else.
func TestPipeSecurityDescriptor(t *testing.T) {
	d := startWinDaemon(t)
	name, _ := windows.UTF16PtrFromString(d.pipe)
	h, err := windows.CreateFile(name, windows.READ_CONTROL, 0, nil, windows.OPEN_EXISTING, 0, 0)
	if err != nil {
		t.Fatalf("open %s for READ_CONTROL: %v", d.pipe, err)
	}
	defer windows.CloseHandle(h)
	sd, err := windows.GetSecurityInfo(h, windows.SE_KERNEL_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatalf("GetSecurityInfo: %v", err)
	}
	got := sd.String()
	t.Logf("read back: %s (specified: %s)", got, ipc.PipeSDDL(""))
	want, err := windows.SecurityDescriptorFromString(ipc.PipeSDDL(""))
	if err != nil {
		t.Fatal(err)
	}
	control, _, err := sd.Control()
	if err != nil {
		t.Fatal(err)
	}
	if control&windows.SE_DACL_PROTECTED == 0 {
		t.Errorf("the DACL is not protected: %s", got)
	}
	gotACEs, wantACEs := aces(t, sd), aces(t, want)
	if strings.Join(gotACEs, " ") != strings.Join(wantACEs, " ") {
		t.Errorf("ACEs %v, want %v", gotACEs, wantACEs)
	}
}

// aces lists a descriptor's DACL entries as "type:mask:SID", generic
// rights mapped as Windows maps them for a pipe (GENERIC_ALL is
// FILE_ALL_ACCESS).
func aces(t *testing.T, sd *windows.SECURITY_DESCRIPTOR) []string {
	t.Helper()
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		t.Fatalf("no DACL: %v", err)
	}
	var out []string
	for i := uint32(0); i < uint32(dacl.AceCount); i++ {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			t.Fatal(err)
		}
		mask := ace.Mask
		if mask&windows.GENERIC_ALL != 0 {
			mask = fileAllAccess
		}
		sid := (*windows.SID)(unsafePointer(&ace.SidStart))
		out = append(out, strings.Join([]string{itoa(uint32(ace.Header.AceType)), itoa(uint32(mask)), sid.String()}, ":"))
	}
	return out
}

// Without the Host Networking Service (wine has none) a windows_container
// attach is answered err naming it, nothing is journaled for it, and the
// daemon goes on serving; status lists the missing service.
func TestWindowsAttachWithoutHCNIsRefused(t *testing.T) {
	d := startWinDaemon(t)
	c, err := ipc.Dial(context.Background(), d.pipe, ipc.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	slice := "10.200.9.0/24"
	for _, req := range []ipc.Request{
		ipc.SetupGlobalOverlay{Deployment: "prod", InstanceID: "42", ClusterCIDR: "10.200.0.0/16", SliceCIDR: &slice, WgPort: 51820},
		ipc.SetupServiceOverlay{Service: "web", Mode: ipc.ModeShared},
	} {
		r, err := c.Call(ctx, req)
		if err != nil && req.Op() == "setup_global_overlay" && strings.Contains(err.Error(), "recorded, but not in effect") && strings.Contains(err.Error(), "wintun.dll not found") {
			// Wine has no Wintun: the decision is journaled, the device
			// is retried at every check, and the answer says why.
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", req.Op(), err)
		} else if e, isErr := r.(ipc.Err); isErr {
			t.Fatalf("%s: %s\n%s", req.Op(), e.Message, d.logs())
		}
	}
	head := func() uint64 {
		r, err := c.Call(ctx, ipc.JournalList{})
		if err != nil {
			t.Fatal(err)
		}
		return r.(ipc.JournalEvents).HeadSeq
	}
	before := head()
	// The client returns an err answer as an error.
	r, err := c.Call(ctx, ipc.AttachContainer{Handle: ipc.AttachHandle{Platform: ipc.PlatformWindows, ContainerID: "ctr-abc"}, Service: "web"})
	if err == nil || !strings.Contains(err.Error(), "Host Networking Service") {
		t.Fatalf("attach without HCN answered %+v, %v; want err naming the Host Networking Service", r, err)
	}
	if after := head(); after != before {
		t.Errorf("the refused attach moved the journal head from %d to %d", before, after)
	}
	st, err := c.Call(ctx, ipc.Status{})
	if err != nil {
		t.Fatal(err)
	}
	sr, ok := st.(ipc.StatusResult)
	if !ok {
		t.Fatalf("status: %+v", st)
	}
	found := false
	for _, p := range sr.Problems {
		found = found || p.Resource == "hcn"
	}
	if !found {
		t.Errorf("status lists no hcn problem: %+v", sr.Problems)
	}
}
