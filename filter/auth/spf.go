package auth

import (
	"context"
	"errors"
	"net"
	"strings"

	"blitiri.com.ar/go/spf"

	"github.com/mxgate/mxgate/filter"
)

// spfOutcome is the SPF result of one message.
type spfOutcome struct {
	Result spf.Result
	// Domain is the domain checked (the envelope sender's, or the HELO
	// name's for the null sender), normalised; "" when there was none.
	Domain string
	// MailFrom is the envelope sender as the header names it
	// (smtp.mailfrom), Helo the HELO name for the null sender
	// (smtp.helo); one of them is set.
	MailFrom, Helo string
	Reason         string // for temperror and permerror
}

// checkSPF evaluates the SPF record of the envelope sender's domain, or of
// the HELO name when the sender is null (RFC 7208 §2.4), for the client's
// address.
func (c *Check) checkSPF(ctx context.Context, conn *filter.Conn, from string) spfOutcome {
	var out spfOutcome
	helo := normDomain(conn.Helo)
	sender := from
	if from == "" {
		out.Helo = headerValue(conn.Helo, 255)
		out.Domain = helo
		// RFC 7208 §2.4: the null sender is checked as postmaster@helo.
		sender = "postmaster@" + helo
	} else {
		out.Domain = domainOf(from)
		out.MailFrom = from
		local := from[:max(strings.LastIndexByte(from, '@'), 0)]
		if strings.Contains(local, "@") || local == "" {
			// A quoted local part holding "@": the library splits at the
			// first one; only the domain matters.
			local = "postmaster"
		}
		sender = local + "@" + out.Domain
	}
	if out.Domain == "" {
		out.Result = spf.None
		return out
	}
	ip := conn.IP.Unmap()
	if !ip.IsValid() {
		out.Result = spf.None
		return out
	}
	if helo == "" {
		helo = out.Domain
	}
	res, err := spf.CheckHostWithSender(net.IP(ip.AsSlice()), helo, sender,
		spf.WithContext(ctx),
		spf.WithResolver(&spfResolver{r: c.cfg.Resolver, client4: ip.Is4()}))
	out.Result = res
	if (res == spf.TempError || res == spf.PermError) && err != nil {
		out.Reason = spfReason(err)
	}
	return out
}

// spfReason is the reason of a temperror or permerror for the header.
func spfReason(err error) string {
	var de *net.DNSError
	if errors.As(err, &de) {
		return de.Err + " for " + de.Name
	}
	return strings.TrimPrefix(err.Error(), "spf: ")
}
