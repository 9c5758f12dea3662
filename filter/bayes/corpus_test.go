package bayes

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWalkMessagesMbox(t *testing.T) {
	mbox := "From a@example.org Mon Jan  1 00:00:00 2024\n" +
		"Subject: one\n\nline\n>From here, quoted\n>>From twice\nFrom inside a paragraph is no separator\n\n" +
		"From b@example.org Mon Jan  1 00:00:01 2024\n" +
		"Subject: two\n\nlast\n"
	p := filepath.Join(t.TempDir(), "box")
	if err := os.WriteFile(p, []byte(mbox), 0o600); err != nil {
		t.Fatal(err)
	}
	var names, msgs []string
	err := WalkMessages(p, func(name string, msg []byte) error {
		names, msgs = append(names, name), append(msgs, string(msg))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Subject: one\n\nline\nFrom here, quoted\n>From twice\nFrom inside a paragraph is no separator\n",
		"Subject: two\n\nlast\n",
	}
	if !slices.Equal(msgs, want) {
		t.Errorf("messages %q, want %q", msgs, want)
	}
	if !slices.Equal(names, []string{p + "#1", p + "#2"}) {
		t.Errorf("names %q", names)
	}
}

func TestWalkMessagesMaildir(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"cur/1:2,S", "new/2", "tmp/3", "cur/.hidden"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("Subject: "+f+"\n\nx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	if err := WalkMessages(dir, func(name string, msg []byte) error {
		names = append(names, filepath.Base(name))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// tmp/ holds deliveries in progress and dot files are not messages.
	if !slices.Equal(names, []string{"1:2,S", "2"}) {
		t.Errorf("maildir messages %q, want cur/1:2,S and new/2", names)
	}
}
