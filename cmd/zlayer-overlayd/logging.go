package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/zlayer/overlayd/cmd/internal/daemon"
)

// newLogger builds the daemon's logger (--log-format, --log-level): slog's
// text handler (logfmt key=value) or its JSON handler (one object a line,
// keys time, level, msg and the line's attributes).
func newLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}

// uidList is --admin-uid: repeatable, each a uid or a comma-separated list.
type uidList []uint32

func (l *uidList) String() string {
	parts := make([]string, len(*l))
	for i, u := range *l {
		parts[i] = fmt.Sprint(u)
	}
	return strings.Join(parts, ",")
}

func (l *uidList) Set(s string) error {
	uids, err := daemon.ParseUIDs(s)
	if err != nil {
		return err
	}
	*l = append(*l, uids...)
	return nil
}
