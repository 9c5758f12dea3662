package safefile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReplacesWholeAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key.pem")
	for _, content := range []string{"first", "second, longer"} {
		if err := Write(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file", len(entries))
	}
	if err := Write(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func TestReadPrivate(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok")
	loose := filepath.Join(dir, "loose")
	big := filepath.Join(dir, "big")
	_ = os.WriteFile(ok, []byte("s3cret\n"), 0o600)
	_ = os.WriteFile(loose, []byte("s3cret\n"), 0o644)
	_ = os.WriteFile(big, make([]byte, 100), 0o600)
	if b, err := ReadPrivate(ok, "token", 64); err != nil || string(b) != "s3cret\n" {
		t.Errorf("ok: %q %v", b, err)
	}
	if _, err := ReadPrivate(loose, "token", 64); err == nil || !strings.Contains(err.Error(), "lets other users read the token") {
		t.Errorf("loose: %v", err)
	}
	if _, err := ReadPrivate(big, "token", 64); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("big: %v", err)
	}
}
