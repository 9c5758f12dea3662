// Package safefile writes files so that a crash leaves the old or the new
// content, never a torn one, and reads secrets only from files other users
// cannot read.
package safefile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write writes data to a temporary file in path's directory with mode
// perm, fsyncs it, renames it over path and fsyncs the directory, so that
// the rename itself survives a crash. A reader never sees a partial file,
// and the temporary file is 0600 from its creation, so a key is never
// readable by others, even briefly.
func Write(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: open directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

// ReadPrivate reads a secret of at most maxBytes from path, refusing a
// file that group or others may read: whoever can read it holds the
// secret. what names the secret in errors ("gossip key", "admin token").
func ReadPrivate(path, what string, maxBytes int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %v lets other users read the %s; chmod 600", path, fi.Mode().Perm(), what)
	}
	if fi.Size() > maxBytes {
		return nil, fmt.Errorf("%s: %d bytes is too long for a %s", path, fi.Size(), what)
	}
	return os.ReadFile(path)
}
