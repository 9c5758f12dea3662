package greylist

import (
	"context"
	"log/slog"
	"strings"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/auth"
)

// CheckName is the greylist check's name in the pipeline.
const CheckName = "greylist"

// ReasonGreylisted is the mxgate_messages_total label of a greylisted
// recipient.
const ReasonGreylisted = "greylisted"

// Check is greylisting as a recipient check of the filter pipeline. Trusted
// clients (mynetworks) are never greylisted. A bounce (the null sender) is
// decided at the end of DATA, for every recipient at once, rather than at
// RCPT: a bounce has no sender to key the triplet on, and the whole
// recipient set is known then.
type Check struct {
	Greylister *Greylister
	Logger     *slog.Logger
	// ScoreThreshold, when above 0, is greylist.mode: score: only mail
	// whose spam score reaches it is greylisted, decided at the end of
	// DATA once the score is known (as rspamd's greylist action).
	ScoreThreshold float64
	// KeySPFDomain, with ScoreThreshold, keys the triplet of a sender
	// whose SPF passed (the SPF_PASS symbol of the sender authentication
	// check, among the body decision's symbols) by its SPF-validated
	// domain instead of its client network (greylist.key_spf_domain).
	KeySPFDomain bool
}

// Name is the check's name.
func (c *Check) Name() string { return CheckName }

var greylistedReply = &filter.Reply{Code: 451, Enhanced: [3]int{4, 7, 1}, Text: "greylisted, try again later"}

// CheckRcpt decides one recipient.
func (c *Check) CheckRcpt(ctx context.Context, r *filter.Recipient) filter.Result {
	if r.Conn.Trusted {
		return filter.Result{}
	}
	if !r.AtData {
		switch {
		case c.ScoreThreshold > 0:
			return filter.Result{DeferAfterScore: true}
		case r.From == "":
			return filter.Result{Defer: true}
		}
	}
	if r.Scored && r.Score < c.ScoreThreshold {
		return filter.Result{} // scores too low to be worth a delay
	}
	var d Decision
	spfDomain := ""
	if c.KeySPFDomain && r.Scored {
		spfDomain = spfPassDomain(r.Symbols)
	}
	if spfDomain != "" {
		d = c.Greylister.CheckSPFDomain(ctx, r.Conn.IP, spfDomain, r.From, r.Rcpt)
	} else {
		d = c.Greylister.Check(ctx, r.Conn.IP, r.From, r.Rcpt)
	}
	if d.Err != nil {
		// The store failed (no quorum in a cluster): the recipient
		// passes, the metric counts it, the log says which mail.
		c.Logger.Warn("greylisting failed open", "event", "greylist_fail_open", "session", r.Conn.ID, "client_ip", r.Conn.IP.String(),
			"from", r.From, "rcpt", r.Rcpt, "greylist", string(d.Result), "error", d.Err.Error())
	}
	if d.Pass {
		return filter.Result{}
	}
	attrs := []any{"greylist", string(d.Result)}
	if spfDomain != "" {
		attrs = append(attrs, "greylist_key", SPFDomainKey(spfDomain))
	}
	if !r.AtData {
		attrs = append(attrs, "retry_in_s", int(d.Retry.Seconds()))
	}
	return filter.Result{Action: filter.Tempfail, Reason: ReasonGreylisted, Reply: greylistedReply, LogAttrs: attrs}
}

// spfPassDomain is the domain SPF passed for, from the SPF_PASS symbol's
// detail; "" when SPF did not pass or the domain is not one a key can hold.
func spfPassDomain(syms []filter.Symbol) string {
	for _, s := range syms {
		if s.Name != auth.SymSPFPass {
			continue
		}
		d := strings.TrimSuffix(s.Detail, ".")
		if d == "" || len(d) > 253 || strings.ContainsAny(d, "|@ \t\r\n") {
			return ""
		}
		return d
	}
	return ""
}
