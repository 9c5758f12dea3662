package mimeview

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
)

// lineBufSize is the longest line handled as one: a longer line comes in
// pieces, none of which can be a boundary or a header line start.
const lineBufSize = 64 << 10

// errTimeout ends the input when the parse's context is done.
var errTimeout = errors.New("mimeview: parse timed out")

// source is the message's bytes, counted and cut at MaxBytes: it reports
// end of input at the cap (and one byte past it tells the message was
// longer), and fails when the context is done.
type source struct {
	ctx      context.Context
	r        io.Reader
	n, max   int64
	over     bool // more than max bytes were offered
	timedOut bool
	probe    [1]byte
}

func (s *source) Read(p []byte) (int, error) {
	if s.ctx.Err() != nil {
		s.timedOut = true
		return 0, errTimeout
	}
	left := s.max - s.n
	if left <= 0 {
		if !s.over {
			if n, _ := io.ReadFull(s.r, s.probe[:]); n > 0 {
				s.over = true
			}
		}
		return 0, io.EOF
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	return n, err
}

// lineReader hands out the input line by line: a whole line with its line
// ending, or a piece of a line longer than lineBufSize.
type lineReader struct {
	br  *bufio.Reader
	mid bool // the last piece did not end its line
	err error
	// back is a line given back by unread, returned by the next call.
	back      []byte
	backStart bool
	hasBack   bool
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, lineBufSize)}
}

// next returns the next line or piece of a line, and whether it starts a
// line. The slice is valid until the next call. At the end of the input
// it returns the error (io.EOF, or the source's).
func (l *lineReader) next() (chunk []byte, start bool, err error) {
	if l.hasBack {
		l.hasBack = false
		return l.back, l.backStart, nil
	}
	if l.err != nil {
		return nil, false, l.err
	}
	start = !l.mid
	chunk, err = l.br.ReadSlice('\n')
	switch {
	case err == nil:
		l.mid = false
	case errors.Is(err, bufio.ErrBufferFull):
		l.mid = true
		err = nil
	default:
		l.err = err
		l.mid = false
		if len(chunk) > 0 {
			err = nil
		}
	}
	if err != nil {
		return nil, false, err
	}
	return chunk, start, nil
}

// unread gives a piece back, copied, for the next call of next.
func (l *lineReader) unread(chunk []byte, start bool) {
	l.back = append(l.back[:0], chunk...)
	l.backStart = start
	l.hasBack = true
}

// trimEOL strips the line ending.
func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// eolOf is the line ending of b, nil when it has none.
func eolOf(b []byte) []byte {
	n := len(b)
	switch {
	case n >= 2 && b[n-2] == '\r' && b[n-1] == '\n':
		return crlf
	case n >= 1 && b[n-1] == '\n':
		return lf
	}
	return nil
}

var (
	crlf = []byte("\r\n")
	lf   = []byte("\n")
)

// end is how an entity's body ended: at a boundary line of the stack
// (idx, final for "--boundary--"), or at the end of the input (idx -1).
type end struct {
	idx   int
	final bool
}

var endOfInput = end{idx: -1}

// boundaryOf tells whether line is a delimiter line of one of the active
// boundaries, the innermost first.
func boundaryOf(bounds [][]byte, line []byte) (end, bool) {
	if len(bounds) == 0 || len(line) < 3 || line[0] != '-' || line[1] != '-' {
		return end{}, false
	}
	body := bytes.TrimRight(line[2:], " \t\r\n")
	for i := len(bounds) - 1; i >= 0; i-- {
		b := bounds[i]
		if !bytes.HasPrefix(body, b) {
			continue
		}
		switch rest := body[len(b):]; string(rest) {
		case "":
			return end{idx: i}, true
		case "--":
			return end{idx: i, final: true}, true
		}
	}
	return end{}, false
}

// bodyReader reads an entity's body: the lines up to the next boundary
// line of the stack, the line ending before that boundary excluded (it
// belongs to the boundary, RFC 2046 §5.1.1).
type bodyReader struct {
	lr     *lineReader
	bounds [][]byte
	pre    []byte // the held-back line ending of the previous line
	data   []byte
	eol    []byte // this line's ending, held back
	done   bool
	end    end
	err    error // a read error other than the end of input
}

func (b *bodyReader) Read(out []byte) (int, error) {
	for len(b.pre) == 0 && len(b.data) == 0 {
		if b.done {
			return 0, io.EOF
		}
		chunk, start, err := b.lr.next()
		if err != nil {
			b.done, b.end = true, endOfInput
			if !errors.Is(err, io.EOF) {
				b.err = err
			}
			return 0, io.EOF
		}
		if start {
			if e, ok := boundaryOf(b.bounds, chunk); ok {
				b.done, b.end = true, e
				return 0, io.EOF
			}
		}
		b.pre = b.eol
		b.eol = eolOf(chunk)
		b.data = chunk[:len(chunk)-len(b.eol)]
	}
	n := copy(out, b.pre)
	b.pre = b.pre[n:]
	if len(b.pre) > 0 {
		return n, nil
	}
	m := copy(out[n:], b.data)
	b.data = b.data[m:]
	return n + m, nil
}

// drain reads the rest of the body and returns how it ended.
func (b *bodyReader) drain() end {
	var buf [4096]byte
	for {
		if _, err := b.Read(buf[:]); err != nil {
			return b.end
		}
	}
}
