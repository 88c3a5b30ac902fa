package daemon

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/zlayer/overlayd/ipc"
	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// When a dedicated service's private key file is removed:
//
//   - once its teardown (the service_torn_down event) is durable and its
//     effects applied: the job's finish hook, which runs only when the
//     commit succeeded (sequencer.go). A teardown whose
//     commit failed (degraded mode) keeps the key: the service is still in
//     the journal, and its device needs the key at the next boot;
//   - at boot, every key file that no dedicated service of the replayed
//     state owns: a teardown that was durable but whose removal did not
//     happen (a crash in between), and a setup whose key was stored before
//     its commit, which then failed or never finished;
//   - after the journal is writable again following failed commits
//     (degraded.go): the keys of setups whose commits failed. Not earlier:
//     until the journal has been recovered, a failed commit may still have
//     reached the file, and a crash would bring its service back at the
//     next boot, without its key.
//
// The keys dir is 0700 and every key file 0600; a mode found wider at boot
// is narrowed, with a warning. Lines about keys name the public key, never
// the private one.

// Remove deletes the key file of pub; a missing file is not an error.
func (ks keyStore) Remove(pub string) error {
	p, err := ks.path(pub)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove key file %s: %w", p, err)
	}
	if dir, err := os.Open(ks.dir); err == nil {
		dir.Sync()
		dir.Close()
	}
	return nil
}

// keyFiles lists the key files in the store: public key (base64) by path.
// Files that are not named <64 hex digits>.key are not the store's and
// are left alone.
func (ks keyStore) keyFiles() (map[string]string, error) {
	ents, err := os.ReadDir(ks.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read key dir %s: %w", ks.dir, err)
	}
	out := map[string]string{}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".key")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		b, err := hex.DecodeString(name)
		if err != nil || len(b) != 32 {
			continue
		}
		out[filepath.Join(ks.dir, e.Name())] = base64.StdEncoding.EncodeToString(b)
	}
	return out, nil
}

// ownedKeys are the public keys of the dedicated services of st.
func ownedKeys(st *projections.State) map[string]bool {
	owned := map[string]bool{}
	for _, sv := range st.Services {
		if sv.Dedicated != nil {
			owned[sv.Dedicated.PublicKey] = true
		}
	}
	return owned
}

// sweep removes the key files whose public key owned does not hold.
func (ks keyStore) sweep(owned map[string]bool, why string) {
	files, err := ks.keyFiles()
	if err != nil {
		ks.log.Warn("cannot list the key files", "err", err)
		return
	}
	for path, pub := range files {
		if owned[pub] {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			ks.log.Warn("cannot remove a key file no dedicated service owns", "file", path, "public_key", pub, "err", err)
			continue
		}
		ks.log.Info("removed the key file of a dedicated device no journaled service owns", "public_key", pub, "file", path, "why", why)
	}
}

// fixModes narrows the keys dir to 0700 and the key files (and the node's
// key) to 0600 when they are wider, warning about each.
func (ks keyStore) fixModes(nodeKeyPath string) {
	narrow := func(path string, want fs.FileMode) {
		if runtime.GOOS == "windows" {
			// Unix modes mean nothing there (Go reports 0777 for every
			// folder): the data dir's ACL guards the keys.
			return
		}
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&fs.ModeSymlink != 0 {
			return
		}
		if got := fi.Mode().Perm(); got&^want != 0 {
			if err := os.Chmod(path, want); err != nil {
				ks.log.Warn("a key file's mode is too wide and cannot be fixed", "file", path, "mode", fmt.Sprintf("%04o", got), "err", err)
				return
			}
			ks.log.Warn("a key file's mode was too wide; fixed", "file", path, "mode", fmt.Sprintf("%04o", got), "now", fmt.Sprintf("%04o", want))
		}
	}
	if err := os.MkdirAll(ks.dir, 0o700); err != nil {
		ks.log.Warn("cannot create the key dir", "dir", ks.dir, "err", err)
	}
	narrow(ks.dir, 0o700)
	narrow(nodeKeyPath, 0o600)
	files, _ := ks.keyFiles()
	for path := range files {
		narrow(path, 0o600)
	}
}

// bootKeys checks the key store against the replayed state: modes, then
// the files no journaled dedicated service owns.
func (d *Daemon) bootKeys(st *projections.State) {
	d.keys.fixModes(filepath.Join(d.dir, nodeKeyFile))
	d.keys.sweep(ownedKeys(st), "boot")
}

// removeKeyOnTeardown makes j (a teardown_service_overlay) remove the
// service's key file once its teardown is durable and applied.
func (d *Daemon) removeKeyOnTeardown(j *job, service string) {
	var pub string // set on the sequencer, read by the replier after it
	j.before = func(st *projections.State, dec projections.Decision) error {
		sv := st.Services[service]
		if sv == nil || sv.Dedicated == nil {
			return nil
		}
		for _, ev := range dec.Events {
			if t, ok := ev.(*projections.ServiceTornDown); ok && t.Service == service {
				pub = sv.Dedicated.PublicKey
			}
		}
		return nil
	}
	// finish runs only when the job's events are durable (a failed commit
	// is answered without it), and after the effects applied them: no
	// reconcile pass still wants the key for the device being removed.
	j.finish = func(resp ipc.Response, _ []projections.Event) ipc.Response {
		if pub == "" {
			return resp
		}
		if err := d.keys.Remove(pub); err != nil {
			d.log.Warn("cannot remove the key file of a torn-down dedicated service; the next boot removes it", "service", service, "public_key", pub, "err", err)
			return resp
		}
		d.log.Info("removed the key file of a torn-down dedicated service", "service", service, "public_key", pub)
		return resp
	}
}

// sweepKeysAfterRecovery removes, once the journal has recovered from
// failed commits, the key files of setups whose commits failed: a read job
// on the sequencer, whose state then holds every decision whose key was
// stored and may still be committed, and none of the failed ones. The job
// runs after the commands queued before it: when one of them failed again
// meanwhile, its commit may have reached the file, so the sweep waits for
// the next recovery (which sweeps in turn) instead of removing its key.
func (d *Daemon) sweepKeysAfterRecovery() {
	<-d.submit(&job{cause: journal.Cause{Op: "recover"}, read: func(st *projections.State) ipc.Response {
		if err := d.writable(); err != nil {
			d.log.Debug("key files of failed setups are kept until the journal recovers again", "err", err)
			return ipc.OK{}
		}
		d.keys.sweep(ownedKeys(st), "a commit failed")
		return ipc.OK{}
	}})
}
