package winsvc

import (
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// Install creates the service Name as the orchestrator does: exe run with
// --data-dir dataDir --service (and extra), started automatically, as
// LocalSystem; and registers the event log source Name. An existing
// service of that name is an error (uninstall it first).
func Install(exe, dataDir string, extra ...string) error {
	exe, err := filepath.Abs(exe)
	if err != nil {
		return fmt.Errorf("winsvc: install %s: %w", Name, err)
	}
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("winsvc: install %s: connect to the service control manager: %w", Name, err)
	}
	defer m.Disconnect()
	args := append([]string{"--data-dir", dataDir, "--service"}, extra...)
	s, err := m.CreateService(Name, exe, mgr.Config{
		DisplayName: "ZLayer overlay network daemon",
		Description: "The node's overlay network: WireGuard mesh, addresses, DNS, HCN networks and endpoints.",
		StartType:   mgr.StartAutomatic,
		// ServiceStartName "" is LocalSystem.
	}, args...)
	if err != nil {
		return fmt.Errorf("winsvc: create service %s: %w", Name, err)
	}
	defer s.Close()
	err = eventlog.InstallAsEventCreate(Name, eventlog.Error|eventlog.Warning|eventlog.Info)
	if err != nil && !isExists(err) {
		return fmt.Errorf("winsvc: register event log source %s (the service is installed; it logs to its file): %w", Name, err)
	}
	return nil
}

// Uninstall deletes the service Name (stop it first) and its event log
// source.
func Uninstall() error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("winsvc: uninstall %s: connect to the service control manager: %w", Name, err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(Name)
	if err != nil {
		return fmt.Errorf("winsvc: open service %s: %w", Name, err)
	}
	defer s.Close()
	if err := s.Delete(); err != nil {
		return fmt.Errorf("winsvc: delete service %s: %w", Name, err)
	}
	if err := eventlog.Remove(Name); err != nil {
		return fmt.Errorf("winsvc: remove event log source %s (the service is deleted): %w", Name, err)
	}
	return nil
}

// isExists: eventlog.InstallAsEventCreate reports an existing source as a
// plain error ("... registry key already exists").
func isExists(err error) bool { return strings.Contains(err.Error(), "already exists") }
