package projections

import (
	"errors"
	"fmt"
)

// Error is a rejected command. Field names the request field (or resource) at
// fault, using the wire protocol's field names, so that the orchestrator and
// the operator can see at once what to fix.
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func errf(field, format string, args ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ErrCorrupt marks an event that cannot be applied to the state it follows:
// the journal does not describe a history this package could have produced.
var ErrCorrupt = errors.New("projections: event inconsistent with state")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}
