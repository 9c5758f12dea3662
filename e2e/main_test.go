package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// mxgateBin is the binary under test: $MXGATE_BIN, or one built by TestMain.
var mxgateBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if bin := os.Getenv("MXGATE_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: MXGATE_BIN=%s: %v\n", bin, err)
			return 1
		}
		if _, err := os.Stat(abs); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: MXGATE_BIN=%s: %v (run make build)\n", bin, err)
			return 1
		}
		mxgateBin = abs
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "mxgate-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	mxgateBin = filepath.Join(dir, "mxgate")
	build := exec.Command("go", "build", "-o", mxgateBin, "github.com/mxgate/mxgate/cmd/mxgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building mxgate: %v\n", err)
		return 1
	}
	return m.Run()
}
