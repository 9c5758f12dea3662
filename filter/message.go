package filter

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/emersion/go-message/textproto"

	"github.com/mxgate/mxgate/filter/mimeview"
)

// maxHeaderBytes bounds the header section read for the checks; a message
// whose header goes on longer is judged on what was read.
const maxHeaderBytes = 1 << 20

// Message is a spooled message as the body checks see it: the header parsed
// once, and the file, which each check reads for itself. The body is never
// copied into memory here.
type Message struct {
	QueueID string
	Path    string // the client's bytes as stored, without the headers mxgate adds
	Size    int64
	Header  textproto.Header
	// HeaderErr is set when the header section could not be parsed
	// whole (malformed, or over maxHeaderBytes); Header then holds what
	// was read.
	HeaderErr error

	viewOnce sync.Once
	view     *mimeview.View
}

// OpenMessage reads the header of the spooled file at path.
func OpenMessage(queueID, path string) (*Message, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open spooled message %s: %w", queueID, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat spooled message %s: %w", queueID, err)
	}
	m := &Message{QueueID: queueID, Path: path, Size: st.Size()}
	h, herr := textproto.ReadHeader(bufio.NewReader(io.LimitReader(f, maxHeaderBytes)))
	m.Header = h
	if herr != nil {
		m.HeaderErr = fmt.Errorf("parse header of %s: %w", queueID, herr)
	}
	return m, nil
}

// Open returns a reader of the whole message, from its first byte; the
// caller closes it.
func (m *Message) Open() (io.ReadCloser, error) {
	f, err := os.Open(m.Path)
	if err != nil {
		return nil, fmt.Errorf("open spooled message %s: %w", m.QueueID, err)
	}
	return f, nil
}

// View returns the message parsed into a bounded view (decoded header
// fields, text, hidden HTML text, URLs, attachments), parsed on the first
// call under mimeview.DefaultLimits and shared by every check after it.
func (m *Message) View() *mimeview.View {
	m.viewOnce.Do(func() {
		f, err := m.Open()
		if err != nil {
			m.view = &mimeview.View{Errors: []string{err.Error()}}
			return
		}
		defer f.Close()
		m.view = mimeview.Parse(f, mimeview.DefaultLimits)
	})
	return m.view
}
