//go:build !linux

package ipc

import "net"

func peerCreds(net.Conn) (Creds, bool) { return Creds{}, false }

func peerExe(uint32) string { return "" }
