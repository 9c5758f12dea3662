package bayes

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// MaxCorpusMessageBytes bounds one message read from a corpus; the parser
// reads at most MaxParseBytes of it anyway.
const MaxCorpusMessageBytes = 32 << 20

// WalkMessages calls fn for every message under path, which is a maildir
// (a directory with cur/ or new/), an mbox file (messages after "From "
// lines), or a directory of files each holding one message (or an mbox).
// Names are file paths, with "#N" for the Nth message of an mbox.
func WalkMessages(path string, fn func(name string, msg []byte) error) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	if !st.IsDir() {
		return walkFile(path, fn)
	}
	dirs := []string{path}
	if isDir(filepath.Join(path, "cur")) || isDir(filepath.Join(path, "new")) {
		dirs = []string{filepath.Join(path, "cur"), filepath.Join(path, "new")}
	}
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return fmt.Errorf("corpus: %w", err)
		}
		sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
		for _, e := range ents {
			if !e.Type().IsRegular() || e.Name()[0] == '.' {
				continue
			}
			if err := walkFile(filepath.Join(d, e.Name()), fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// walkFile reads one file: an mbox if it starts with a From_ line, else one
// message.
func walkFile(path string, fn func(string, []byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(5)
	if string(head) != "From " {
		b, err := io.ReadAll(io.LimitReader(br, MaxCorpusMessageBytes))
		if err != nil {
			return fmt.Errorf("corpus: read %s: %w", path, err)
		}
		return fn(path, b)
	}
	return splitMbox(path, br, fn)
}

// splitMbox splits an mbox on From_ lines that start the file or follow an
// empty line, and undoes the ">From " quoting of mboxrd.
func splitMbox(path string, br *bufio.Reader, fn func(string, []byte) error) error {
	var msg bytes.Buffer
	n := 0
	prevEmpty := true
	started := false
	flush := func() error {
		if !started {
			return nil
		}
		n++
		b := msg.Bytes()
		// The empty line before the next From_ line belongs to the
		// mbox, not the message.
		if bytes.HasSuffix(b, []byte("\r\n\r\n")) {
			b = b[:len(b)-2]
		} else if bytes.HasSuffix(b, []byte("\n\n")) {
			b = b[:len(b)-1]
		}
		err := fn(fmt.Sprintf("%s#%d", path, n), b)
		msg.Reset()
		return err
	}
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			switch {
			case prevEmpty && bytes.HasPrefix(line, []byte("From ")):
				if ferr := flush(); ferr != nil {
					return ferr
				}
				started = true
			case started:
				if q := bytes.TrimLeft(line, ">"); len(q) < len(line) && bytes.HasPrefix(q, []byte("From ")) {
					line = line[1:]
				}
				if msg.Len()+len(line) <= MaxCorpusMessageBytes {
					msg.Write(line)
				}
			}
			prevEmpty = len(bytes.TrimRight(line, "\r\n")) == 0
		}
		if err == io.EOF {
			return flush()
		}
		if err != nil {
			return fmt.Errorf("corpus: read %s: %w", path, err)
		}
	}
}
