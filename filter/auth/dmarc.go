package auth

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dmarc"
)

// dmarcPolicy is the DMARC record that applies to a From domain.
type dmarcPolicy struct {
	Record *dmarc.Record
	// Domain is where the record was found: the From domain, or its
	// organisational domain (then sp= applies when present).
	Domain string
	AtOrg  bool
	// Result is set when there is no record to apply: none (no policy),
	// temperror or permerror (a DNS failure, an invalid record).
	Result authres.ResultValue
	Reason string
}

// lookupPolicy finds the DMARC record for the From domain (RFC 7489
// §6.6.3): at _dmarc.<From domain>, and when there is none, at
// _dmarc.<organisational domain>.
func (c *Check) lookupPolicy(ctx context.Context, from string) dmarcPolicy {
	opts := &dmarc.LookupOptions{LookupTXT: txtFunc(ctx, c.cfg.Resolver)}
	try := func(domain string) (dmarcPolicy, bool) {
		rec, err := dmarc.LookupWithOptions(domain, opts)
		switch {
		case err == nil:
			return dmarcPolicy{Record: rec, Domain: domain}, true
		case errors.Is(err, dmarc.ErrNoPolicy):
			return dmarcPolicy{Result: authres.ResultNone}, false
		case dmarc.IsTempFail(err):
			return dmarcPolicy{Result: authres.ResultTempError, Reason: dmarcReason(err)}, true
		default:
			return dmarcPolicy{Result: authres.ResultPermError, Reason: dmarcReason(err)}, true
		}
	}
	p, done := try(from)
	if done {
		return p
	}
	org := orgDomain(from)
	if org == from {
		return p
	}
	p, _ = try(org)
	p.AtOrg = p.Record != nil
	return p
}

func dmarcReason(err error) string {
	return strings.TrimPrefix(err.Error(), "dmarc: ")
}

// dmarcOutcome is the DMARC result of one message.
type dmarcOutcome struct {
	Result authres.ResultValue
	From   string // the From domain; "" when the message has none
	// Policy is what the domain asks for a message that fails: none,
	// quarantine or reject, after sp= and pct= (see policyFor).
	Policy dmarc.Policy
	P, SP  dmarc.Policy // the record's p= and sp=, for the header
	Pct    int          // the record's pct=, 100 when absent
	Reason string
}

// evaluate applies the policy to the SPF and DKIM results (RFC 7489 §4.2):
// pass when SPF passed for a domain aligned with the From domain or a DKIM
// signature of an aligned domain verified. A temperror of an identifier
// that is aligned (one that might have passed) makes the result a
// temperror rather than a fail.
func evaluate(from string, p dmarcPolicy, s spfOutcome, d dkimOutcome) dmarcOutcome {
	out := dmarcOutcome{From: from, Result: p.Result, Reason: p.Reason}
	rec := p.Record
	if rec == nil {
		return out
	}
	out.P, out.SP, out.Pct = rec.Policy, rec.SubdomainPolicy, 100
	if rec.Percent != nil {
		out.Pct = *rec.Percent
	}
	out.Policy = policyFor(rec, p.AtOrg)
	strictDKIM := rec.DKIMAlignment == dmarc.AlignmentStrict
	strictSPF := rec.SPFAlignment == dmarc.AlignmentStrict
	spfAligned := aligned(s.Domain, from, strictSPF)
	temp := false
	if spfAligned {
		switch s.Result {
		case spf.Pass:
			out.Result = authres.ResultPass
			return out
		case spf.TempError:
			temp = true
		}
	}
	for _, sig := range d.Sigs {
		if !aligned(sig.Domain, from, strictDKIM) {
			continue
		}
		switch sig.Result {
		case authres.ResultPass:
			out.Result = authres.ResultPass
			return out
		case authres.ResultTempError:
			temp = true
		}
	}
	if temp {
		out.Result = authres.ResultTempError
		out.Reason = "an aligned identifier could not be checked"
		return out
	}
	out.Result = authres.ResultFail
	return out
}

// policyFor is the policy asked for a failing message: sp= when the record
// is the organisational domain's and has one, p= otherwise (RFC 7489
// §6.6.3). A pct= below 100 is read as DMARCbis reads its replacement, the
// testing flag t=y: the domain owner is trying the policy out, and the next
// milder policy applies to every failing message (reject becomes
// quarantine, quarantine becomes none), rather than a random draw deciding
// which messages are refused.
func policyFor(rec *dmarc.Record, atOrg bool) dmarc.Policy {
	p := rec.Policy
	if atOrg && rec.SubdomainPolicy != "" {
		p = rec.SubdomainPolicy
	}
	if rec.Percent != nil && *rec.Percent < 100 {
		switch p {
		case dmarc.PolicyReject:
			p = dmarc.PolicyQuarantine
		case dmarc.PolicyQuarantine:
			p = dmarc.PolicyNone
		}
	}
	return p
}

// comment is the policy as the header's comment: "p=reject sp=none".
func (o dmarcOutcome) comment() string {
	if o.P == "" {
		return ""
	}
	s := "p=" + string(o.P)
	if o.SP != "" {
		s += " sp=" + string(o.SP)
	}
	if o.Pct != 100 {
		s += " pct=" + strconv.Itoa(o.Pct)
	}
	return s
}
