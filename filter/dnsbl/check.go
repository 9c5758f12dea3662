package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/internal/dns"
)

// maxDetail bounds a symbol's Detail.
const maxDetail = 200

// Check is the DNS block list check, a body check: at the end of DATA it
// looks up the client's IP address in the IP zones and the message's URL
// domains in the domain zones, concurrently. It is safe for concurrent
// use.
type Check struct {
	cfg         Config
	urlHosts    func(context.Context, *filter.Message) ([]string, error)
	ipZones     []zone
	domainZones []zone
}

var _ filter.BodyCheck = (*Check)(nil)

// Name is the check's name.
func (c *Check) Name() string { return CheckName }

// CheckBody looks up the client and the message's URL domains. A trusted
// client (mynetworks: our own backends) is not looked up at all.
func (c *Check) CheckBody(ctx context.Context, b *filter.Body) filter.Result {
	if b.Conn != nil && b.Conn.Trusted {
		return filter.Result{}
	}
	var jobs []job
	if b.Conn != nil {
		jobs = c.ipJobs(b.Conn.IP)
	}
	var hostsErr error
	if len(c.domainZones) > 0 && b.Msg != nil {
		hosts, err := c.urlHosts(ctx, b.Msg)
		domains := c.domains(hosts)
		if err != nil {
			if len(domains) == 0 {
				hostsErr = fmt.Errorf("dnsbl: URL hosts of %s: %w", b.Msg.QueueID, err)
			} else {
				c.cfg.Logger.Debug("dnsbl: URL hosts read in part", "event", "dnsbl", "queue_id", b.Msg.QueueID, "error", err.Error())
			}
		}
		jobs = append(jobs, c.domainJobs(domains)...)
	}
	res, failed := c.run(ctx, jobs, hostsErr)
	c.log(b, res, failed)
	return res
}

// CheckIP looks up ip in the IP zones alone, for a decision at the
// connection. It does not know whether the client is trusted: the caller
// skips trusted clients. Private addresses are skipped with
// Config.SkipPrivate. The result follows the same rules as CheckBody's.
func (c *Check) CheckIP(ctx context.Context, ip netip.Addr) filter.Result {
	res, _ := c.run(ctx, c.ipJobs(ip), nil)
	return res
}

// job is one lookup.
type job struct {
	zone    *zone
	subject string // what is looked up: an IP address or a domain
	query   string // the name asked
}

// ipJobs are the lookups of ip in every IP zone.
func (c *Check) ipJobs(ip netip.Addr) []job {
	if !ip.IsValid() || len(c.ipZones) == 0 {
		return nil
	}
	ip = ip.Unmap().WithZone("")
	if c.cfg.SkipPrivate && !public(ip) {
		return nil
	}
	rev := reverse(ip)
	jobs := make([]job, 0, len(c.ipZones))
	for i := range c.ipZones {
		z := &c.ipZones[i]
		jobs = append(jobs, job{zone: z, subject: ip.String(), query: rev + "." + z.name})
	}
	return jobs
}

// domainJobs are the lookups of every domain in every domain zone.
func (c *Check) domainJobs(domains []string) []job {
	var jobs []job
	for i := range c.domainZones {
		z := &c.domainZones[i]
		for _, d := range domains {
			q := d + "." + z.name
			if validName(q) {
				jobs = append(jobs, job{zone: z, subject: d, query: q})
			}
		}
	}
	return jobs
}

// domains returns the registrable domains of hosts, deduplicated, in the
// order found, at most Config.MaxDomains of them.
func (c *Check) domains(hosts []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, h := range hosts {
		d := registrable(h)
		if d == "" || seen[d] {
			continue
		}
		seen[d] = true
		out = append(out, d)
		if len(out) == c.cfg.MaxDomains {
			break
		}
	}
	return out
}

// registrable returns the registrable domain of host (its public suffix
// and one label more: www.mail.example.co.uk is example.co.uk), or "" for
// an IP address, a public suffix, or what is not a domain name.
func registrable(host string) string {
	h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(host)), ".")
	if h == "" || strings.HasPrefix(h, "[") {
		return ""
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 {
			a, err := idna.Lookup.ToASCII(h)
			if err != nil {
				return ""
			}
			h = a
			break
		}
	}
	if last := h[strings.LastIndexByte(h, '.')+1:]; last == "" || allDigits(last) {
		return "" // a numeric last label is an IP address in another form, not a TLD
	}
	d, err := publicsuffix.EffectiveTLDPlusOne(h)
	if err != nil || !validName(d) {
		return ""
	}
	return d
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// outcome is what one lookup gave.
type outcome struct {
	result string // resultHit, resultMiss or resultError
	hits   []filter.Symbol
	err    error
}

// run does the lookups, at most Config.Concurrency at once, all within
// Config.Timeout, and makes the result. hostsErr, when set, is the failure
// to read the message's URL hosts: every domain zone failed. failed lists
// the error symbols with their details, for the log.
func (c *Check) run(ctx context.Context, jobs []job, hostsErr error) (res filter.Result, failed []string) {
	out := make([]outcome, len(jobs))
	if len(jobs) > 0 {
		ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
		sem := make(chan struct{}, c.cfg.Concurrency)
		var wg sync.WaitGroup
	launch:
		for i := range jobs {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				for k := i; k < len(jobs); k++ {
					out[k] = outcome{result: resultError, err: fmt.Errorf("dnsbl %s: not asked: %w", jobs[k].query, ctx.Err())}
				}
				break launch
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				out[i] = c.lookup(ctx, jobs[i])
			}()
		}
		wg.Wait()
	}
	return c.result(jobs, out, hostsErr)
}

// lookup asks one name and judges the answer.
func (c *Check) lookup(ctx context.Context, j job) outcome {
	addrs, _, err := c.cfg.Resolver.IP(ctx, j.query)
	var v4 []netip.Addr
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() {
			v4 = append(v4, a)
		}
	}
	if len(v4) == 0 {
		// IP asks for AAAA too: a list answers A records only, so NODATA
		// is a miss like NXDOMAIN.
		if err == nil || dns.IsNotFound(err) {
			return outcome{result: resultMiss}
		}
		return outcome{result: resultError, err: fmt.Errorf("dnsbl %s: %w", j.query, err)}
	}
	// The A records are the answer: a failure of the AAAA question asked
	// with them does not matter.
	return j.zone.judge(j, v4)
}

// judge turns the A records of an answer into a hit, a miss or an error.
func (z *zone) judge(j job, answers []netip.Addr) outcome {
	for _, a := range answers {
		if isErrorCode(z.errorCodes, a) {
			return outcome{result: resultError, err: fmt.Errorf("dnsbl %s: error code %s", j.query, a)}
		}
	}
	var hits []filter.Symbol
	add := func(name string, score float64, a netip.Addr) {
		detail := j.subject + " " + a.String()
		for i := range hits {
			if hits[i].Name == name {
				hits[i].Score = max(hits[i].Score, score)
				hits[i].Detail += ", " + a.String()
				return
			}
		}
		hits = append(hits, filter.Symbol{Name: name, Score: score, Detail: detail})
	}
	for _, a := range answers {
		counted := false
		for _, code := range z.codes {
			if code.Addr == a {
				add(code.Symbol, code.Score, a)
				counted = true
			}
		}
		switch {
		case counted:
		case !loopback8.Contains(a):
			// Not a list's answer: a resolver rewriting NXDOMAIN, or a
			// zone that is no longer a list.
			return outcome{result: resultError, err: fmt.Errorf("dnsbl %s: answer %s outside 127.0.0.0/8", j.query, a)}
		case len(z.codes) == 0:
			add(z.symbol, z.score, a)
		}
	}
	if len(hits) == 0 {
		return outcome{result: resultMiss}
	}
	return outcome{result: resultHit, hits: hits}
}

var loopback8 = netip.MustParsePrefix("127.0.0.0/8")

// result merges the outcomes: one symbol per name (the highest score of
// its hits, their details joined), then one error symbol per zone with
// failures; Err only when every lookup failed.
func (c *Check) result(jobs []job, out []outcome, hostsErr error) (res filter.Result, failedZones []string) {
	index := map[string]int{}
	type zoneErrs struct {
		failed, total int
		first         error
	}
	errs := map[*zone]*zoneErrs{}
	failed := 0
	for i, o := range out {
		z := jobs[i].zone
		metricLookups.WithLabelValues(z.name, o.result).Inc()
		ze := errs[z]
		if ze == nil {
			ze = &zoneErrs{}
			errs[z] = ze
		}
		ze.total++
		if o.result == resultError {
			failed++
			ze.failed++
			if ze.first == nil {
				ze.first = o.err
			}
			continue
		}
		for _, s := range o.hits {
			k, ok := index[s.Name]
			if !ok {
				index[s.Name] = len(res.Symbols)
				res.Symbols = append(res.Symbols, s)
				continue
			}
			prev := &res.Symbols[k]
			prev.Score = max(prev.Score, s.Score)
			if len(prev.Detail) < maxDetail {
				prev.Detail += "; " + s.Detail
			}
		}
	}
	for i := range res.Symbols {
		res.Symbols[i].Detail = truncate(res.Symbols[i].Detail, maxDetail)
	}
	var errList []error
	for _, zs := range [][]zone{c.ipZones, c.domainZones} {
		for i := range zs {
			z := &zs[i]
			ze := errs[z]
			if ze == nil || ze.failed == 0 {
				continue
			}
			errList = append(errList, ze.first)
			s := filter.Symbol{
				Name:   z.errSymbol,
				Detail: truncate(strconv.Itoa(ze.failed)+" of "+strconv.Itoa(ze.total)+" lookups failed: "+ze.first.Error(), maxDetail),
			}
			res.Symbols = append(res.Symbols, s)
			failedZones = append(failedZones, s.Name+": "+s.Detail)
		}
	}
	lookups := len(out)
	if hostsErr != nil {
		lookups++
		failed++
		errList = append(errList, hostsErr)
		for i := range c.domainZones {
			z := &c.domainZones[i]
			if errs[z] == nil {
				s := filter.Symbol{Name: z.errSymbol, Detail: truncate(hostsErr.Error(), maxDetail)}
				res.Symbols = append(res.Symbols, s)
				failedZones = append(failedZones, s.Name+": "+s.Detail)
			}
		}
	}
	if lookups > 0 && failed == lookups {
		res.Err = fmt.Errorf("dnsbl: every lookup failed (%d): %w", failed, errors.Join(errList...))
	}
	return res, failedZones
}

// log says which zones failed, once per check run: an error code in
// particular means the resolver is refused by the list (a public resolver,
// or too many queries), which the operator must fix.
func (c *Check) log(b *filter.Body, res filter.Result, failed []string) {
	hits := make([]string, 0, len(res.Symbols))
	for _, s := range res.Symbols[:len(res.Symbols)-len(failed)] {
		hits = append(hits, s.Name)
	}
	session, queueID := "", ""
	if b.Conn != nil {
		session = b.Conn.ID
	}
	if b.Msg != nil {
		queueID = b.Msg.QueueID
	}
	if len(failed) > 0 {
		c.cfg.Logger.Warn("dnsbl lookups failed", "event", "dnsbl", "session", session, "queue_id", queueID,
			"failed", failed, "all_failed", res.Err != nil)
	}
	if len(hits) > 0 {
		c.cfg.Logger.Debug("dnsbl listed", "event", "dnsbl", "session", session, "queue_id", queueID, "symbols", hits)
	}
}

// reverse is the query label sequence of ip: octets reversed for IPv4,
// nibbles reversed for IPv6 (as in ip6.arpa).
func reverse(ip netip.Addr) string {
	if ip.Is4() {
		b := ip.As4()
		return strconv.Itoa(int(b[3])) + "." + strconv.Itoa(int(b[2])) + "." + strconv.Itoa(int(b[1])) + "." + strconv.Itoa(int(b[0]))
	}
	const hex = "0123456789abcdef"
	b := ip.As16()
	var sb strings.Builder
	sb.Grow(63)
	for i := len(b) - 1; i >= 0; i-- {
		if i < len(b)-1 {
			sb.WriteByte('.')
		}
		sb.WriteByte(hex[b[i]&0x0f])
		sb.WriteByte('.')
		sb.WriteByte(hex[b[i]>>4])
	}
	return sb.String()
}

var sharedAddressSpace = netip.MustParsePrefix("100.64.0.0/10")

// public reports whether a list can know ip: not loopback, private (RFC
// 1918, unique local), link local, shared (RFC 6598), unspecified or
// multicast.
func public(ip netip.Addr) bool {
	return !(ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() || sharedAddressSpace.Contains(ip))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
