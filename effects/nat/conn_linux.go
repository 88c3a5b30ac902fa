package nat

import (
	"fmt"
	"strings"

	"github.com/google/nftables"
)

// Conn is the nftables connection the reconciler works through: a lasting
// *nftables.Conn in the daemon's network namespace, or an in-memory fake
// in tests. Reads go to the kernel at once; writes queue in one batch that
// Flush sends, which the kernel applies whole or not at all. After an error
// the connection is dropped (a failed batch may leave queued messages
// behind) and the next pass dials again.
type Conn interface {
	ListTablesOfFamily(family nftables.TableFamily) ([]*nftables.Table, error)
	ListChainsOfTableFamily(family nftables.TableFamily) ([]*nftables.Chain, error)
	GetRules(t *nftables.Table, c *nftables.Chain) ([]*nftables.Rule, error)
	GetSets(t *nftables.Table) ([]*nftables.Set, error)
	GetSetElements(s *nftables.Set) ([]nftables.SetElement, error)
	AddTable(t *nftables.Table) *nftables.Table
	DelTable(t *nftables.Table)
	AddChain(c *nftables.Chain) *nftables.Chain
	AddRule(r *nftables.Rule) *nftables.Rule
	AddSet(s *nftables.Set, vals []nftables.SetElement) error
	Flush() error
	CloseLasting() error
}

var _ Conn = (*nftables.Conn)(nil)

// mark is what the table says about its owner, with what was read to
// learn it: verify compares those instead of reading them again.
type mark struct {
	exists  bool   // the table is in the ruleset
	marked  bool   // it has the owner set
	journal string // the journal its owner set names

	sets  []*nftables.Set       // the table's sets, as listed
	owner []nftables.SetElement // the owner set's elements, as read
}

// readOwner reads the table's owner mark.
func readOwner(c Conn) (mark, error) {
	had, err := exists(c)
	if err != nil || !had {
		return mark{}, err
	}
	sets, err := c.GetSets(table())
	if err != nil {
		return mark{}, fmt.Errorf("nat: list sets of table inet %s: %w", Table, err)
	}
	m := mark{exists: true, sets: sets}
	for _, s := range sets {
		if s.Name != setOwner {
			continue
		}
		// The library reads element comments back, not set comments.
		m.owner, err = c.GetSetElements(s)
		if err != nil {
			return mark{}, fmt.Errorf("nat: list set %s of table inet %s: %w", setOwner, Table, err)
		}
		for _, e := range m.owner {
			if j, ok := strings.CutPrefix(e.Comment, ownerPrefix); ok {
				m.marked, m.journal = true, j
				break
			}
		}
	}
	return m, nil
}
