package cluster

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/mxgate/mxgate/internal/safefile"
)

// LoadSecretKey reads the gossip encryption key from path (see
// ParseSecretKey). The file must not be readable by other users: whoever
// has the key can join the gossip.
func LoadSecretKey(path string) ([]byte, error) {
	b, err := safefile.ReadPrivate(path, "gossip key", 1024)
	if err != nil {
		return nil, err
	}
	key, err := ParseSecretKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// ParseSecretKey decodes a gossip key: base64 (standard encoding) of 16,
// 24 or 32 bytes (AES-128, -192 or -256), what memberlist accepts.
func ParseSecretKey(data []byte) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("the key is %d bytes; want 16, 24 or 32 (mxgate cluster tls-init writes a 32-byte key)", len(key))
}
