package dnstest

import (
	"encoding/json"
	"testing"

	"github.com/miekg/dns"
)

func ask(t *testing.T, s *Server, network, name string, qtype uint16, edit func(*dns.Msg)) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edit != nil {
		edit(m)
	}
	resp, _, err := (&dns.Client{Net: network}).Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return resp
}

func TestServer(t *testing.T) {
	// A zone as an e2e test would hand it to a standalone process.
	var zone Zone
	if err := json.Unmarshal([]byte(`{
		"example.test": {"mx": [{"pref": 10, "host": "mx.example.test"}], "ttl": 120},
		"mx.example.test.": {"a": ["192.0.2.1"], "rr": ["@ TXT \"one\" \"two\""]},
		"www.example.test.": {"cname": "mx.example.test"}
	}`), &zone); err != nil {
		t.Fatal(err)
	}
	s := Start(t, zone)

	for _, network := range []string{"udp", "tcp"} {
		r := ask(t, s, network, "EXAMPLE.test.", dns.TypeMX, nil)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 120 ||
			r.Answer[0].(*dns.MX).Mx != "mx.example.test." || !r.RecursionAvailable {
			t.Errorf("MX over %s: %v", network, r)
		}
	}
	if s.Queries("example.test", "mx") != 2 || s.TCPQueries() != 1 || s.TotalQueries() != 2 {
		t.Errorf("counts: %d MX, %d TCP, %d total", s.Queries("example.test", "MX"), s.TCPQueries(), s.TotalQueries())
	}

	r := ask(t, s, "udp", "mx.example.test.", dns.TypeTXT, nil)
	if len(r.Answer) != 1 || len(r.Answer[0].(*dns.TXT).Txt) != 2 {
		t.Errorf("TXT from RR: %v", r)
	}
	r = ask(t, s, "udp", "www.example.test.", dns.TypeA, nil)
	if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != dns.TypeCNAME || r.Answer[1].Header().Rrtype != dns.TypeA {
		t.Errorf("CNAME then A: %v", r)
	}
	r = ask(t, s, "udp", "nope.example.test.", dns.TypeA, nil)
	if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].(*dns.SOA).Minttl != defaultNegativeTTL {
		t.Errorf("NXDOMAIN: %v", r)
	}
	r = ask(t, s, "udp", "mx.example.test.", dns.TypeAAAA, nil)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Errorf("NODATA: %v", r)
	}

	// AD only for queries that ask for DNSSEC.
	s.SetAuthentic(true)
	if r := ask(t, s, "udp", "example.test.", dns.TypeMX, nil); r.AuthenticatedData {
		t.Error("AD set for a query without DO or AD")
	}
	if r := ask(t, s, "udp", "example.test.", dns.TypeMX, func(m *dns.Msg) { m.SetEdns0(1232, true) }); !r.AuthenticatedData {
		t.Error("AD not set for a DO query")
	}

	// Changes while running.
	if err := s.Set("new.example.test", Records{A: []string{"192.0.2.9"}}); err != nil {
		t.Fatal(err)
	}
	if r := ask(t, s, "udp", "new.example.test.", dns.TypeA, nil); len(r.Answer) != 1 {
		t.Errorf("added name: %v", r)
	}
	s.Remove("new.example.test.")
	if r := ask(t, s, "udp", "new.example.test.", dns.TypeA, nil); r.Rcode != dns.RcodeNameError {
		t.Errorf("removed name: %v", r)
	}
	s.ResetQueries()
	if s.TotalQueries() != 0 {
		t.Error("ResetQueries left counts")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestBadRecords(t *testing.T) {
	for what, r := range map[string]Records{
		"bad A":              {A: []string{"2001:db8::1"}},
		"bad AAAA":           {AAAA: []string{"192.0.2.1"}},
		"bad TLSA":           {TLSA: []TLSA{{Data: "xyz"}}},
		"RR of another name": {RR: []string{"other.test. A 192.0.2.1"}},
		"RR syntax":          {RR: []string{"@ A not-an-address"}},
		"CNAME and A":        {CNAME: "x.test", A: []string{"192.0.2.1"}},
		"unknown fail type":  {ServFail: true, FailTypes: []string{"BOGUS"}},
	} {
		if _, err := New(Zone{"a.test.": r}); err == nil {
			t.Errorf("%s: New accepted it", what)
		}
	}
	s := Start(t, Zone{})
	if err := s.Set("a..test", Records{}); err == nil {
		t.Error("Set accepted a bad name")
	}
}

func TestTruncation(t *testing.T) {
	var txts []string
	for range 20 {
		txts = append(txts, string(make([]byte, 200)))
	}
	s := Start(t, Zone{"big.test.": {TXT: txts}})
	r := ask(t, s, "udp", "big.test.", dns.TypeTXT, nil)
	if !r.Truncated {
		t.Errorf("a 4 KB answer over UDP without EDNS0 not truncated (%d records)", len(r.Answer))
	}
	r = ask(t, s, "tcp", "big.test.", dns.TypeTXT, nil)
	if r.Truncated || len(r.Answer) != 20 {
		t.Errorf("over TCP: truncated %v, %d records", r.Truncated, len(r.Answer))
	}
}
