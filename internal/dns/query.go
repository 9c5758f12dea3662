package dns

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// lookup returns the records of type qtype for name, following CNAMEs,
// from the cache or the resolver.
func (c *Client) lookup(ctx context.Context, name string, qtype uint16) (answer, error) {
	qname, ok := normalize(name)
	if !ok {
		return answer{}, &Error{Kind: InvalidName, Type: mdns.TypeToString[qtype], Name: name}
	}
	ans, _, err := c.resolve(ctx, qname, qtype, 0)
	return ans, err
}

// resolve answers qname/qtype after depth CNAMEs were already followed. It
// returns the answer (also for NXDOMAIN and NODATA, with the error), and
// until when it may be cached (zero: not at all; for a cache hit, the
// entry's expiry).
func (c *Client) resolve(ctx context.Context, qname string, qtype uint16, depth int) (answer, time.Time, error) {
	typ := mdns.TypeToString[qtype]
	key := cacheKey{name: qname, qtype: qtype}
	if c.cache != nil {
		if ans, expires, ok := c.cache.get(key, c.now()); ok {
			metricCacheHits.WithLabelValues(typ).Inc()
			return ans, expires, ans.err(typ, qname, "")
		}
	}

	start := time.Now()
	resp, err := c.exchange(ctx, qname, qtype)
	var ex extracted
	if err == nil {
		ex, err = c.extract(resp, qname, qtype, maxCNAMEs-depth)
	}
	metricQueryDuration.WithLabelValues(typ).Observe(time.Since(start).Seconds())
	kind := KindOf(err)
	if err == nil {
		kind = ex.ans.kind
	}
	metricQueries.WithLabelValues(typ, resultLabel(kind)).Inc()
	if err != nil {
		c.log.Debug("dns query failed", "type", typ, "name", qname, "server", c.server, "err", err)
		return answer{}, time.Time{}, err
	}

	ans, expires := ex.ans, c.expiry(ex)
	if ex.next != "" {
		// The answer ended in a CNAME whose target it did not answer for:
		// ask for the target. The chain is kept as long as both the
		// CNAMEs and the target's answer may be.
		sub, subExpires, err := c.resolve(ctx, ex.next, qtype, depth+ex.cnames)
		if err != nil && KindOf(err).Temporary() {
			return answer{}, time.Time{}, err
		}
		ans = answer{rrs: sub.rrs, kind: sub.kind, authentic: ans.authentic && sub.authentic}
		if subExpires.IsZero() || subExpires.Before(expires) {
			expires = subExpires
		}
	}
	if c.cache != nil && !expires.IsZero() {
		c.cache.put(key, ans, expires)
	}
	return ans, expires, ans.err(typ, qname, c.server)
}

// err is the error for a negative answer.
func (a answer) err(typ, name, server string) error {
	if a.kind == 0 {
		return nil
	}
	return &Error{Kind: a.kind, Type: typ, Name: name, Server: server}
}

// expiry is until when ex may be cached; zero: not at all.
func (c *Client) expiry(ex extracted) time.Time {
	var d time.Duration
	ttl := time.Duration(ex.ttl) * time.Second
	switch {
	case ex.ans.kind == 0:
		d = min(max(ttl, c.minTTL), c.maxTTL)
	case ex.negativeCacheable:
		// RFC 2308 §5: the SOA's TTL and minimum bound the time.
		d = min(max(ttl, c.minTTL), c.maxNegTTL)
	}
	if d <= 0 {
		return time.Time{}
	}
	return c.now().Add(d)
}

// extracted is what one response says about the question.
type extracted struct {
	ans               answer
	ttl               uint32 // the smallest TTL of the records used (with the SOA's for a negative answer)
	negativeCacheable bool   // a negative answer came with an SOA (RFC 2308 §5)
	next              string // the CNAME target to ask for next, if the answer stopped there
	cnames            int    // CNAMEs followed in this answer
}

// extract reads resp, the answer to qname/qtype, following at most budget
// CNAMEs. Everything in resp is untrusted.
func (c *Client) extract(resp *mdns.Msg, qname string, qtype uint16, budget int) (extracted, error) {
	typ := mdns.TypeToString[qtype]
	bad := func(format string, args ...any) error {
		return &Error{Kind: BadAnswer, Type: typ, Name: qname, Server: c.server, Err: fmt.Errorf(format, args...)}
	}
	if !resp.Response || len(resp.Question) != 1 {
		return extracted{}, bad("not an answer to one question")
	}
	if q := resp.Question[0]; !strings.EqualFold(q.Name, qname) || q.Qtype != qtype || q.Qclass != mdns.ClassINET {
		return extracted{}, bad("answer to another question (%s %s)", q.Name, mdns.TypeToString[q.Qtype])
	}
	switch resp.Rcode {
	case mdns.RcodeSuccess, mdns.RcodeNameError:
	case mdns.RcodeServerFailure:
		return extracted{}, &Error{Kind: ServFail, Type: typ, Name: qname, Server: c.server}
	case mdns.RcodeRefused:
		return extracted{}, &Error{Kind: Refused, Type: typ, Name: qname, Server: c.server}
	default:
		return extracted{}, bad("rcode %s", rcodeName(resp.Rcode))
	}

	ex := extracted{ttl: math.MaxUint32}
	ex.ans.authentic = c.dnssec && resp.AuthenticatedData
	cur := qname
	seen := map[string]bool{qname: true}
	for {
		var cname *mdns.CNAME
		for _, rr := range resp.Answer {
			h := rr.Header()
			if h.Class != mdns.ClassINET || !strings.EqualFold(h.Name, cur) {
				continue
			}
			if h.Rrtype == qtype {
				if len(ex.ans.rrs) == maxRecords {
					return extracted{}, bad("more than %d records", maxRecords)
				}
				ex.ans.rrs = append(ex.ans.rrs, rr)
				ex.ttl = min(ex.ttl, h.Ttl)
			} else if cn, ok := rr.(*mdns.CNAME); ok && cname == nil {
				cname = cn
			}
		}
		if len(ex.ans.rrs) > 0 || cname == nil {
			break
		}
		ex.cnames++
		if ex.cnames > budget {
			return extracted{}, bad("CNAME chain longer than %d", maxCNAMEs)
		}
		ex.ttl = min(ex.ttl, cname.Hdr.Ttl)
		cur = strings.ToLower(mdns.Fqdn(cname.Target))
		if seen[cur] {
			return extracted{}, bad("CNAME loop at %s", cur)
		}
		seen[cur] = true
	}
	if len(ex.ans.rrs) > 0 {
		return ex, nil
	}

	// No records: NXDOMAIN, NODATA, or a chain the resolver did not follow.
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*mdns.SOA); ok && soa.Hdr.Class == mdns.ClassINET {
			ex.ttl = min(ex.ttl, soa.Hdr.Ttl, soa.Minttl)
			ex.negativeCacheable = true
			break
		}
	}
	switch {
	case resp.Rcode == mdns.RcodeNameError:
		// With CNAMEs, NXDOMAIN is about the end of the chain (RFC 6604).
		ex.ans.kind = NXDomain
	case cur != qname && !ex.negativeCacheable:
		ex.next = cur
	default:
		ex.ans.kind = NoData
	}
	return ex, nil
}

func rcodeName(rcode int) string {
	if s, ok := mdns.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("%d", rcode)
}

// exchange sends the question to the resolver over UDP, and over TCP when
// the UDP answer is truncated, within c.timeout.
func (c *Client) exchange(ctx context.Context, qname string, qtype uint16) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(qname, qtype)
	m.RecursionDesired = true
	m.SetEdns0(udpSize, c.dnssec)
	m.AuthenticatedData = c.dnssec

	qctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var resp *mdns.Msg
	var err error
	for attempt := range 2 {
		actx, acancel := qctx, context.CancelFunc(func() {})
		if attempt == 0 {
			// Keep half the time for a second datagram: the first, or
			// its answer, may have been lost.
			actx, acancel = context.WithTimeout(qctx, c.timeout/2)
		}
		resp, err = c.exchangeOn(actx, "udp", m)
		acancel()
		if err == nil || qctx.Err() != nil || !isTimeout(err) {
			break
		}
	}
	if resp != nil && resp.Truncated {
		resp, err = c.exchangeOn(qctx, "tcp", m)
	}
	if err != nil {
		return nil, c.classify(ctx, qctx, qname, qtype, err)
	}
	return resp, nil
}

// exchangeOn asks once over network ("udp" or "tcp"). A cancelled context
// closes the connection, so that the caller is not kept waiting.
func (c *Client) exchangeOn(ctx context.Context, network string, m *mdns.Msg) (*mdns.Msg, error) {
	cl := &mdns.Client{Net: network, UDPSize: udpSize, Timeout: c.timeout}
	conn, err := cl.DialContext(ctx, c.server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	resp, _, err := cl.ExchangeWithConnContext(ctx, m, conn)
	if err != nil && ctx.Err() != nil {
		// Closed by the AfterFunc above, or the deadline came.
		return nil, ctx.Err()
	}
	if err != nil && resp != nil && resp.Truncated && network == "udp" {
		// A truncated datagram may not even parse; TCP will tell.
		return resp, nil
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// expired reports whether ctx's deadline has passed.
func expired(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// classify turns an exchange error into an *Error.
func (c *Client) classify(ctx, qctx context.Context, qname string, qtype uint16, err error) error {
	e := &Error{Type: mdns.TypeToString[qtype], Name: qname, Server: c.server, Err: err}
	var merr *mdns.Error
	switch {
	case ctx.Err() != nil:
		e.Kind, e.Err = Timeout, ctx.Err()
	case expired(ctx):
		// The socket's deadline, set from the context's, may come before
		// the context's own timer.
		e.Kind, e.Err = Timeout, context.DeadlineExceeded
	case qctx.Err() != nil || isTimeout(err):
		e.Kind, e.Err = Timeout, fmt.Errorf("no answer within %s", c.timeout)
	case errors.As(err, &merr):
		e.Kind = BadAnswer
	default:
		e.Kind = NetworkError
	}
	return e
}
