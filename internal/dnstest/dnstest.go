// Package dnstest is a real DNS server for tests: it serves names from a Go
// map on a loopback port, over UDP and TCP, and behaves like a recursive
// resolver answering from its cache (recursion available, CNAME chains
// followed, an SOA in the authority section of negative answers, UDP answers
// truncated to the client's EDNS0 buffer size).
//
//	srv := dnstest.Start(t, dnstest.Zone{
//		"example.test.":          {MX: []dnstest.MX{{Pref: 10, Host: "mx.example.test."}}},
//		"mx.example.test.":       {A: []string{"192.0.2.1"}, AAAA: []string{"2001:db8::1"}},
//		"broken.example.test.":   {ServFail: true},
//		"slow.example.test.":     {Drop: true},
//		"_25._tcp.mx.example.test.": {TLSA: []dnstest.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: "abcd"}}},
//	})
//	// point a resolver at srv.Addr()
//
// Names not in the map, and with no name below them in the map, get
// NXDOMAIN; names in the map (or with names below them) without records of
// the type asked for get NODATA. Records can be changed while the server
// runs (Set, Remove), the AD bit can be set on answers (SetAuthentic, or
// Records.AD per name), and queries are counted per name and type (Queries).
//
// Start is for tests; New is the same server for a standalone process (it
// needs no testing.TB), with Close to stop it.
package dnstest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// MX is one MX record. Host "." with Pref 0 is the null MX of RFC 7505.
type MX struct {
	Pref uint16 `json:"pref"`
	Host string `json:"host"`
}

// TLSA is one TLSA record; Data is the certificate association data in hex.
type TLSA struct {
	Usage        uint8  `json:"usage"`
	Selector     uint8  `json:"selector"`
	MatchingType uint8  `json:"matching_type"`
	Data         string `json:"data"`
}

// Records are the records of one name and how the server behaves for it.
// Host names may be given with or without the final dot.
type Records struct {
	A    []string `json:"a,omitempty"`    // IPv4 addresses
	AAAA []string `json:"aaaa,omitempty"` // IPv6 addresses
	MX   []MX     `json:"mx,omitempty"`
	// TXT holds one record per string; a string longer than 255 octets is
	// split into several character-strings of one record, as zone tools
	// do. For records with chosen character-strings, use RR.
	TXT   []string `json:"txt,omitempty"`
	PTR   []string `json:"ptr,omitempty"`
	CNAME string   `json:"cname,omitempty"`
	TLSA  []TLSA   `json:"tlsa,omitempty"`
	// RR holds further records in zone-file syntax, with this name as the
	// origin: `@ TXT "v=spf1 " "-all"`, `@ 60 IN SRV 0 5 25 mx`. Their
	// owner must be this name.
	RR []string `json:"rr,omitempty"`
	// TTL of every record of this name; 0 means 300.
	TTL uint32 `json:"ttl,omitempty"`

	ServFail bool `json:"servfail,omitempty"` // answer SERVFAIL to every query for this name
	Refused  bool `json:"refused,omitempty"`  // answer REFUSED
	Drop     bool `json:"drop,omitempty"`     // never answer: the client times out
	// FailTypes limits ServFail, Refused and Drop to queries of these types
	// ("AAAA", "TXT"); empty: all types.
	FailTypes []string `json:"fail_types,omitempty"`
	AD        bool     `json:"ad,omitempty"` // set the AD bit on answers for this name
}

// Zone maps absolute names ("example.test.", the final dot may be left
// out) to their records.
type Zone map[string]Records

const (
	defaultTTL         = 300
	defaultNegativeTTL = 60
	maxChain           = 16
)

// entry is a name's Records compiled to resource records.
type entry struct {
	rrs      map[uint16][]dns.RR
	cname    *dns.CNAME
	servFail bool
	refused  bool
	drop     bool
	failOnly map[uint16]bool // nil: all types
	ad       bool
}

// fails reports whether the failure behaviour applies to qtype.
func (e *entry) fails(qtype uint16) bool {
	return e.failOnly == nil || e.failOnly[qtype]
}

// Server is a running test DNS server. Its methods are safe for concurrent
// use.
type Server struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server

	mu          sync.RWMutex
	names       map[string]*entry
	authentic   bool
	negativeTTL uint32
	noFollow    bool
	queries     map[string]int
	tcpQueries  int
	total       int

	closeOnce sync.Once
	closeErr  error
}

// New starts a server on a free loopback port (the same port for UDP and
// TCP) serving zone. Close stops it.
func New(zone Zone) (*Server, error) {
	s := &Server{
		names:       map[string]*entry{},
		negativeTTL: defaultNegativeTTL,
		queries:     map[string]int{},
	}
	for name, r := range zone {
		e, err := compile(name, r)
		if err != nil {
			return nil, err
		}
		s.names[canonical(name)] = e
	}
	pc, ln, err := listen()
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		failed := make(chan error, 1)
		go func() { failed <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-failed:
			_ = pc.Close()
			_ = ln.Close()
			return nil, fmt.Errorf("dnstest: serve: %w", err)
		}
	}
	return s, nil
}

// Start is New for a test: it fails the test if the server cannot start
// and stops the server when the test ends.
func Start(t testing.TB, zone Zone) *Server {
	t.Helper()
	s, err := New(zone)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// listen binds UDP and TCP on the same loopback port: UDP on a port the
// kernel picks, then TCP on it, again with another port if that one is
// taken for TCP.
func listen() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("dnstest: listen udp: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		lastErr = err
		_ = pc.Close()
	}
	return nil, nil, fmt.Errorf("dnstest: no loopback port free for both UDP and TCP: %w", lastErr)
}

// Addr is the server's "127.0.0.1:port", for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Close stops the server. It may be called more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.closeErr = errors.Join(s.udp.ShutdownContext(ctx), s.tcp.ShutdownContext(ctx))
	})
	return s.closeErr
}

// Set replaces the records of name (adding the name if it is new).
func (s *Server) Set(name string, r Records) error {
	e, err := compile(name, r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names[canonical(name)] = e
	return nil
}

// Remove deletes name: it no longer exists (NXDOMAIN, unless names below
// it remain).
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.names, canonical(name))
}

// SetAuthentic sets (or clears) the AD bit on every answer to a query that
// asked for DNSSEC (DO or AD bit set), as a validating resolver does.
func (s *Server) SetAuthentic(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authentic = on
}

// SetNegativeTTL sets the TTL and minimum of the SOA record sent with
// NXDOMAIN and NODATA answers (60 s by default).
func (s *Server) SetNegativeTTL(ttl uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.negativeTTL = ttl
}

// SetFollowCNAME chooses whether the server follows CNAME chains within its
// names (the default) or answers with the CNAME record alone, as an
// authoritative server does for a target outside its zone.
func (s *Server) SetFollowCNAME(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noFollow = !on
}

// Queries returns how many queries for name and type ("MX", "A", "TXT"...)
// the server received, over UDP and TCP, answered or not.
func (s *Server) Queries(name, qtype string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.queries[countKey(canonical(name), strings.ToUpper(qtype))]
}

// TotalQueries returns how many queries the server received.
func (s *Server) TotalQueries() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.total
}

// TCPQueries returns how many of the queries came over TCP.
func (s *Server) TCPQueries() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tcpQueries
}

// ResetQueries sets the query counters back to zero.
func (s *Server) ResetQueries() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.queries)
	s.total, s.tcpQueries = 0, 0
}

func countKey(name, qtype string) string { return name + " " + qtype }

func canonical(name string) string { return strings.ToLower(dns.Fqdn(name)) }

// compile turns Records into resource records, checking every value.
func compile(name string, r Records) (*entry, error) {
	owner := canonical(name)
	if _, ok := dns.IsDomainName(owner); !ok {
		return nil, fmt.Errorf("dnstest: bad name %q", name)
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = defaultTTL
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: owner, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	e := &entry{rrs: map[uint16][]dns.RR{}, servFail: r.ServFail, refused: r.Refused, drop: r.Drop, ad: r.AD}
	for _, t := range r.FailTypes {
		qt, ok := dns.StringToType[strings.ToUpper(t)]
		if !ok {
			return nil, fmt.Errorf("dnstest: %s: unknown type %q in FailTypes", owner, t)
		}
		if e.failOnly == nil {
			e.failOnly = map[uint16]bool{}
		}
		e.failOnly[qt] = true
	}
	add := func(rr dns.RR) { t := rr.Header().Rrtype; e.rrs[t] = append(e.rrs[t], rr) }
	for _, s := range r.A {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("dnstest: %s: bad A %q", owner, s)
		}
		add(&dns.A{Hdr: hdr(dns.TypeA), A: a.AsSlice()})
	}
	for _, s := range r.AAAA {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() || a.Is4In6() {
			return nil, fmt.Errorf("dnstest: %s: bad AAAA %q", owner, s)
		}
		add(&dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.AsSlice()})
	}
	for _, mx := range r.MX {
		add(&dns.MX{Hdr: hdr(dns.TypeMX), Preference: mx.Pref, Mx: dns.Fqdn(mx.Host)})
	}
	for _, s := range r.TXT {
		add(&dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: splitTXT(s)})
	}
	for _, p := range r.PTR {
		add(&dns.PTR{Hdr: hdr(dns.TypePTR), Ptr: dns.Fqdn(p)})
	}
	for _, t := range r.TLSA {
		if _, err := hex.DecodeString(t.Data); err != nil || t.Data == "" {
			return nil, fmt.Errorf("dnstest: %s: bad TLSA data %q", owner, t.Data)
		}
		add(&dns.TLSA{Hdr: hdr(dns.TypeTLSA), Usage: t.Usage, Selector: t.Selector,
			MatchingType: t.MatchingType, Certificate: strings.ToLower(t.Data)})
	}
	if r.CNAME != "" {
		e.cname = &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: canonical(r.CNAME)}
	}
	if len(r.RR) > 0 {
		zp := dns.NewZoneParser(strings.NewReader(strings.Join(r.RR, "\n")), owner, "")
		zp.SetDefaultTTL(ttl)
		for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
			if !strings.EqualFold(rr.Header().Name, owner) {
				return nil, fmt.Errorf("dnstest: %s: record for another name: %s", owner, rr)
			}
			if c, isCNAME := rr.(*dns.CNAME); isCNAME {
				e.cname = c
				continue
			}
			add(rr)
		}
		if err := zp.Err(); err != nil {
			return nil, fmt.Errorf("dnstest: %s: %w", owner, err)
		}
	}
	if e.cname != nil && len(e.rrs) > 0 {
		return nil, fmt.Errorf("dnstest: %s: a CNAME and other records", owner)
	}
	return e, nil
}

// splitTXT cuts s into character-strings of at most 255 octets, escaped for
// miekg/dns's presentation format.
func splitTXT(s string) []string {
	var out []string
	for {
		n := min(len(s), 255)
		out = append(out, escapeTXT(s[:n]))
		s = s[n:]
		if s == "" {
			return out
		}
	}
}

func escapeTXT(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// exists reports whether name is in the map or is an ancestor of a name in
// it (an empty non-terminal, which exists without records). Called with
// s.mu held.
func (s *Server) exists(name string) bool {
	if _, ok := s.names[name]; ok {
		return true
	}
	for n := range s.names {
		if strings.HasSuffix(n, "."+name) || name == "." {
			return true
		}
	}
	return false
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	udp := w.LocalAddr().Network() == "udp"
	m := new(dns.Msg)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	qname := strings.ToLower(q.Name)

	s.mu.Lock()
	s.queries[countKey(qname, dns.TypeToString[q.Qtype])]++
	s.total++
	if !udp {
		s.tcpQueries++
	}
	m, drop := s.answer(req, qname, q.Qtype)
	s.mu.Unlock()
	if drop {
		return
	}

	opt := req.IsEdns0()
	size := dns.MinMsgSize
	if opt != nil {
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	if udp {
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// answer builds the reply; drop means send nothing. Called with s.mu held.
func (s *Server) answer(req *dns.Msg, qname string, qtype uint16) (m *dns.Msg, drop bool) {
	m = new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	opt := req.IsEdns0()
	dnssec := req.AuthenticatedData || (opt != nil && opt.Do())

	first, ok := s.names[qname]
	ad := s.authentic || (ok && first.ad)
	cur := qname
	found, stoppedAtCNAME := false, false
	for range maxChain {
		e, ok := s.names[cur]
		if !ok {
			break
		}
		if e.drop && e.fails(qtype) {
			return nil, true
		}
		if (e.servFail || e.refused) && e.fails(qtype) {
			rcode := dns.RcodeServerFailure
			if e.refused && !e.servFail {
				rcode = dns.RcodeRefused
			}
			m.Answer = nil
			m.Rcode = rcode
			return m, false
		}
		if rrs := e.rrs[qtype]; len(rrs) > 0 {
			m.Answer = append(m.Answer, rrs...)
			found = true
			break
		}
		if e.cname != nil && qtype != dns.TypeCNAME {
			m.Answer = append(m.Answer, e.cname)
			cur = e.cname.Target
			if s.noFollow {
				stoppedAtCNAME = true
				break
			}
			continue
		}
		break
	}
	switch {
	case found || stoppedAtCNAME:
	case s.exists(cur):
		m.Ns = []dns.RR{s.soa(cur)}
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.soa(cur)}
	}
	m.AuthenticatedData = ad && dnssec
	return m, false
}

// soa is the SOA sent with negative answers, owned by name's top-level
// domain.
func (s *Server) soa(name string) dns.RR {
	labels := dns.SplitDomainName(name)
	apex := "."
	if len(labels) > 0 {
		apex = labels[len(labels)-1] + "."
	}
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.negativeTTL},
		Ns:  "ns.dnstest.", Mbox: "hostmaster.dnstest.",
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: s.negativeTTL,
	}
}
