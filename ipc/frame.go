package ipc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// MaxFrame is the largest frame body, inclusive.
const MaxFrame = 8 * 1024 * 1024

// firstChunk is the buffer a frame body larger than the caller's buffer
// starts in. It doubles, capped at the declared length, each time it fills:
// a peer that declares 8 MiB and sends 10 bytes costs 4 KiB, not 8 MiB, and
// a body that does arrive costs less than three times its size in
// allocations (the buffers it outgrew, under twice its size, and the last;
// TestReadFrameGrowsAsBytesArrive).
const firstChunk = 4 << 10

// ErrFrameTooLarge is returned for a length prefix above MaxFrame.
var ErrFrameTooLarge = errors.New("ipc: frame too large")

// ReadFrame reads one frame body. buf is reused when large enough;
// otherwise the body is read into a buffer that grows as its bytes arrive,
// never allocated at the declared length up front. The length is checked
// against MaxFrame before anything else. A clean close before the prefix
// returns io.EOF.
func ReadFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, io.EOF
		}
		return nil, err
	}
	n, err := frameLen(hdr[:])
	if err != nil {
		return nil, err
	}
	return readBody(r, buf, n, nil)
}

// frameLen decodes and checks a length prefix.
func frameLen(hdr []byte) (int, error) {
	n := binary.LittleEndian.Uint32(hdr)
	if n > MaxFrame {
		return 0, fmt.Errorf("%w: %d bytes (max %d)", ErrFrameTooLarge, n, MaxFrame)
	}
	return int(n), nil
}

// readBody reads an n-byte body into buf when it is large enough, else into
// a buffer that starts at firstChunk (or buf's capacity) and doubles as the
// bytes come. waiting, when set, is called once the first buffer exists and
// before the first read that may block (a test hook of the server).
func readBody(r io.Reader, buf []byte, n int, waiting func()) ([]byte, error) {
	if cap(buf) < n && cap(buf) < firstChunk {
		buf = make([]byte, 0, min(n, firstChunk))
	}
	buf = buf[:0]
	if waiting != nil {
		waiting()
	}
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(2*cap(buf), n))
			copy(grown, buf)
			buf = grown
		}
		end := min(cap(buf), n)
		m, err := io.ReadFull(r, buf[len(buf):end])
		buf = buf[:len(buf)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("ipc: frame body (%d of %d bytes): %w", len(buf), n, err)
		}
	}
	return buf, nil
}

// WriteFrame writes body with its length prefix; on a net.Conn both go out
// in one writev.
func WriteFrame(w io.Writer, body []byte) error {
	if len(body) > MaxFrame {
		return fmt.Errorf("%w: %d bytes (max %d)", ErrFrameTooLarge, len(body), MaxFrame)
	}
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(body)))
	bufs := net.Buffers{hdr[:], body}
	_, err := bufs.WriteTo(w)
	return err
}
