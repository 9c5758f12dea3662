package quarantine

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Size bounds of a body.
const (
	// MaxMessageBytes bounds the message read for one Put, well above
	// any limits.max_message_bytes plus mxgate's headers.
	MaxMessageBytes = 256 << 20
	// MaxStoredBytes bounds a compressed body: it travels as one
	// cluster command, whose forwarding limit is 64 MiB.
	MaxStoredBytes = 60 << 20
	// maxDecoderMemory bounds what decompressing one body may allocate.
	maxDecoderMemory = 512 << 20
)

// Encoders are pooled: each holds its window and tables.
var encoders = sync.Pool{New: func() any {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(4<<20),
		zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		panic("quarantine: zstd encoder: " + err.Error()) // only for invalid options
	}
	return enc
}}

// Compress reads the whole message from r and returns it compressed with
// zstd, with its size. A message over MaxMessageBytes, or whose compressed
// form is over MaxStoredBytes, is ErrTooLarge.
func Compress(r io.Reader) (body []byte, size int64, err error) {
	var buf bytes.Buffer
	enc := encoders.Get().(*zstd.Encoder)
	defer encoders.Put(enc)
	enc.Reset(&buf)
	size, err = io.Copy(enc, io.LimitReader(r, MaxMessageBytes+1))
	if cerr := enc.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
		return nil, 0, fmt.Errorf("quarantine: compressing: %w", err)
	case size > MaxMessageBytes:
		return nil, 0, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, MaxMessageBytes)
	case buf.Len() > MaxStoredBytes:
		return nil, 0, fmt.Errorf("%w: %d bytes compressed, %d at most", ErrTooLarge, buf.Len(), MaxStoredBytes)
	}
	return buf.Bytes(), size, nil
}

// Decompress returns a reader of the message in a compressed body.
func Decompress(body []byte) (io.ReadCloser, error) {
	dec, err := zstd.NewReader(bytes.NewReader(body), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(maxDecoderMemory), zstd.WithDecoderMaxWindow(64<<20))
	if err != nil {
		return nil, fmt.Errorf("quarantine: decompressing: %w", err)
	}
	return dec.IOReadCloser(), nil
}
