package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// corpusMsg is one message of testdata/spamassassin, spooled to a file as
// the gateway stores a message: CRLF line ends, no mbox From_ line.
type corpusMsg struct {
	path string
	spam bool
	from string // the envelope sender: the From field's address ("" if none)
}

// corpus is the SpamAssassin corpus extracted into dir/ham and dir/spam
// (one message per file), the form both `mxgate bayes train` and rspamd's
// controller learn from.
type corpus struct {
	dir  string
	msgs []corpusMsg
}

func (c *corpus) classDir(spam bool) string {
	return filepath.Join(c.dir, map[bool]string{false: "ham", true: "spam"}[spam])
}

// loadCorpus extracts ham.tar.gz and spam.tar.gz from
// testdata/spamassassin into a new temporary directory.
func loadCorpus() (*corpus, error) {
	src, err := testdataDir("spamassassin")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mxgate-bench-corpus-")
	if err != nil {
		return nil, err
	}
	// The rspamd user reads nothing here (the bench posts the messages),
	// but mxgate bayes train runs as us.
	c := &corpus{dir: dir}
	for _, spam := range []bool{false, true} {
		if err := os.Mkdir(c.classDir(spam), 0o755); err != nil {
			return nil, err
		}
		name := map[bool]string{false: "ham.tar.gz", true: "spam.tar.gz"}[spam]
		if err := c.extract(filepath.Join(src, name), spam); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	sort.Slice(c.msgs, func(i, j int) bool { return c.msgs[i].path < c.msgs[j].path })
	return c, nil
}

func (c *corpus) extract(path string, spam bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("corpus %s: %w", path, err)
	}
	tr := tar.NewReader(gz)
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("corpus %s: %w", path, err)
		}
		if h.Typeflag != tar.TypeReg || strings.HasPrefix(filepath.Base(h.Name), "cmds") {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, 8<<20))
		if err != nil {
			return fmt.Errorf("corpus %s: %s: %w", path, h.Name, err)
		}
		b = spoolForm(b)
		p := filepath.Join(c.classDir(spam), fmt.Sprintf("%05d.eml", n))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		c.msgs = append(c.msgs, corpusMsg{path: p, spam: spam, from: fromAddress(b)})
	}
}

// spoolForm drops the mbox From_ line and makes every line end in CRLF.
func spoolForm(b []byte) []byte {
	if bytes.HasPrefix(b, []byte("From ")) {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// fromAddress is the address in the header's From field, the envelope
// sender the bench gives both filters ("" when there is none).
func fromAddress(b []byte) string {
	hdr, _, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	for _, line := range strings.Split(string(hdr), "\r\n") {
		v, ok := strings.CutPrefix(strings.ToLower(line), "from:")
		if !ok {
			continue
		}
		if i := strings.LastIndexByte(v, '<'); i >= 0 {
			v = v[i+1:]
			if j := strings.IndexByte(v, '>'); j >= 0 {
				v = v[:j]
			}
		} else if f := strings.Fields(v); len(f) > 0 {
			v = f[0]
		}
		if v = strings.TrimSpace(v); strings.Count(v, "@") == 1 && !strings.ContainsAny(v, " \t\"(),;") {
			return v
		}
		return ""
	}
	return ""
}

func (c *corpus) remove() { os.RemoveAll(c.dir) }
