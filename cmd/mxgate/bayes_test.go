package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/filter/bayes"
	"github.com/mxgate/mxgate/filter/bayes/redistest"
)

func trainMessage(kind string, i int) string {
	return fmt.Sprintf("From: a%d@%s.example\nSubject: %s message %d\nMessage-ID: <%d@%s.example>\n\nbody of %s message number %d\nFrom the start of a line\n",
		i, kind, kind, i, i, kind, kind, i)
}

// writeCorpora writes 3 messages as a maildir (2 in cur/, 1 in new/), 4 as
// an mbox (one body line quoted as >From), and 2 as a directory of files.
func writeCorpora(t *testing.T, dir, kind string) (maildir, mbox, folder string) {
	t.Helper()
	maildir = filepath.Join(dir, kind+"-maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(maildir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, sub := range []string{"cur", "cur", "new"} {
		if err := os.WriteFile(filepath.Join(maildir, sub, fmt.Sprintf("17000%d.M1P1.host:2,S", i)), []byte(trainMessage(kind, i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var mb strings.Builder
	for i := range 4 {
		fmt.Fprintf(&mb, "From sender@example.org Mon Jan  1 00:00:00 2024\n%s\n", strings.ReplaceAll(trainMessage(kind, 10+i), "\nFrom ", "\n>From "))
	}
	mbox = filepath.Join(dir, kind+".mbox")
	if err := os.WriteFile(mbox, []byte(mb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	folder = filepath.Join(dir, kind+"-folder")
	if err := os.MkdirAll(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := os.WriteFile(filepath.Join(folder, fmt.Sprintf("%d.eml", i)), []byte(trainMessage(kind, 20+i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return maildir, mbox, folder
}

func runBayes(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := bayesCommand(args, &out, &errb); code != 0 {
		t.Fatalf("mxgate bayes %q: exit %d, stderr %s", args, code, errb.String())
	}
	return out.String()
}

func TestBayesTrainBolt(t *testing.T) {
	dir := t.TempDir()
	hamMaildir, hamMbox, hamFolder := writeCorpora(t, dir, "ham")
	spamMaildir, spamMbox, spamFolder := writeCorpora(t, dir, "spam")
	data := filepath.Join(dir, "data")

	for _, c := range []struct {
		ham, spam       string
		wantHam, wantSp int
	}{
		{hamMaildir, spamMaildir, 3, 3},
		{hamMbox, spamMbox, 4, 4},
		{hamFolder, spamFolder, 2, 2},
	} {
		out := runBayes(t, "train", "-data-dir", data, "--ham", c.ham, "--spam", c.spam)
		for _, want := range []string{
			fmt.Sprintf("learnt %d ham from %s\n", c.wantHam, c.ham),
			fmt.Sprintf("learnt %d spam from %s\n", c.wantSp, c.spam),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output %q lacks %q", out, want)
			}
		}
	}
	out := runBayes(t, "train", "-data-dir", data, "--ham", hamFolder)
	if want := filepath.Join(data, bayes.BoltFile) + " now holds 11 ham, 9 spam\n"; !strings.HasSuffix(out, want) {
		t.Errorf("output %q; want it to end with %q", out, want)
	}

	// The store holds what was learnt: the word "body" is in every
	// message of both classes.
	s, err := bayes.OpenBolt(filepath.Join(data, bayes.BoltFile))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	doc, err := bayes.ParseMessage(strings.NewReader(trainMessage("ham", 10)))
	if err != nil {
		t.Fatal(err)
	}
	feats := bayes.Tokenize(doc, bayes.DefaultFeatures)
	_, _, counts, err := s.Lookup(context.Background(), feats)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for i, tok := range bayes.TokenStrings(doc, bayes.DefaultFeatures) {
		if tok == "body" {
			found = true
			if counts[i].Ham != 11 || counts[i].Spam != 9 {
				t.Errorf("word %q: counts %+v, want 11 ham, 9 spam", tok, counts[i])
			}
		}
	}
	if !found {
		t.Error("no token \"body\"")
	}
}

func TestBayesTrainRedis(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	_, hamMbox, _ := writeCorpora(t, dir, "ham")
	spamMaildir, _, _ := writeCorpora(t, dir, "spam")
	out := runBayes(t, "train", "-redis", srv.Addr, "--ham", hamMbox, "--spam", spamMaildir)
	if want := "redis " + srv.Addr + " now holds 4 ham, 3 spam\n"; !strings.HasSuffix(out, want) {
		t.Errorf("output %q; want it to end with %q", out, want)
	}
}

func TestBayesTrainUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"untrain"}, {"train", "-data-dir", t.TempDir()}, {"train", "--ham", "x"}} {
		var out, errb bytes.Buffer
		if code := bayesCommand(args, &out, &errb); code == 0 || errb.Len() == 0 {
			t.Errorf("mxgate bayes %q: exit %d, stderr %q; want an error", args, code, errb.String())
		}
	}
}
