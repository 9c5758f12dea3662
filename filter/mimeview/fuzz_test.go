package mimeview

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxgate/mxgate/filter/clamav/clamdtest"
)

// fuzzLimits are small, so that the fuzzer reaches every limit.
var fuzzLimits = Limits{
	MaxBytes: 64 << 10, MaxHeaderBytes: 2048, MaxFields: 50, MaxPartBytes: 4096, MaxTextBytes: 8192,
	MaxParts: 50, MaxDepth: 5, MaxURLs: 20, MaxAttachments: 20, MaxZipEntries: 10, MaxZipTail: 4096,
	Timeout: 5 * time.Second,
}

// FuzzView: any input parses without a panic, within the limits: what the
// view keeps (text, URLs, attachments, parts, depth) never exceeds them.
func FuzzView(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(clamdtest.Testdata(f, "mime", "malformed"), "*.eml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(hiddenHTML))
	f.Fuzz(func(t *testing.T, data []byte) {
		v := Parse(bytes.NewReader(data), fuzzLimits)
		checkBounds(t, v, fuzzLimits)
	})
}
