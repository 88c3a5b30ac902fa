// Package winsvc runs zlayer-overlayd under the Windows Service Control
// Manager (--service): the svc.Handler that reports StartPending while the
// daemon boots and Running once its pipe serves, stops it gracefully on
// Stop and Shutdown, and the log file the service writes, since a service
// has no console (docs/windows.md). The log file (RotatingFile) is
// platform-neutral; the rest is Windows-only.
package winsvc
