package smarthost

import (
	"bytes"
	"strings"
	"testing"
)

func TestLineFolder(t *testing.T) {
	long := strings.Repeat("a", 2500)
	in := "Subject: " + long + "\r\n\r\nshort\r\n" + long + "\r\n" + strings.Repeat("b", 998) + "\r\n"
	// Any split of the input into writes gives the same output.
	for _, step := range []int{1, 7, 998, 4096} {
		var out bytes.Buffer
		f := newLineFolder(&out, maxOutputLine)
		for off := 0; off < len(in); off += step {
			if _, err := f.Write([]byte(in[off:min(off+step, len(in))])); err != nil {
				t.Fatal(err)
			}
		}
		lines := strings.Split(out.String(), "\r\n")
		for i, l := range lines {
			if len(l) > maxOutputLine {
				t.Fatalf("step %d: line %d has %d octets", step, i, len(l))
			}
		}
		// Unfolding (removing each inserted CRLF SP) gives the input back.
		if got := strings.ReplaceAll(out.String(), "\r\n ", ""); got != strings.ReplaceAll(in, "\r\n ", "") {
			t.Fatalf("step %d: folding changed more than the line breaks", step)
		}
		if !strings.Contains(out.String(), "\r\n"+strings.Repeat("b", 998)+"\r\n") {
			t.Errorf("step %d: a line of exactly 998 octets was folded", step)
		}
	}
}
