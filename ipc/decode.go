package ipc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Frame is one decoded frame.
type Frame struct {
	Kind     string // "request", "response" or "event"
	ID       uint64
	Request  Request
	Response Response
	Event    Event
}

// DecodeError is a frame that could not be decoded. When HasID is set the
// frame was readable: the peer should get an err response with that id and
// the connection stays usable. Otherwise the frame was unreadable and the
// connection must be closed.
type DecodeError struct {
	ID    uint64
	HasID bool
	Msg   string
}

func (e *DecodeError) Error() string { return e.Msg }

// FieldError is a field that failed to decode; Field is a dotted path.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return "field " + e.Field + ": " + e.Msg }

func fieldErr(name string, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Field: name + "." + fe.Field, Msg: fe.Msg}
	}
	return &FieldError{Field: name, Msg: describe(err)}
}

// describe turns encoding/json's messages (which name Go types) into ones
// that name the wire's types.
func describe(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := te.Type.String()
		switch te.Type.Kind() {
		case reflect.Uint64:
			want = "an unsigned integer (u64)"
		case reflect.Uint32:
			want = "an integer from 0 to 4294967295 (u32)"
		case reflect.Uint16:
			want = "an integer from 0 to 65535 (u16)"
		case reflect.Uint8:
			want = "an integer from 0 to 255 (u8)"
		case reflect.Int64:
			want = "an integer (i64)"
		case reflect.Bool:
			want = "true or false"
		case reflect.String:
			want = "a string"
		case reflect.Slice:
			want = "a list"
		case reflect.Struct:
			want = "an object"
		}
		return fmt.Sprintf("expected %s, got %s", want, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "invalid JSON: " + se.Error()
	}
	return err.Error()
}

type object map[string]json.RawMessage

// parseObject splits a JSON object into its members, validating it first.
func parseObject(b []byte, what string) (object, error) {
	if !json.Valid(b) {
		var v any
		return nil, errors.New(describe(json.Unmarshal(b, &v)))
	}
	return splitValid(b, what)
}

// splitValid splits an object already known to be valid JSON into its
// members; values alias b. A repeated key keeps its last value, as
// encoding/json does.
func splitValid(b []byte, what string) (object, error) {
	t := bytes.TrimSpace(b)
	if len(t) == 0 || t[0] != '{' {
		if what == "" {
			return nil, fmt.Errorf("expected an object, got %s", clip(b))
		}
		return nil, fmt.Errorf("%s: expected an object, got %s", what, clip(b))
	}
	o := make(object, 8)
	i := skipSpace(t, 1)
	if i < len(t) && t[i] == '}' {
		return o, nil
	}
	for i < len(t) {
		if t[i] != '"' {
			return nil, errors.New("invalid JSON object")
		}
		end := skipString(t, i)
		rawKey := t[i:end]
		key := string(rawKey[1 : len(rawKey)-1])
		if bytes.IndexByte(rawKey, '\\') >= 0 {
			if err := json.Unmarshal(rawKey, &key); err != nil {
				return nil, errors.New("invalid JSON object key")
			}
		}
		i = skipSpace(t, end)
		if i >= len(t) || t[i] != ':' {
			return nil, errors.New("invalid JSON object")
		}
		i = skipSpace(t, i+1)
		vend := skipValue(t, i)
		o[key] = json.RawMessage(t[i:vend])
		i = skipSpace(t, vend)
		if i < len(t) && t[i] == ',' {
			i = skipSpace(t, i+1)
			continue
		}
		if i < len(t) && t[i] == '}' {
			return o, nil
		}
		return nil, errors.New("invalid JSON object")
	}
	return nil, errors.New("invalid JSON object")
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index after the (valid) value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// tag reads a required string tag.
func (o object) tag(key string) (string, error) {
	raw, ok := o[key]
	if !ok {
		return "", &FieldError{Field: key, Msg: "missing"}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &FieldError{Field: key, Msg: "expected a string, got " + clip(raw)}
	}
	return s, nil
}

// decodeObject decodes a JSON object into the struct v points to, with the
// required/optional rules of decodeFields.
func decodeObject(b []byte, v any) error {
	o, err := parseObject(b, "")
	if err != nil {
		return err
	}
	return decodeFields(o, v)
}

// decodeFields fills the struct v points to from o. A non-pointer field is
// required and may not be null; a pointer field is optional and null means
// absent; a field tagged `ovl:"default"` may be absent but not null; an
// anonymous struct field's fields are read from o itself (inline).
func decodeFields(o object, v any) error {
	rv := reflect.ValueOf(v).Elem()
	rt := rv.Type()
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			if err := decodeFields(o, rv.Field(i).Addr().Interface()); err != nil {
				return err
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		raw, present := o[name]
		null := present && isNull(raw)
		deflt := f.Tag.Get("ovl") == "default"
		switch {
		case f.Type.Kind() == reflect.Pointer && !deflt:
			if !present || null {
				continue
			}
		case deflt:
			if !present {
				continue
			}
			if null {
				return &FieldError{Field: name, Msg: "null is not allowed (omit the field instead)"}
			}
		default:
			if !present {
				return &FieldError{Field: name, Msg: "missing"}
			}
			if null {
				return &FieldError{Field: name, Msg: "null is not allowed"}
			}
		}
		if err := decodeValue(raw, rv.Field(i)); err != nil {
			return fieldErr(name, err)
		}
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// decodeValue decodes one already-validated JSON value into v. Plain
// strings, unsigned integers and booleans are read directly (the hot path of
// every request); custom types get their UnmarshalJSON; anything else goes
// through encoding/json.
func decodeValue(raw json.RawMessage, v reflect.Value) error {
	raw = bytes.TrimSpace(raw)
	if v.Kind() == reflect.Pointer {
		if isNull(raw) {
			v.SetZero()
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return decodeValue(raw, v.Elem())
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		return v.Addr().Interface().(json.Unmarshaler).UnmarshalJSON(raw)
	}
	switch v.Kind() {
	case reflect.String:
		if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && plainString(raw[1:len(raw)-1]) {
			v.SetString(string(raw[1 : len(raw)-1]))
			return nil
		}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		bits := v.Type().Bits()
		n, ok := parseID(raw)
		if !ok || (bits < 64 && n>>uint(bits) != 0) {
			return &json.UnmarshalTypeError{Value: jsonKind(raw) + " " + clip(raw), Type: v.Type()}
		}
		v.SetUint(n)
		return nil
	case reflect.Bool:
		switch string(raw) {
		case "true":
			v.SetBool(true)
			return nil
		case "false":
			v.SetBool(false)
			return nil
		}
	}
	return json.Unmarshal(raw, v.Addr().Interface())
}

// jsonKind names the JSON type of a valid value.
func jsonKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// plainString reports whether a JSON string body needs no unescaping.
func plainString(b []byte) bool {
	for _, c := range b {
		if c == '\\' || c == '"' || c < 0x20 {
			return false
		}
	}
	return true
}

// parseID reads a u64 id exactly: digits only, no sign, fraction or exponent.
func parseID(raw json.RawMessage) (uint64, bool) {
	s := string(bytes.TrimSpace(raw))
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 10, 64)
	return id, err == nil
}

// DecodeFrame decodes one frame body. Errors are *DecodeError.
func DecodeFrame(b []byte) (Frame, error) {
	if !utf8.Valid(b) {
		return Frame{}, &DecodeError{Msg: "frame is not valid UTF-8"}
	}
	if !json.Valid(b) {
		var v any
		return Frame{}, &DecodeError{Msg: "frame is not JSON: " + describe(json.Unmarshal(b, &v))}
	}
	obj, err := splitValid(b, "frame")
	if err != nil {
		return Frame{}, &DecodeError{Msg: err.Error()}
	}
	var f Frame
	hasID := false
	if raw, ok := obj["id"]; ok {
		f.ID, hasID = parseID(raw)
	}
	if p := checkStrict(b); p != nil {
		// As the reference decoder: a frame whose id is given twice has
		// no id (unreadable: the connection closes); any other duplicate
		// key or lone surrogate is answered err with the id.
		if p.path == "" && p.dupKey == "id" {
			return Frame{}, &DecodeError{Msg: "frame: the key \"id\" is given twice"}
		}
		where := "frame"
		if p.path != "" {
			where = "field " + p.path
		}
		return Frame{}, &DecodeError{ID: f.ID, HasID: hasID, Msg: where + ": " + p.msg}
	}
	kind, err := obj.tag("frame")
	if err != nil {
		return Frame{}, &DecodeError{ID: f.ID, HasID: hasID, Msg: err.Error()}
	}
	f.Kind = kind
	bad := func(err error) (Frame, error) {
		return Frame{}, &DecodeError{ID: f.ID, HasID: hasID, Msg: err.Error()}
	}
	switch kind {
	case "request":
		if !hasID {
			return Frame{}, &DecodeError{Msg: "request frame without a u64 id"}
		}
		raw, ok := obj["request"]
		if !ok {
			return bad(&FieldError{Field: "request", Msg: "missing"})
		}
		if f.Request, err = decodeRequest(raw); err != nil {
			return bad(err)
		}
	case "response":
		if !hasID {
			return Frame{}, &DecodeError{Msg: "response frame without a u64 id"}
		}
		raw, ok := obj["response"]
		if !ok {
			return bad(&FieldError{Field: "response", Msg: "missing"})
		}
		if f.Response, err = decodeResponse(raw); err != nil {
			return bad(err)
		}
	case "event":
		name, err := obj.tag("event")
		if err != nil {
			return bad(err)
		}
		mk, ok := eventTypes[name]
		if !ok {
			return bad(fmt.Errorf("unknown event %q", name))
		}
		ev := mk()
		if err := decodeFields(obj, ev); err != nil {
			return bad(fmt.Errorf("event %s: %w", name, err))
		}
		f.Event = reflect.ValueOf(ev).Elem().Interface().(Event)
	default:
		return bad(fmt.Errorf("unknown frame kind %q (expected request, response or event)", kind))
	}
	return f, nil
}

func decodeRequest(raw json.RawMessage) (Request, error) {
	return decodeTagged(raw, "request", "op", requestTypes)
}

func decodeResponse(raw json.RawMessage) (Response, error) {
	return decodeTagged(raw, "response", "result", responseTypes)
}

// decodeTagged decodes an internally tagged object: the member tagKey names
// the variant (a key of types), the other members are its fields.
func decodeTagged[T any](raw json.RawMessage, what, tagKey string, types map[string]func() T) (T, error) {
	var zero T
	obj, err := splitValid(raw, what)
	if err != nil {
		return zero, err
	}
	name, err := obj.tag(tagKey)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", what, err)
	}
	mk, ok := types[name]
	if !ok {
		return zero, fmt.Errorf("unknown %s %q", tagKey, name)
	}
	v := mk()
	if err := decodeFields(obj, v); err != nil {
		return zero, fmt.Errorf("%s: %w", name, err)
	}
	return reflect.ValueOf(v).Elem().Interface().(T), nil
}
