package daemon

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Private keys live in files under <data-dir>/overlayd, mode 0600, written
// atomically and synced: the node's own key in wg-private.key, and the keys
// of dedicated service devices in keys/<hex public key>.key. Only public
// keys ever reach the journal, logs or status.

const nodeKeyFile = "wg-private.key"

// writeFileSync writes data to path atomically (temp file, fsync, rename,
// fsync of the directory) with mode 0600.
func writeFileSync(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// removeStaleTemps removes the temporary files an atomic write leaves when
// the process dies before its rename (a snapshot's .snapshot-*, a key's
// .tmp-*): they are never read, and a key's may hold a private key.
func removeStaleTemps(log *slog.Logger, dirs ...string) {
	for _, dir := range dirs {
		for _, pat := range []string{".snapshot-*", ".tmp-*"} {
			names, _ := filepath.Glob(filepath.Join(dir, pat))
			for _, name := range names {
				if err := os.Remove(name); err == nil {
					log.Info("removed a temporary file left by an interrupted write", "file", name)
				}
			}
		}
	}
}

// readKeyFile reads a base64 WireGuard private key (as `wg genkey` writes).
func readKeyFile(path string) (wgtypes.Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return wgtypes.Key{}, err
	}
	k, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("%s: not a base64 WireGuard private key: %w", path, err)
	}
	return k, nil
}

// loadNodeKey returns the node's private key: imported from importPath
// when given, else the stored one, else a new one. A key that is not
// stored yet is written by persist, which the caller runs once the journal
// has recorded the key: a key file then always means the journal knew this
// node, and an empty journal beside one is a lost journal, never a fresh
// node (checkHistory).
func loadNodeKey(dir, importPath string) (key wgtypes.Key, source string, persist func() error, err error) {
	path := filepath.Join(dir, nodeKeyFile)
	store := func(k wgtypes.Key, what string) func() error {
		return func() error {
			if err := writeFileSync(path, []byte(k.String()+"\n")); err != nil {
				return fmt.Errorf("store %s key in %s: %w", what, path, err)
			}
			return nil
		}
	}
	nothing := func() error { return nil }
	if importPath != "" {
		k, err := readKeyFile(importPath)
		if err != nil {
			return wgtypes.Key{}, "", nil, fmt.Errorf("--wg-private-key-file: %w", err)
		}
		if old, err := readKeyFile(path); err == nil && old == k {
			return k, "imported", nothing, nil
		}
		return k, "imported", store(k, "imported"), nil
	}
	k, err := readKeyFile(path)
	if err == nil {
		if fi, serr := os.Stat(path); serr == nil && runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(path, 0o600); err != nil {
				return wgtypes.Key{}, "", nil, fmt.Errorf("%s is readable by others and cannot be fixed: %w", path, err)
			}
		}
		return k, "stored", nothing, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return wgtypes.Key{}, "", nil, err
	}
	k, err = wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, "", nil, fmt.Errorf("generate node key: %w", err)
	}
	return k, "generated", store(k, "node"), nil
}

// keyStore holds private keys of dedicated devices, named by public key.
// A key file lives exactly as long as the journal has a dedicated service
// that owns it (keyclean.go removes the others).
type keyStore struct {
	dir string
	log *slog.Logger
}

func (ks keyStore) path(pub string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(pub)
	if err != nil || len(b) != 32 {
		return "", fmt.Errorf("bad public key %q", pub)
	}
	return filepath.Join(ks.dir, hex.EncodeToString(b)+".key"), nil
}

// Save stores priv under its public key.
func (ks keyStore) Save(priv wgtypes.Key) error {
	p, err := ks.path(priv.PublicKey().String())
	if err != nil {
		return err
	}
	return writeFileSync(p, []byte(priv.String()+"\n"))
}

// Load returns the private key for pub.
func (ks keyStore) Load(pub string) (wgtypes.Key, error) {
	p, err := ks.path(pub)
	if err != nil {
		return wgtypes.Key{}, err
	}
	return readKeyFile(p)
}
