package ipc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// readTSV returns the rows of a vector file (header skipped).
func readTSV(t testing.TB, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows [][]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		rows = append(rows, strings.Split(sc.Text(), "\t"))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// Every golden vector decodes, and re-encodes to the same bytes.
func TestGoldenVectorsRoundTrip(t *testing.T) {
	rows := readTSV(t, "testdata/golden-v1.tsv")
	if len(rows) < 40 {
		t.Fatalf("only %d golden vectors", len(rows))
	}
	for _, row := range rows {
		name, frame := row[0], row[1]
		t.Run(name, func(t *testing.T) {
			f, err := DecodeFrame([]byte(frame))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !strings.HasPrefix(name, f.Kind+"/") {
				t.Fatalf("decoded as %s", f.Kind)
			}
			got, err := EncodeFrame(f)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if string(got) != frame {
				t.Fatalf("re-encoded differently\n got: %s\nwant: %s", got, frame)
			}
		})
	}
}

// decode-v1.tsv: "accept" rows decode; "reject" rows do not, and the error
// says whether the frame was readable (err with the id) or not (close).
func TestDecodeVectors(t *testing.T) {
	closeRows := map[string]bool{"id_float": true, "id_string": true, "id_negative": true}
	for _, row := range readTSV(t, "testdata/decode-v1.tsv") {
		verdict, name, frame := row[0], row[1], row[2]
		t.Run(name, func(t *testing.T) {
			f, err := DecodeFrame([]byte(frame))
			switch verdict {
			case "accept":
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if name == "max_u64_id" && f.ID != 18446744073709551615 {
					t.Fatalf("id %d", f.ID)
				}
				if name == "add_peer_no_scope" {
					if ap := f.Request.(AddPeer); ap.Scope != nil || ap.PersistentKeepaliveSecs != 25 {
						t.Fatalf("%+v", ap)
					}
				}
			case "reject":
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("accepted (%+v) or wrong error %v", f, err)
				}
				if closeRows[name] == de.HasID {
					t.Fatalf("HasID=%v for %s: %v", de.HasID, name, de)
				}
				t.Logf("%s: %v", name, de)
			default:
				t.Fatalf("unknown verdict %q", verdict)
			}
		})
	}
}

func TestDecodeErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ frame, want string }{
		{`{"frame":"request","id":1,"request":{"op":"setup_service_overlay","service":"web"}}`, "mode"},
		{`{"frame":"request","id":1,"request":{"op":"setup_service_overlay","service":"web","mode":"Shared"}}`, "mode"},
		{`{"frame":"request","id":1,"request":{"op":"release_ip","ip":"010.200.0.5"}}`, "ip"},
		{`{"frame":"request","id":1,"request":{"op":"release_ip","ip":"fe80::1%eth0"}}`, "ip"},
		{`{"frame":"request","id":1,"request":{"op":"setup_global_overlay","deployment":"p","instance_id":"1","cluster_cidr":"x","wg_port":70000,"nat_enabled":true}}`, "wg_port"},
		{`{"frame":"request","id":1,"request":{"op":"attach_container","handle":{"platform":"linux_pid","pid":-3},"service":"web","join_global":true}}`, "handle.pid"},
		{`{"frame":"request","id":1,"request":{"op":"attach_container","handle":{"platform":"linux_pid","pid":4242.0},"service":"web","join_global":true}}`, "handle.pid"},
		{`{"frame":"request","id":1,"request":{"op":"attach_container","handle":{"platform":"bsd_jail","jid":1},"service":"web","join_global":true}}`, "handle"},
		{`{"frame":"request","id":1,"request":{"op":"set_local_node_id","node_id":"7"}}`, "node_id"},
		{`{"frame":"request","id":1,"request":{"op":"add_peer","public_key":"k","endpoint":"e","allowed_ips":"a","persistent_keepalive_secs":25,"scope":{"scope":"service"}}}`, "scope.service"},
		{`{"frame":"request","id":1,"request":{"op":"register_dns","name":null,"ip":"10.0.0.1"}}`, "name"},
	} {
		_, err := DecodeFrame([]byte(tc.frame))
		var de *DecodeError
		if !errors.As(err, &de) || !de.HasID || !strings.Contains(de.Msg, "field "+tc.want) {
			t.Errorf("%s\n  error %v does not name field %s", tc.frame, err, tc.want)
		}
	}
}

func TestUnreadableFrames(t *testing.T) {
	for _, b := range []string{
		`not json`,
		`[1,2]`,
		`{"frame":"request","request":{"op":"status"}}`,
		"{\"frame\":\"request\",\"id\":1,\"request\":{\"op\":\"status\",\"x\":\"\xff\"}}",
		`{"frame":"request","id":1e3,"request":{"op":"status"}}`,
	} {
		_, err := DecodeFrame([]byte(b))
		var de *DecodeError
		if !errors.As(err, &de) || de.HasID {
			t.Errorf("%q: want an unreadable-frame error, got %v", b, err)
		}
	}
}

func TestEncodeNeverNull(t *testing.T) {
	b, err := EncodeResponse(1, StatusResult{})
	if err != nil || bytes.Contains(b, []byte("null")) {
		t.Fatalf("%s %v", b, err)
	}
	b, err = EncodeResponse(1, GuestConfig{OverlayIP: Addr{}, PrivateKey: "p"})
	if err == nil {
		t.Fatalf("invalid address encoded: %s", b)
	}
	var m map[string]any
	if b, err = EncodeResponse(2, GuestConfig{OverlayIP: AddrOf(mustAddr("10.0.0.2")), PrivateKey: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"peers":[]`)) {
		t.Fatalf("guest_config without peers: %s", b)
	}
}
