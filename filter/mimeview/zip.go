package mimeview

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"strings"
)

// zipSink counts an attachment's decoded bytes and, when they start as a
// zip archive does, keeps the last max bytes (up to twice that while
// reading): the central directory, at the end of the archive, is all that
// is read of it.
type zipSink struct {
	n       int64
	max     int
	head    []byte
	decided bool
	isZip   bool
	tail    []byte
}

var (
	zipLocal = []byte("PK\x03\x04")
	zipEmpty = []byte("PK\x05\x06")
)

func (s *zipSink) Write(b []byte) (int, error) {
	s.n += int64(len(b))
	if !s.decided {
		need := 4 - len(s.head)
		s.head = append(s.head, b[:min(need, len(b))]...)
		if len(s.head) == 4 {
			s.decided = true
			s.isZip = bytes.Equal(s.head, zipLocal) || bytes.Equal(s.head, zipEmpty)
		}
	}
	if s.isZip || !s.decided {
		s.tail = append(s.tail, b...)
		if len(s.tail) > 2*s.max {
			n := copy(s.tail, s.tail[len(s.tail)-s.max:])
			s.tail = s.tail[:n]
		}
	}
	if s.decided && !s.isZip {
		s.tail = nil
	}
	return len(b), nil
}

// tailReader is the archive's bytes for archive/zip: only its tail is
// there; reading before it fails.
type tailReader struct {
	tail []byte
	off  int64 // offset of tail[0] in the archive
}

var errBeforeTail = errors.New("zip: central directory is not within the bytes kept")

func (t *tailReader) ReadAt(p []byte, off int64) (int, error) {
	if off < t.off {
		return 0, errBeforeTail
	}
	i := off - t.off
	if i >= int64(len(t.tail)) {
		return 0, io.EOF
	}
	n := copy(p, t.tail[i:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// zipEntries lists the names of the zip's central directory as
// attachments of the zip named name.
func (p *parser) zipEntries(s *zipSink, name string, embedded bool) {
	size := s.n
	tr := &tailReader{tail: s.tail, off: size - int64(len(s.tail))}
	zr, err := zip.NewReader(tr, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		if errors.Is(err, errBeforeTail) {
			p.limit(LimitZip)
		}
		p.errorf("zip %.60q: %v", name, err)
		return
	}
	if zr == nil {
		return
	}
	if name == "" {
		name = "(zip)"
	}
	for i, f := range zr.File {
		if i >= p.lim.MaxZipEntries {
			p.limit(LimitZip)
			break
		}
		n := f.Name
		if !isValidUTF8(n) {
			n = strings.ToValidUTF8(n, "\uFFFD")
		}
		if len(n) > 512 {
			n = cutUTF8(n, 512)
		}
		if p.addAttachment(Attachment{
			Name:      n,
			Size:      int64(min(f.UncompressedSize64, 1<<62)),
			InZip:     name,
			Encrypted: f.Flags&1 != 0,
			Embedded:  embedded,
		}) < 0 {
			break
		}
	}
}

func isValidUTF8(s string) bool { return strings.ToValidUTF8(s, "") == s }
