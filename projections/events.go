package projections

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Event is one recorded decision. Its type string and version are persisted
// with the payload: a type string is never renamed or reused, and a payload
// change bumps the version while Apply keeps handling every older one.
type Event interface {
	EventType() string
	EventVersion() uint16
}

// ErrUnknownEvent is returned for an event type or version this build does
// not know, for example one written by a newer daemon.
var ErrUnknownEvent = errors.New("projections: unknown event type or version")

type eventKey struct {
	typ string
	ver uint16
}

var registry = map[eventKey]func() Event{}

func register(f func() Event) {
	e := f()
	k := eventKey{e.EventType(), e.EventVersion()}
	if _, dup := registry[k]; dup {
		panic("projections: event registered twice: " + k.typ)
	}
	registry[k] = f
}

func init() {
	for _, f := range []func() Event{
		func() Event { return &NodeIDSet{} },
		func() Event { return &NodeKeyAnnounced{} },
		func() Event { return &NodeIdentitySet{} },
		func() Event { return &GlobalOverlaySetUp{} },
		func() Event { return &GlobalNATChanged{} },
		func() Event { return &GlobalOverlayTornDown{} },
		func() Event { return &ServiceSetUp{} },
		func() Event { return &ServiceTornDown{} },
		func() Event { return &IPReserved{} },
		func() Event { return &IPReleased{} },
		func() Event { return &ContainerAttached{} },
		func() Event { return &ContainerDetached{} },
		func() Event { return &AttachmentGlobalLeft{} },
		func() Event { return &GuestAttached{} },
		func() Event { return &GuestKeyRotated{} },
		func() Event { return &GuestDetached{} },
		func() Event { return &PeerAdded{} },
		func() Event { return &PeerUpdated{} },
		func() Event { return &PeerRemoved{} },
		func() Event { return &PeerAllowedIPAdded{} },
		func() Event { return &PeerAllowedIPRemoved{} },
		func() Event { return &PeerEndpointObserved{} },
		func() Event { return &DNSRegistered{} },
		func() Event { return &DNSUnregistered{} },
	} {
		register(f)
	}
	// Version 2 of container_attached is version 1 with a namespace GUID
	// (its EventVersion depends on the payload).
	registry[eventKey{"container_attached", 2}] = func() Event { return &ContainerAttached{} }
}

// EncodeEvent returns the persisted form of ev.
func EncodeEvent(ev Event) (typ string, ver uint16, payload []byte, err error) {
	payload, err = json.Marshal(ev)
	if err != nil {
		return "", 0, nil, fmt.Errorf("projections: encode %s: %w", ev.EventType(), err)
	}
	return ev.EventType(), ev.EventVersion(), payload, nil
}

// DecodeEvent rebuilds an event from its persisted form.
func DecodeEvent(typ string, ver uint16, payload []byte) (Event, error) {
	f, ok := registry[eventKey{typ, ver}]
	if !ok {
		return nil, fmt.Errorf("%w: %s v%d", ErrUnknownEvent, typ, ver)
	}
	ev := f()
	if err := json.Unmarshal(payload, ev); err != nil {
		return nil, fmt.Errorf("projections: decode %s v%d: %w", typ, ver, err)
	}
	return ev, nil
}
