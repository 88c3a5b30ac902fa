package projections

import "fmt"

// Decide validates cmd against s and returns the events that carry it out
// with the reply to send once they are journaled. It does not modify s; the
// caller applies the events. An error is a *Error naming the field at fault.
func Decide(s *State, cfg Config, cmd Command) (Decision, error) {
	switch c := cmd.(type) {
	case SetNodeID:
		return s.decideSetNodeID(c)
	case AnnounceKey:
		return s.decideAnnounceKey(c)
	case SetNodeIdentity:
		return s.decideNodeIdentity(c)
	case SetupGlobal:
		return s.decideSetupGlobal(cfg, c)
	case TeardownGlobal:
		return s.decideTeardownGlobal()
	case SetupService:
		return s.decideSetupService(cfg, c)
	case TeardownService:
		return s.decideTeardownService(c)
	case AllocateIP:
		return s.decideAllocateIP(c)
	case ReleaseIP:
		return s.decideReleaseIP(c)
	case Attach:
		return s.decideAttach(cfg, c)
	case Detach:
		return s.decideDetach(c)
	case AddPeer:
		return s.decideAddPeer(c)
	case RemovePeer:
		return s.decideRemovePeer(c)
	case AddAllowedIP:
		return s.decideAddAllowedIP(c)
	case RemoveAllowedIP:
		return s.decideRemoveAllowedIP(c)
	case RegisterDNS:
		return s.decideRegisterDNS(c)
	case UnregisterDNS:
		return s.decideUnregisterDNS(c)
	case ObserveEndpoints:
		return s.decideObserve(c)
	}
	return Decision{}, fmt.Errorf("projections: no decision for %T", cmd)
}

func okWith(evs ...Event) (Decision, error) { return Decision{Events: evs, Reply: ReplyOK{}}, nil }
