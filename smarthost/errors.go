package smarthost

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"
)

// DeliveryError describes why a delivery to a next hop did not succeed.
// Temporary reports whether the attempt should be retried (RFC 5321 §4.2.1:
// 4yz replies are transient, 5yz permanent).
type DeliveryError struct {
	// Stage is where it failed: "route", "connect", "greeting", "ehlo",
	// "starttls", "mail", "rcpt", "data", "local".
	Stage string
	// Code and Status are the SMTP reply code and enhanced status code
	// (RFC 3463, "4.4.1"), zero/empty if there was no reply.
	Code   int
	Status string
	// Message is the remote reply text or a description of the local failure.
	Message string
	// RemoteMTA is the host name or address of the next hop, if any.
	RemoteMTA string
	// Permanent is set for failures that must not be retried.
	Permanent bool
	// Err is the underlying error, if any.
	Err error
}

func (e *DeliveryError) Error() string {
	var b strings.Builder
	b.WriteString(e.Stage)
	if e.RemoteMTA != "" {
		b.WriteString(" ")
		b.WriteString(e.RemoteMTA)
	}
	b.WriteString(": ")
	if e.Code != 0 {
		fmt.Fprintf(&b, "%d ", e.Code)
		if e.Status != "" {
			b.WriteString(e.Status)
			b.WriteString(" ")
		}
	}
	b.WriteString(e.Message)
	if e.Err != nil && e.Code == 0 {
		if e.Message != "" {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// Temporary reports whether the failure is transient.
func (e *DeliveryError) Temporary() bool { return !e.Permanent }

// isTemporary reports whether err is transient. Unknown errors are
// temporary: deferring wrongly costs a retry, bouncing wrongly loses mail.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) {
		return t.Temporary()
	}
	return true
}

// smtpFailure turns an error from the go-smtp client into a DeliveryError.
func smtpFailure(stage, remote string, err error) *DeliveryError {
	de := &DeliveryError{Stage: stage, RemoteMTA: remote, Err: err}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		de.Code = se.Code
		de.Message = oneLine(se.Message)
		if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
			de.Status = fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		}
		de.Permanent = se.Code >= 500 && se.Code < 600
		return de
	}
	de.Message = "connection failed"
	if stage != "connect" {
		de.Message = "connection lost"
	}
	return de
}

// oneLine folds a multi-line reply into one line of printable ASCII, as
// needed in log lines and in Diagnostic-Code fields (RFC 3464 §2.3.6).
func oneLine(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if r == '\r' || r == '\n' || r == '\t' || r == ' ' {
			space = true
			continue
		}
		if r < 0x20 || r > 0x7e {
			r = '?'
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}
