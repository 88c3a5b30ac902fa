package replay

import (
	"errors"
	"fmt"

	"github.com/zlayer/overlayd/journal"
	"github.com/zlayer/overlayd/projections"
)

// Fold applies one stored event to s, one at a time (Load's pipeline does
// the same in parallel): an ignorable event of an unknown type is skipped,
// and s.Seq becomes the event's sequence either way. Errors name the
// event.
func Fold(s *projections.State, e *journal.Envelope) error {
	ev, err := projections.DecodeEvent(e.Type, e.Version, e.Payload)
	switch {
	case errors.Is(err, projections.ErrUnknownEvent) && e.Ignorable:
	case err != nil:
		return fmt.Errorf("event %d (%s, id %s): %w", e.Seq, e.Type, e.ID, err)
	default:
		if err := s.Apply(ev); err != nil {
			return fmt.Errorf("event %d (%s, id %s): %w", e.Seq, e.Type, e.ID, err)
		}
	}
	s.Seq = e.Seq
	return nil
}
