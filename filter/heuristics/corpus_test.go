package heuristics

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/filter/clamav/clamdtest"
	"github.com/mxgate/mxgate/filter/mimeview"
)

// corpusStats are the heuristics' totals over one tarball.
type corpusStats struct {
	messages, atLeast1, atLeast3, atLeast5 int
	hits                                   map[string]int
	worst                                  []string
}

// scoreCorpus evaluates every message of a tarball of the SpamAssassin
// corpus; the envelope sender is taken from Return-Path.
func scoreCorpus(t *testing.T, name string) corpusStats {
	t.Helper()
	f, err := os.Open(clamdtest.Testdata(t, "spamassassin", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	st := corpusStats{hits: map[string]int{}}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(io.LimitReader(tr, 4<<20))
		if err != nil {
			t.Fatal(err)
		}
		v := mimeview.Parse(bytes.NewReader(data), mimeview.Limits{})
		env := strings.Trim(strings.TrimSpace(v.Header.Get("Return-Path")), "<>")
		syms := Evaluate(v, env)
		score := 0.0
		var names []string
		for _, s := range syms {
			score += s.Score
			st.hits[s.Name]++
			names = append(names, s.Name)
		}
		st.messages++
		if score >= 1 {
			st.atLeast1++
		}
		if score >= 3 {
			st.atLeast3++
		}
		if score >= 5 {
			st.atLeast5++
			if len(st.worst) < 10 {
				st.worst = append(st.worst, hdr.Name+": "+strings.Join(names, " "))
			}
		}
	}
	return st
}

func (st corpusStats) hitList() string {
	var names []string
	for n := range st.hits {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return st.hits[names[i]] > st.hits[names[j]] })
	var b strings.Builder
	for _, n := range names {
		b.WriteString(" " + n + "=" + itoa(st.hits[n]))
	}
	return b.String()
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}

// TestCorpus measures the heuristics alone on the SpamAssassin corpus:
// ham must (nearly) never reach the tag level (5) by them, and their
// scores must lean towards spam.
func TestCorpus(t *testing.T) {
	ham := scoreCorpus(t, "ham.tar.gz")
	spam := scoreCorpus(t, "spam.tar.gz")
	t.Logf("ham:  %d messages; heuristics score >= 1: %d, >= 3: %d, >= 5: %d", ham.messages, ham.atLeast1, ham.atLeast3, ham.atLeast5)
	t.Logf("spam: %d messages; heuristics score >= 1: %d, >= 3: %d, >= 5: %d", spam.messages, spam.atLeast1, spam.atLeast3, spam.atLeast5)
	t.Logf("ham hits: %s", ham.hitList())
	t.Logf("spam hits:%s", spam.hitList())
	for _, w := range ham.worst {
		t.Logf("ham >= 5: %s", w)
	}
	if ham.messages != 2500 || spam.messages != 500 {
		t.Fatalf("read %d ham and %d spam, want 2500 and 500", ham.messages, spam.messages)
	}
	if ham.atLeast5 > 2 {
		t.Errorf("%d ham messages reach 5 on heuristics alone (at most 2 allowed)", ham.atLeast5)
	}
	// The heuristics are hints for the other checks to add to: they must
	// lean towards spam, five times as often on spam as on ham at 1 and
	// above.
	if hamRate, spamRate := float64(ham.atLeast1)/float64(ham.messages), float64(spam.atLeast1)/float64(spam.messages); spamRate < 5*hamRate {
		t.Errorf("score >= 1 on %.1f%% of spam and %.1f%% of ham: want spam at least 5 times as often", 100*spamRate, 100*hamRate)
	}
}
