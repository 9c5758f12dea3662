package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// defaultDataDir holds the spool, the self-signed certificate and the
// node's state.
const defaultDataDir = "/var/lib/mxgate"

// NodeSection names this node and where it keeps its state.
type NodeSection struct {
	Name    string `yaml:"name"`
	DataDir string `yaml:"data_dir"`
}

func (s *NodeSection) setDefaults() { s.DataDir = defaultDataDir }

func (s *NodeSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	if s.Name == "" {
		errs.add("node.name", "required: this node's name in the cluster and the logs")
	}
	if s.DataDir == "" {
		errs.add("node.data_dir", "required: where the spool and state live")
	} else if err := checkDataDir(s.DataDir); err != nil {
		errs.add("node.data_dir", "%v", err)
	}
	return errs
}

// checkDataDir checks that the data directory is a directory this process
// may write in, or can be created: serve makes it if it is missing.
func checkDataDir(dir string) error {
	p := filepath.Clean(dir)
	for {
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			// Walk up to what exists: a file there is the problem.
			parent := filepath.Dir(p)
			if parent == p {
				return fmt.Errorf("%s: cannot be created", dir)
			}
			p = parent
			continue
		}
		if err != nil {
			return err
		}
		if !st.IsDir() {
			if p == filepath.Clean(dir) {
				return fmt.Errorf("%s is a file, not a directory", dir)
			}
			return fmt.Errorf("%s cannot be created: %s is a file, not a directory", dir, p)
		}
		const wOK, xOK = 2, 1 // access(2)
		if err := syscall.Access(p, wOK|xOK); err != nil {
			if p == filepath.Clean(dir) {
				return fmt.Errorf("%s is not writable: %w", dir, err)
			}
			return fmt.Errorf("%s cannot be created in %s: %w", dir, p, err)
		}
		return nil
	}
}
