package smarthost

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestSpoolMonitor(t *testing.T) {
	q := openQueue(t, testConfig(t))
	m := NewSpoolMonitor(q, 0)
	if err := m.Ready(); err == nil {
		t.Error("Ready before the first check: nil, want not checked yet")
	}
	if err := m.Check(); err != nil {
		t.Fatalf("Check on a fresh spool: %v", err)
	}
	if err := m.Ready(); err != nil {
		t.Errorf("Ready after a good check: %v", err)
	}
	if ents, err := os.ReadDir(q.tmpDir); err != nil || len(ents) != 0 {
		t.Errorf("the probe left %d files in tmp (%v)", len(ents), err)
	}

	// Less free space than a message needs.
	big := NewSpoolMonitor(q, 1<<62)
	if err := big.Check(); err == nil || !strings.Contains(err.Error(), "bytes free in "+q.cfg.Dir) {
		t.Errorf("Check with a free-space threshold of 4 EiB: %v", err)
	}
	if err := big.Ready(); err == nil {
		t.Error("Ready after a failed check: nil")
	}

	// Drafts cannot be created: the write probe fails.
	if err := os.Remove(q.tmpDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(q.tmpDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Check(); err == nil || !strings.Contains(err.Error(), "write probe") {
		t.Errorf("Check with tmp a file: %v, want a write probe error", err)
	}
	if err := os.Remove(q.tmpDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(q.tmpDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := m.Check(); err != nil {
		t.Errorf("Check after tmp is back: %v", err)
	}

	// An fsync that failed stops the spool until a restart.
	q.msgSync.mu.Lock()
	q.msgSync.err = errors.New("fsync directory msg: input/output error")
	q.msgSync.mu.Unlock()
	if err := m.Check(); err == nil || !strings.Contains(err.Error(), "input/output error") || !strings.Contains(err.Error(), "restarted") {
		t.Errorf("Check after a failed fsync: %v", err)
	}
	q.msgSync.mu.Lock()
	q.msgSync.err = nil
	q.msgSync.mu.Unlock()
}
