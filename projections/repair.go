package projections

import "encoding/json"

// JournalRepaired records an offline repair of the journal (`overlayctl
// journal repair`): which events were lost, and, when the snapshot that
// survived them was newer than the last event saved, the state at that
// snapshot, which this event puts back, so that a replay of the repaired
// journal alone gives the snapshot's state. It is written by the repair
// only, never decided from a command.
type JournalRepaired struct {
	// LostFrom..LostTo is the range of sequence numbers lost (LostFrom 0:
	// none): from the first event that could not be saved to the highest
	// sequence seen anywhere in the file or in the snapshot.
	LostFrom uint64 `json:"lost_from,omitempty"`
	LostTo   uint64 `json:"lost_to,omitempty"`
	// LostTypes counts the lost events that could still be read, by type;
	// Unreadable counts those that could not.
	LostTypes  map[string]int `json:"lost_types,omitempty"`
	Unreadable uint64         `json:"unreadable,omitempty"`
	// SnapshotSeq is the sequence of the snapshot whose state State
	// carries (0: no state carried).
	SnapshotSeq uint64 `json:"snapshot_seq,omitempty"`
	// State is the canonical JSON (CanonicalJSON) of the state at
	// SnapshotSeq; empty when the repaired journal simply ends at the last
	// good event.
	State json.RawMessage `json:"state,omitempty"`
	// BrokenCopy names the copy of the damaged file the repair kept.
	BrokenCopy string `json:"broken_copy,omitempty"`
}

func (*JournalRepaired) EventType() string    { return "journal_repaired" }
func (*JournalRepaired) EventVersion() uint16 { return 1 }

func init() { register(func() Event { return &JournalRepaired{} }) }

// applyJournalRepaired replaces the state with the one the event carries
// (keeping Seq, which the caller advances), or leaves it as it is.
func (s *State) applyJournalRepaired(e *JournalRepaired) error {
	if len(e.State) == 0 {
		return nil
	}
	st, err := ParseCanonicalJSON(e.State)
	if err != nil {
		return corrupt("journal_repaired: the state it carries does not decode: %v", err)
	}
	seq := s.Seq
	*s = *st
	s.Seq = seq
	return nil
}
