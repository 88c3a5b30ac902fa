package ipc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"sync"
)

type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

// marshalNoEscape is json.Marshal without HTML escaping, like serde_json.
func marshalNoEscape(v any) ([]byte, error) {
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.Clone(bytes.TrimRight(e.buf.Bytes(), "\n")), nil
}

// tagged marshals v (a struct) with {"key":"val"} as its first member.
func tagged(key, val string, v any) ([]byte, error) {
	if t := reflect.TypeOf(v); t.Kind() == reflect.Struct && t.NumField() == 0 {
		return []byte(`{"` + key + `":"` + val + `"}`), nil // OK, Status, ...: nothing to marshal
	}
	body, err := marshalNoEscape(v)
	if err != nil {
		return nil, err
	}
	if len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("ipc: %s %s does not marshal to an object", key, val)
	}
	out := make([]byte, 0, len(body)+len(key)+len(val)+8)
	out = append(out, '{')
	out = strconv.AppendQuote(out, key) // tags are ASCII snake_case
	out = append(out, ':')
	out = strconv.AppendQuote(out, val)
	if len(body) > 2 {
		out = append(out, ',')
		out = append(out, body[1:]...)
	} else {
		out = append(out, '}')
	}
	return out, nil
}

// MarshalJSON keeps peers present ([]) even when empty.
func (g GuestConfig) MarshalJSON() ([]byte, error) {
	type plain GuestConfig
	if g.Peers == nil {
		g.Peers = []PeerSpec{}
	}
	return marshalNoEscape(plain(g))
}

// EncodeRequest encodes a request frame.
func EncodeRequest(id uint64, r Request) ([]byte, error) {
	body, err := tagged("op", r.Op(), r)
	if err != nil {
		return nil, err
	}
	return envelope("request", id, "request", body), nil
}

// EncodeResponse encodes a response frame.
func EncodeResponse(id uint64, r Response) ([]byte, error) {
	body, err := tagged("result", r.Result(), r)
	if err != nil {
		return nil, err
	}
	return envelope("response", id, "response", body), nil
}

// EncodeEvent encodes an event frame.
func EncodeEvent(e Event) ([]byte, error) {
	body, err := tagged("event", e.EventName(), e)
	if err != nil {
		return nil, err
	}
	return append([]byte(`{"frame":"event",`), body[1:]...), nil
}

// EncodeFrame encodes f according to its Kind.
func EncodeFrame(f Frame) ([]byte, error) {
	switch f.Kind {
	case "request":
		return EncodeRequest(f.ID, f.Request)
	case "response":
		return EncodeResponse(f.ID, f.Response)
	case "event":
		return EncodeEvent(f.Event)
	}
	return nil, fmt.Errorf("ipc: unknown frame kind %q", f.Kind)
}

func envelope(kind string, id uint64, key string, body []byte) []byte {
	out := make([]byte, 0, len(body)+48)
	out = append(out, `{"frame":"`...)
	out = append(out, kind...)
	out = append(out, `","id":`...)
	out = strconv.AppendUint(out, id, 10)
	out = append(out, `,"`...)
	out = append(out, key...)
	out = append(out, `":`...)
	out = append(out, body...)
	return append(out, '}')
}
