package smarthost

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"time"
)

// idEncoding is base32 with an alphabet in ASCII order, so that ids sort
// like the timestamps they start with, and only lowercase letters and digits
// so they are safe as file names on case-insensitive file systems too.
var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// newID returns a 20-character queue id: 64 bits of nanoseconds since the
// Unix epoch followed by 36 random bits. Collisions are also excluded by
// creating the draft with O_EXCL.
func newID(now time.Time) string {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixNano()))
	// crypto/rand.Read never returns an error since Go 1.24.
	_, _ = rand.Read(b[8:])
	// 12 bytes = 96 bits; base32 needs 100 bits for 20 characters, so the
	// last character carries 1 data bit: fine, ids only need to be unique.
	return idEncoding.EncodeToString(b[:])
}

// validID reports whether name can be a queue id (it guards spool recovery
// against stray files).
func validID(name string) bool {
	if len(name) != 20 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'v') {
			return false
		}
	}
	return true
}
