package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dmarc"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/internal/dns"
)

// CheckName is the check's name in the pipeline's metrics and symbols.
const CheckName = "auth"

// ReasonDMARCReject is the mxgate_messages_total label of a message refused
// because its From domain's DMARC policy is reject.
const ReasonDMARCReject = "dmarc_reject"

// Defaults for Config fields left zero.
const (
	// DefaultMaxSignatures bounds the DKIM signatures verified per
	// message: a message rarely carries more than two or three (the
	// author's domain, its ESP, a mailing list), and each costs a DNS
	// lookup and a pass over the body.
	DefaultMaxSignatures = 5
	// DefaultTimeout bounds the DNS work of one message; RFC 7208 §4.6.4
	// asks SPF to allow at least 20 seconds. Lookups still running then
	// are temperrors.
	DefaultTimeout = 20 * time.Second
)

// Config configures the check.
type Config struct {
	// Resolver answers every DNS question (required).
	Resolver dns.Resolver
	// Hostname is the node's name, the authserv-id of the header
	// (required; the gateway removes incoming Authentication-Results
	// fields that claim it).
	Hostname string
	// DMARCRejectAsScore scores a DMARC failure under p=reject
	// (DMARC_FAIL_REJECT) instead of refusing the message.
	DMARCRejectAsScore bool
	// MaxSignatures is the most DKIM signatures verified per message
	// (DefaultMaxSignatures when zero); later ones are ignored.
	MaxSignatures int
	// Timeout bounds the DNS lookups of one message (DefaultTimeout when
	// zero).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Check is SPF, DKIM and DMARC as a body check. It is safe for concurrent
// use.
type Check struct {
	cfg Config
}

var _ filter.BodyCheck = (*Check)(nil)

// New returns the check.
func New(cfg Config) (*Check, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("auth: no resolver")
	}
	if cfg.Hostname == "" || strings.ContainsAny(cfg.Hostname, " \t\r\n;()\"\\") {
		return nil, fmt.Errorf("auth: hostname %q cannot be an authserv-id", cfg.Hostname)
	}
	if cfg.MaxSignatures < 0 || cfg.Timeout < 0 {
		return nil, errors.New("auth: negative signature limit or timeout")
	}
	if cfg.MaxSignatures == 0 {
		cfg.MaxSignatures = DefaultMaxSignatures
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Check{cfg: cfg}, nil
}

// Name is the check's name.
func (c *Check) Name() string { return CheckName }

// Symbols and their default scores: the package documentation says why.
const (
	SymSPFPass      = "SPF_PASS"
	SymSPFFail      = "SPF_FAIL"
	SymSPFSoftFail  = "SPF_SOFTFAIL"
	SymSPFNeutral   = "SPF_NEUTRAL"
	SymSPFNone      = "SPF_NONE"
	SymSPFTempError = "SPF_TEMPERROR"
	SymSPFPermError = "SPF_PERMERROR"

	SymDKIMValid          = "DKIM_VALID"
	SymDKIMValidUnaligned = "DKIM_VALID_UNALIGNED"
	SymDKIMInvalid        = "DKIM_INVALID"
	SymDKIMTempError      = "DKIM_TEMPERROR"
	SymDKIMNone           = "DKIM_NONE"

	SymDMARCPass           = "DMARC_PASS"
	SymDMARCFailReject     = "DMARC_FAIL_REJECT"
	SymDMARCFailQuarantine = "DMARC_FAIL_QUARANTINE"
	SymDMARCFailNone       = "DMARC_FAIL_NONE"
	SymDMARCNone           = "DMARC_NONE"
	SymDMARCTempError      = "DMARC_TEMPERROR"
	SymDMARCPermError      = "DMARC_PERMERROR"
)

// DefaultScores are the symbols' scores; the config's spam.scores override
// them.
var DefaultScores = map[string]float64{
	SymSPFPass:      -0.1,
	SymSPFFail:      2,
	SymSPFSoftFail:  0.7,
	SymSPFNeutral:   0,
	SymSPFNone:      0.3,
	SymSPFTempError: 0,
	SymSPFPermError: 0,

	SymDKIMValid:          -0.2,
	SymDKIMValidUnaligned: 0,
	SymDKIMInvalid:        1,
	SymDKIMTempError:      0,
	SymDKIMNone:           0,

	SymDMARCPass:           -0.5,
	SymDMARCFailReject:     8,
	SymDMARCFailQuarantine: 4,
	SymDMARCFailNone:       0.5,
	SymDMARCNone:           0,
	SymDMARCTempError:      0,
	SymDMARCPermError:      0,
}

func symbol(name, detail string) filter.Symbol {
	return filter.Symbol{Name: name, Score: DefaultScores[name], Detail: detail}
}

// CheckBody checks the message's sender authentication. A client of
// mynetworks (Conn.Trusted) is not checked: no symbols, no header.
func (c *Check) CheckBody(ctx context.Context, b *filter.Body) filter.Result {
	if b.Conn.Trusted {
		return filter.Result{}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()

	from, fromErr := fromDomain(b.Msg.Header)
	var (
		wg     sync.WaitGroup
		spfRes spfOutcome
		policy dmarcPolicy
	)
	wg.Go(func() { spfRes = c.checkSPF(ctx, b.Conn, b.From) })
	if fromErr == nil {
		wg.Go(func() { policy = c.lookupPolicy(ctx, from) })
	}
	dkimRes := c.checkDKIM(ctx, b.Msg)
	wg.Wait()
	if dkimRes.Err != nil {
		c.cfg.Logger.Warn("sender authentication failed", "event", "auth", "session", b.Conn.ID,
			"queue_id", b.Msg.QueueID, "error", dkimRes.Err.Error())
		return filter.Result{Err: fmt.Errorf("auth: %w", dkimRes.Err)}
	}

	var dm dmarcOutcome
	if fromErr != nil {
		dm = dmarcOutcome{Result: authres.ResultPermError, Reason: fromErr.Error()}
	} else {
		dm = evaluate(from, policy, spfRes, dkimRes)
	}

	res := filter.Result{
		Symbols: []filter.Symbol{spfSymbol(spfRes), dkimSymbol(dkimRes, from), dmarcSymbol(dm)},
		Headers: []filter.Header{{Name: HeaderName, Value: authResults(c.cfg.Hostname, spfRes, dkimRes, dm)}},
	}
	res.LogAttrs = []any{"spf", string(spfRes.Result), "dkim", dkimSummary(dkimRes), "dmarc", string(dm.Result)}
	if dm.From != "" {
		res.LogAttrs = append(res.LogAttrs, "from_domain", dm.From)
	}
	if dm.Result == authres.ResultFail && dm.Policy == dmarc.PolicyReject && !c.cfg.DMARCRejectAsScore {
		res.Action = filter.Reject
		res.Reason = ReasonDMARCReject
		res.Reply = &filter.Reply{Code: 550, Enhanced: [3]int{5, 7, 1},
			Text: "message refused: it fails the DMARC policy of " + dm.From + " (p=reject)"}
	}
	c.cfg.Logger.Debug("sender authentication", "event", "auth", "session", b.Conn.ID, "queue_id", b.Msg.QueueID,
		"spf", string(spfRes.Result), "dkim", dkimSummary(dkimRes), "dkim_ignored", dkimRes.Ignored,
		"dmarc", string(dm.Result), "dmarc_policy", string(dm.Policy), "duration_ms", time.Since(start).Milliseconds())
	return res
}

func spfSymbol(s spfOutcome) filter.Symbol {
	name := map[spf.Result]string{
		spf.Pass: SymSPFPass, spf.Fail: SymSPFFail, spf.SoftFail: SymSPFSoftFail,
		spf.Neutral: SymSPFNeutral, spf.None: SymSPFNone,
		spf.TempError: SymSPFTempError, spf.PermError: SymSPFPermError,
	}[s.Result]
	if name == "" {
		name = SymSPFNone
	}
	return symbol(name, s.Domain)
}

// dkimSymbol sums up the signatures: a verified signature wins (aligned
// with From or not), then a temperror (the signature that could not be
// checked might have been good), then a failure.
func dkimSymbol(d dkimOutcome, from string) filter.Symbol {
	var pass, passAligned, temp, bad []string
	for _, s := range d.Sigs {
		switch s.Result {
		case authres.ResultPass:
			if aligned(s.Domain, from, false) {
				passAligned = append(passAligned, s.Domain)
			} else {
				pass = append(pass, s.Domain)
			}
		case authres.ResultTempError:
			temp = append(temp, s.Domain)
		default:
			bad = append(bad, s.Domain)
		}
	}
	detail := func(ds []string) string { return strings.Join(ds, " ") }
	switch {
	case len(passAligned) > 0:
		return symbol(SymDKIMValid, detail(passAligned))
	case len(pass) > 0:
		return symbol(SymDKIMValidUnaligned, detail(pass))
	case len(temp) > 0:
		return symbol(SymDKIMTempError, detail(temp))
	case len(bad) > 0:
		return symbol(SymDKIMInvalid, detail(bad))
	}
	return symbol(SymDKIMNone, "")
}

func dkimSummary(d dkimOutcome) string {
	if len(d.Sigs) == 0 {
		return string(authres.ResultNone)
	}
	rs := make([]string, len(d.Sigs))
	for i, s := range d.Sigs {
		rs[i] = string(s.Result)
	}
	return strings.Join(rs, ",")
}

func dmarcSymbol(m dmarcOutcome) filter.Symbol {
	detail := m.From
	if p := m.comment(); p != "" {
		detail += " " + p
	}
	switch m.Result {
	case authres.ResultPass:
		return symbol(SymDMARCPass, detail)
	case authres.ResultFail:
		switch m.Policy {
		case dmarc.PolicyReject:
			return symbol(SymDMARCFailReject, detail)
		case dmarc.PolicyQuarantine:
			return symbol(SymDMARCFailQuarantine, detail)
		}
		return symbol(SymDMARCFailNone, detail)
	case authres.ResultTempError:
		return symbol(SymDMARCTempError, detail)
	case authres.ResultPermError:
		if m.From == "" {
			detail = m.Reason
		}
		return symbol(SymDMARCPermError, detail)
	}
	return symbol(SymDMARCNone, detail)
}
