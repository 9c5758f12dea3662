package cluster

import (
	"encoding/base64"
	"fmt"
	"os"
	"strings"
)

// LoadSecretKey reads the gossip encryption key: base64 (standard
// encoding) of 16, 24 or 32 bytes (AES-128, -192 or -256), on one line.
// The file must not be readable by other users: whoever has the key can
// join the gossip.
func LoadSecretKey(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %v lets other users read the gossip key; chmod 600", path, fi.Mode().Perm())
	}
	if fi.Size() > 1024 {
		return nil, fmt.Errorf("%s: %d bytes is too long for a gossip key", path, fi.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: not base64: %w", path, err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("%s: the key is %d bytes; want 16, 24 or 32 (mxgate cluster tls-init writes a 32-byte key)", path, len(key))
}
