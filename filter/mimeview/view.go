// Package mimeview parses a message once into a bounded, decoded view that
// the body checks read instead of parsing the message themselves: the
// header fields decoded (RFC 2047 encoded-words with their charsets), the
// text parts decoded to UTF-8, HTML parts reduced to their visible text
// with the hidden text they carry set apart, the URLs of the text and the
// HTML, the attachments' names and types, and the names inside zip
// attachments.
//
// Every input is hostile: Parse reads at most Limits.MaxBytes of the
// message, decodes at most Limits.MaxPartBytes of a part and keeps at most
// Limits.MaxTextBytes of text, stops at Limits.MaxParts parts and
// Limits.MaxDepth levels of nesting, and gives up after Limits.Timeout. A
// message over a limit is described on what was read, with Truncated set
// and the limit named in Limits; Parse never fails and never panics on
// malformed input.
package mimeview

import (
	"context"
	"io"
	"time"

	"github.com/emersion/go-message/textproto"
)

// Limits bound what Parse reads, decodes and keeps.
type Limits struct {
	MaxBytes       int64         // bytes of the message read
	MaxHeaderBytes int           // bytes of one header section (the message's or a part's)
	MaxFields      int           // fields kept of one header section
	MaxPartBytes   int           // decoded bytes kept of one text part
	MaxTextBytes   int           // decoded text kept in all, Texts and Hidden together
	MaxParts       int           // MIME entities, the message itself included
	MaxDepth       int           // nesting of multiparts and attached messages
	MaxURLs        int           // distinct URLs kept
	MaxAttachments int           // attachments kept, zip entries included
	MaxZipEntries  int           // names read from one zip's central directory
	MaxZipTail     int           // bytes kept of the end of a zip, where its central directory is
	Timeout        time.Duration // wall-clock time for the whole parse
}

// DefaultLimits are the limits Message.View uses: above the default
// limits.max_message_bytes of the README, so a message the gateway accepts
// is read whole unless it is pathological.
var DefaultLimits = Limits{
	MaxBytes:       40 << 20,
	MaxHeaderBytes: 256 << 10,
	MaxFields:      1000,
	MaxPartBytes:   1 << 20,
	MaxTextBytes:   4 << 20,
	MaxParts:       1000,
	MaxDepth:       20,
	MaxURLs:        1000,
	MaxAttachments: 1000,
	MaxZipEntries:  1000,
	MaxZipTail:     1 << 20,
	Timeout:        10 * time.Second,
}

// Limit names, as listed in View.Limits.
const (
	LimitBytes       = "bytes"
	LimitHeader      = "header"
	LimitPartBytes   = "part_bytes"
	LimitText        = "text"
	LimitParts       = "parts"
	LimitDepth       = "depth"
	LimitURLs        = "urls"
	LimitAttachments = "attachments"
	LimitZip         = "zip"
	LimitTime        = "time"
)

// View is a message as the checks see it. Strings are valid UTF-8.
type View struct {
	// Header is the message's header section as read (raw values).
	Header textproto.Header
	// Subject is the Subject field with its encoded-words decoded.
	Subject string
	// From, ReplyTo, To and Cc are the addresses of those fields, display
	// names decoded. A field that does not parse as an address list
	// gives the addresses found in it, if any.
	From, ReplyTo, To, Cc []Address
	// Words are the RFC 2047 encoded-words of the Subject, From,
	// Reply-To, To and Cc fields.
	Words []EncodedWord

	// Texts are the text/plain and text/html parts, decoded to UTF-8;
	// HTML parts are reduced to their visible text (FromHTML).
	Texts []Text
	// HTMLOnly is set when the message's own text (outside attached
	// messages) comes only from HTML parts.
	HTMLOnly bool
	// Hidden is the text of HTML parts that a reader does not see.
	Hidden []Hidden

	URLs        []URL
	Attachments []Attachment

	Parts    int // MIME entities parsed, the message itself included
	MaxDepth int // deepest nesting reached
	Bytes    int64
	// Truncated is set when a limit was reached: Limits names which.
	Truncated bool
	Limits    []string
	// Errors are what was malformed (bounded, for the log).
	Errors []string
}

// Address is a mailbox of an address field.
type Address struct {
	Name string // display name, decoded
	Addr string // local@domain as written
}

// Domain is the address's domain, lower-cased ("" without one).
func (a Address) Domain() string {
	return domainOf(a.Addr)
}

// EncodedWord is one RFC 2047 encoded-word of a header field.
type EncodedWord struct {
	Field    string // canonical field name: Subject, From...
	Charset  string // lower-cased
	Encoding byte   // 'B' or 'Q'
	// ASCII is set when the word decodes to printable ASCII only: text
	// that needed no encoding.
	ASCII bool
	// Bad is set when the word does not decode (unknown charset, bad
	// base64).
	Bad bool
}

// Text is one text part.
type Text struct {
	Type     string // text/plain or text/html
	Charset  string // as declared, lower-cased
	Content  string // decoded; for HTML the visible text
	FromHTML bool
	// Embedded is set for a part of an attached message (message/rfc822).
	Embedded bool
	// Truncated is set when the part was longer than MaxPartBytes.
	Truncated bool
}

// Hidden is a run of HTML text that a reader does not see.
type Hidden struct {
	// Reason is how it is hidden: one of the Hidden* constants.
	Reason string
	Text   string // the text, cut to 256 bytes
	Len    int    // the whole run's length in bytes
}

// Reasons of Hidden text.
const (
	HiddenDisplayNone = "display:none"
	HiddenVisibility  = "visibility:hidden"
	HiddenOpacity     = "opacity:0"
	HiddenZeroFont    = "font-size:0"
	HiddenTinyFont    = "tiny-font"
	HiddenSameColor   = "same-color"
)

// URL is one distinct URL found in a text or in an HTML attribute.
type URL struct {
	Raw  string // as written (cut to 2 KiB)
	Norm string // normalised: scheme and host lower-cased, host in ASCII (IDNA)
	Host string // lower-cased, ASCII, without the trailing dot
	// FromHTML is set for a URL from an HTML attribute (href, src...).
	FromHTML bool
}

// Attachment is a named part, a part that is not text, or a name inside a
// zip attachment.
type Attachment struct {
	Name string // file name, decoded (RFC 2231, RFC 2047); "" when none is given
	Type string // media type, lower-cased: as declared, or "" for a zip entry
	Size int64  // decoded bytes read (uncompressed size for a zip entry)
	// InZip is the name of the zip attachment holding this entry; empty
	// for a MIME part.
	InZip string
	// Encrypted is set for an encrypted zip entry.
	Encrypted bool
	// Zip is set for a MIME part whose content is a zip archive
	// (whatever its declared type).
	Zip bool
	// Disposition is the Content-Disposition, lower-cased.
	Disposition string
	// Embedded is set for a part of an attached message.
	Embedded bool
}

// Parse reads the message from r into a View under the limits; zero
// fields of limits take DefaultLimits' values. It never fails: what could
// not be read is in the View's Errors and Limits.
func Parse(r io.Reader, limits Limits) *View {
	return ParseContext(context.Background(), r, limits)
}

// ParseContext is Parse that also stops when ctx is done (the View then
// lists LimitTime).
func ParseContext(ctx context.Context, r io.Reader, limits Limits) *View {
	lim := limits.withDefaults()
	if lim.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lim.Timeout)
		defer cancel()
	}
	p := newParser(ctx, r, lim)
	p.run()
	return p.v
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxFields <= 0 {
		l.MaxFields = d.MaxFields
	}
	if l.MaxPartBytes <= 0 {
		l.MaxPartBytes = d.MaxPartBytes
	}
	if l.MaxTextBytes <= 0 {
		l.MaxTextBytes = d.MaxTextBytes
	}
	if l.MaxParts <= 0 {
		l.MaxParts = d.MaxParts
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxURLs <= 0 {
		l.MaxURLs = d.MaxURLs
	}
	if l.MaxAttachments <= 0 {
		l.MaxAttachments = d.MaxAttachments
	}
	if l.MaxZipEntries <= 0 {
		l.MaxZipEntries = d.MaxZipEntries
	}
	if l.MaxZipTail <= 0 {
		l.MaxZipTail = d.MaxZipTail
	}
	if l.Timeout <= 0 {
		l.Timeout = d.Timeout
	}
	return l
}

// TextBytes is the text the view keeps, Texts and Hidden together.
func (v *View) TextBytes() int {
	n := 0
	for _, t := range v.Texts {
		n += len(t.Content)
	}
	for _, h := range v.Hidden {
		n += len(h.Text)
	}
	return n
}
