// Package logtest reads mxgate's JSON mail log in tests: a buffer that
// many goroutines may write the log into, and the lines that carry given
// key=value pairs.
package logtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
)

// Buffer collects a log written from many goroutines.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns a copy of what was written.
func (b *Buffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *Buffer) String() string { return string(b.Bytes()) }

// Parse returns the JSON objects of a log, one a line; other lines (a
// panic's trace, a line cut short) are skipped.
func Parse(log []byte) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var ev map[string]any
		if json.Unmarshal(line, &ev) == nil {
			out = append(out, ev)
		}
	}
	return out
}

// Find returns the events with every given key=value, values compared as
// fmt.Sprint prints them ("queue_id", id, "event", "deliver").
func Find(events []map[string]any, kv ...string) []map[string]any {
	var out []map[string]any
	for _, ev := range events {
		match := true
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(ev[kv[i]]) != kv[i+1] {
				match = false
				break
			}
		}
		if match {
			out = append(out, ev)
		}
	}
	return out
}
