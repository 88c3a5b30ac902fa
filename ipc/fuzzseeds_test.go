package ipc

import (
	"strings"
	"testing"

	"github.com/zlayer/overlayd/tools/fuzzcorpus"
)

// strictSeeds are the strict-frame fixtures: duplicate keys and lone
// surrogates at several depths, and their legal neighbours.
var strictSeeds = []string{
	`{"frame":"request","id":1,"id":2,"request":{"op":"status"}}`,
	`{"frame":"request","id":1,"request":{"op":"status","op":"shutdown"}}`,
	`{"frame":"request","frame":"response","id":1,"request":{"op":"status"}}`,
	`{"frame":"request","id":7,"request":{"op":"register_dns","name":"a.b","name":"c.d","ip":"10.0.0.1"}}`,
	`{"frame":"request","id":7,"request":{"op":"add_peer","public_key":"k","endpoint":"","allowed_ips":"10.1.0.0/24","persistent_keepalive_secs":0,"scope":{"scope":"service","service":"a","service":"b"}}}`,
	`{"frame":"request","id":3,"request":{"op":"register_dns","name":"a\ud800.b","ip":"10.0.0.1"}}`,
	`{"frame":"request","id":3,"request":{"op":"register_dns","name":"a\udc00","ip":"10.0.0.1"}}`,
	`{"frame":"request","id":3,"request":{"op":"register_dns","name":"\ud83d\ude00x","ip":"10.0.0.1"}}`,
	`{"frame":"request","id":3,"request":{"op":"register_dns","name":"a\\ud800b","ip":"10.0.0.1"}}`,
	`{"frame":"request","id":9,"request":{"op":"journal_query","types":["a","b"],"types":[]}}`,
	`{"frame":"request","id":9,"request":{"op":"status"},"x":[{"k":1,"k":2}]}`,
}

// TestFuzzSeeds keeps testdata/fuzz/ in step with the protocol vectors
// (golden-v1.tsv, decode-v1.tsv; copies of /work/shared/protocol) and the
// strict-frame fixtures: every vector is a seed of the frame decoder,
// every request vector's body a seed of the request decoder.
func TestFuzzSeeds(t *testing.T) {
	var frames, bodies []fuzzcorpus.Seed
	addFrame := func(name, frame string) {
		frames = append(frames, fuzzcorpus.Seed{Name: name, Args: []any{[]byte(frame)}})
		const pre = `{"frame":"request","id":`
		if !strings.HasPrefix(frame, pre) {
			return
		}
		if _, body, ok := strings.Cut(frame, `"request":`); ok && strings.HasSuffix(body, "}") {
			bodies = append(bodies, fuzzcorpus.Seed{Name: name, Args: []any{[]byte(body[:len(body)-1])}})
		}
	}
	for _, row := range readTSV(t, "testdata/golden-v1.tsv") {
		addFrame("golden-"+strings.ReplaceAll(row[0], "/", "-"), row[1])
	}
	for _, row := range readTSV(t, "testdata/decode-v1.tsv") {
		addFrame("decode-"+row[0]+"-"+row[1], row[2])
	}
	for i, s := range strictSeeds {
		addFrame("strict-"+string(rune('a'+i)), s)
	}
	fuzzcorpus.Check(t, ".", "FuzzDecodeFrame", frames)
	fuzzcorpus.Check(t, ".", "FuzzDecodeRequest", bodies)
	fuzzcorpus.Check(t, ".", "FuzzSplitObject", frames)
}
