package e2e

import (
	"bytes"
	"strings"
)

// addedHeaders are the header fields mxgate may add above the message as
// the client sent it, besides its Received header: the virus scanner's
// verdict (README, "Virus scanning"), sender authentication's results and
// the spam verdict (README, "Spam filtering").
var addedHeaders = map[string]bool{"x-virus-scanned": true, "authentication-results": true,
	"x-spam-flag": true, "x-spam-score": true, "x-spam-status": true}

// splitReceived separates what mxgate adds at the top of a delivered
// message (its Received header, folded with continuation lines starting
// with a tab or space, and the fields in addedHeaders) from the rest, which
// must be the message as the client sent it. ok is false if the added
// block holds no Received header starting "Received: from ".
func splitReceived(data []byte) (received, rest []byte, ok bool) {
	pos := 0
	for pos < len(data) {
		// One header field: its first line and continuation lines.
		end := bytes.Index(data[pos:], []byte("\r\n"))
		if end < 0 {
			break
		}
		end += pos + 2
		for end < len(data) && (data[end] == '\t' || data[end] == ' ') {
			j := bytes.Index(data[end:], []byte("\r\n"))
			if j < 0 {
				return nil, data, false
			}
			end += j + 2
		}
		field := data[pos:end]
		name, _, _ := bytes.Cut(field, []byte(":"))
		switch {
		case pos == 0 && !bytes.HasPrefix(field, []byte("Received: from ")):
			// mxgate's trace header comes first (RFC 5321 §4.4).
			return nil, data, false
		case received == nil && bytes.HasPrefix(field, []byte("Received: from ")):
			received = field
		case addedHeaders[strings.ToLower(string(name))]:
		default:
			return received, data[pos:], received != nil
		}
		pos = end
	}
	return received, data[pos:], received != nil
}
