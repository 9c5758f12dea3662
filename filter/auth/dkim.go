package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxgate/mxgate/filter"
)

// maxHeaderBytes bounds the header section the DKIM verifier reads into
// memory (the same bound as the header filter.Message parses).
const maxHeaderBytes = 1 << 20

// dkimSig is the result of one DKIM signature.
type dkimSig struct {
	Result   authres.ResultValue // pass, fail, temperror or permerror
	Domain   string              // d=, normalised ("" when unreadable)
	Selector string              // s=
	Reason   string              // why it did not pass
}

// dkimOutcome is the DKIM result of one message: one entry per signature
// verified, in header order (none: the message is not signed).
type dkimOutcome struct {
	Sigs []dkimSig
	// Ignored counts the signatures past Config.MaxSignatures, not
	// verified.
	Ignored int
	// Err is a failure to read the spooled message: the check failed.
	Err error
}

// checkDKIM verifies the first MaxSignatures DKIM-Signature fields of the
// spooled message, looking the keys up through the check's resolver.
func (c *Check) checkDKIM(ctx context.Context, msg *filter.Message) dkimOutcome {
	var out dkimOutcome
	fields := msg.Header.Values("DKIM-Signature")
	if len(fields) == 0 && msg.HeaderErr == nil {
		return out
	}
	f, err := msg.Open()
	if err != nil {
		out.Err = err
		return out
	}
	defer f.Close()
	lr := &headerLimitReader{r: f, left: maxHeaderBytes, state: 2}
	verifs, err := dkim.VerifyWithOptions(lr, &dkim.VerifyOptions{
		LookupTXT:        txtFunc(ctx, c.cfg.Resolver),
		MaxVerifications: c.cfg.MaxSignatures,
	})
	if errors.Is(err, dkim.ErrTooManySignatures) {
		err = nil
		if n := len(fields) - len(verifs); n > 0 {
			out.Ignored = n
		}
	}
	if lr.readErr != nil {
		out.Err = fmt.Errorf("read spooled message %s: %w", msg.QueueID, lr.readErr)
		return out
	}
	if err != nil {
		// The verifier could not read a header section: too long, or
		// not ended by an empty line. Each signature the header parser
		// saw is a permerror: it cannot be checked, now or later.
		reason := "unreadable header section"
		if lr.tooLong {
			reason = "header section too long"
		}
		n := min(len(fields), c.cfg.MaxSignatures)
		for i := 0; i < n; i++ {
			d, s := sigTags(fields[i])
			out.Sigs = append(out.Sigs, dkimSig{Result: authres.ResultPermError, Domain: d, Selector: s, Reason: reason})
		}
		out.Ignored = len(fields) - n
		return out
	}
	for i, v := range verifs {
		sig := dkimSig{Domain: normDomain(v.Domain)}
		if len(verifs) <= len(fields) {
			// The verifier and filter.Message read the same fields in
			// the same order; the selector is not in a Verification.
			_, sig.Selector = sigTags(fields[i])
		}
		switch {
		case v.Err == nil:
			sig.Result = authres.ResultPass
		case dkim.IsTempFail(v.Err):
			sig.Result = authres.ResultTempError
		case dkim.IsPermFail(v.Err):
			sig.Result = authres.ResultPermError
		default:
			sig.Result = authres.ResultFail
		}
		if v.Err != nil {
			sig.Reason = strings.TrimPrefix(v.Err.Error(), "dkim: ")
		}
		out.Sigs = append(out.Sigs, sig)
	}
	return out
}

// sigTags returns the d= (normalised) and s= tags of a DKIM-Signature
// field's value, "" for a tag that is missing or unusable.
func sigTags(v string) (d, s string) {
	for _, tag := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(tag, "=")
		if !ok {
			continue
		}
		val = strings.Join(strings.Fields(val), "")
		switch strings.TrimSpace(k) {
		case "d":
			d = normDomain(val)
		case "s":
			s = val
		}
	}
	return d, s
}

// errHeaderTooLong stops the verifier at a header section over
// maxHeaderBytes.
var errHeaderTooLong = errors.New("header section too long")

// headerLimitReader passes a message through, failing once more than left
// bytes went by without the empty line that ends the header section; after
// it, the body passes unbounded (it is hashed as it streams, never held).
// It keeps the first read error of the file apart from the verifier's own
// failures.
type headerLimitReader struct {
	r       io.Reader
	left    int
	state   int // CRLF CRLF matched so far: 0..4; starts at 2 (an empty header)
	inBody  bool
	tooLong bool
	readErr error
}

func (h *headerLimitReader) Read(p []byte) (int, error) {
	if h.tooLong {
		return 0, errHeaderTooLong
	}
	n, err := h.r.Read(p)
	if err != nil && err != io.EOF && h.readErr == nil {
		h.readErr = err
	}
	if h.inBody {
		return n, err
	}
	for i := 0; i < n; i++ {
		c := p[i]
		switch {
		case c == '\r' && h.state%2 == 0:
			h.state++
		case c == '\n' && h.state%2 == 1:
			h.state++
		case c == '\r':
			h.state = 1
		default:
			h.state = 0
		}
		if h.state == 4 {
			h.inBody = true
			return n, err
		}
		h.left--
		if h.left < 0 {
			h.tooLong = true
			return i, errHeaderTooLong
		}
	}
	return n, err
}
