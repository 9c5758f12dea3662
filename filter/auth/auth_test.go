package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/internal/dns"
	"github.com/mxgate/mxgate/internal/dnstest"
)

// The public keys of the RFC examples: RFC 6376 Appendix C (brisbane at
// example.com) and RFC 8463 Appendix A.2 (Ed25519 brisbane and RSA test at
// football.example.com).
const (
	rsaKey = "v=DKIM1; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYt" +
		"IxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631uBItLa7od+v/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuKhi" +
		"tdY9tf6mcwGjaNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB"
	ed25519Key = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	rsa8463Key = "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR" +
		"iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC" +
		"DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3" +
		"Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
)

const (
	clientIP = "192.0.2.10"
	helo     = "client.sender.example"
	hostname = "mx1.example.net"
)

// rfcKeys are the zone entries of the RFC examples' keys.
func rfcKeys() dnstest.Zone {
	return dnstest.Zone{
		"brisbane._domainkey.example.com":          {TXT: []string{rsaKey}},
		"brisbane._domainkey.football.example.com": {TXT: []string{ed25519Key}},
		"test._domainkey.football.example.com":     {TXT: []string{rsa8463Key}},
	}
}

// merge returns the zones' entries together (later ones win).
func merge(zones ...dnstest.Zone) dnstest.Zone {
	out := dnstest.Zone{}
	for _, z := range zones {
		for k, v := range z {
			out[k] = v
		}
	}
	return out
}

type env struct {
	t   *testing.T
	srv *dnstest.Server
	chk *Check
}

// newEnv starts a DNS server for zone and a check asking it (without a
// cache, so that queries can be counted).
func newEnv(t *testing.T, zone dnstest.Zone, edit func(*Config)) *env {
	t.Helper()
	srv := dnstest.Start(t, zone)
	r, err := dns.New(dns.Options{Server: srv.Addr(), CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Resolver: r, Hostname: hostname}
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, chk: c}
}

// spool writes msg as a spooled message and reads its header back.
func spool(t *testing.T, msg []byte) *filter.Message {
	t.Helper()
	path := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(path, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := filter.OpenMessage("Q1", path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// plain is an unsigned message from the given From address.
func plain(from string) []byte {
	return []byte("From: Someone <" + from + ">\r\nTo: user@example.net\r\nSubject: hello\r\n\r\nHello.\r\n")
}

// check runs the check for a message from the client at clientIP.
func (e *env) check(envFrom string, msg []byte) filter.Result {
	e.t.Helper()
	b := &filter.Body{
		Conn:  &filter.Conn{ID: "S1", IP: netip.MustParseAddr(clientIP), Helo: helo},
		From:  envFrom,
		Rcpts: []string{"user@example.net"},
		Msg:   spool(e.t, msg),
	}
	return e.chk.CheckBody(context.Background(), b)
}

// symbols returns the result's symbols by name.
func symbols(r filter.Result) map[string]filter.Symbol {
	m := map[string]filter.Symbol{}
	for _, s := range r.Symbols {
		m[s.Name] = s
	}
	return m
}

// header returns the Authentication-Results value, unfolded.
func header(t *testing.T, r filter.Result) string {
	t.Helper()
	if len(r.Headers) != 1 || r.Headers[0].Name != HeaderName {
		t.Fatalf("headers %+v, want one %s", r.Headers, HeaderName)
	}
	return strings.ReplaceAll(r.Headers[0].Value, "\r\n\t", " ")
}

// want checks that the result has the symbol with its default score, no
// error, and that the header holds each of parts.
func want(t *testing.T, r filter.Result, symbol string, parts ...string) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("Err = %v", r.Err)
	}
	s, ok := symbols(r)[symbol]
	if !ok {
		t.Fatalf("no %s in %+v", symbol, r.Symbols)
	}
	if s.Score != DefaultScores[symbol] {
		t.Errorf("%s scores %v, want %v", symbol, s.Score, DefaultScores[symbol])
	}
	h := header(t, r)
	for _, p := range parts {
		if !strings.Contains(h, p) {
			t.Errorf("header %q lacks %q", h, p)
		}
	}
}

// espSigned returns a message From from, signed by esp.example (selector
// sel) with a key made for the test, and the zone publishing the key.
func espSigned(t *testing.T, from string) (dnstest.Zone, []byte) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, bytes.NewReader(plain(from)), &dkim.SignOptions{
		Domain: "esp.example", Selector: "sel", Signer: priv,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	}); err != nil {
		t.Fatal(err)
	}
	key := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	return dnstest.Zone{"sel._domainkey.esp.example": {TXT: []string{key}}}, signed.Bytes()
}

func TestSPF(t *testing.T) {
	includes := make([]string, 11)
	zone := dnstest.Zone{
		"pass.example":     {TXT: []string{"v=spf1 ip4:192.0.2.0/24 -all"}},
		"fail.example":     {TXT: []string{"v=spf1 ip4:198.51.100.0/24 -all"}},
		"softfail.example": {TXT: []string{"v=spf1 ~all"}},
		"neutral.example":  {TXT: []string{"v=spf1 ?all"}},
		"norecord.example": {TXT: []string{"google-site-verification=abc"}},
		"servfail.example": {ServFail: true},
		"syntax.example":   {TXT: []string{"v=spf1 ip4:192.0.2.300 -all"}},
		"twice.example":    {TXT: []string{"v=spf1 -all", "v=spf1 +all"}},
		// The a mechanism looks up A for an IPv4 client: AAAA failing
		// does not make it a temperror.
		"a.example":      {TXT: []string{"v=spf1 a:mail.a.example -all"}},
		"mail.a.example": {A: []string{clientIP}, ServFail: true, FailTypes: []string{"AAAA"}},
		// ...but A failing does.
		"a4fail.example":      {TXT: []string{"v=spf1 a:mail.a4fail.example -all"}},
		"mail.a4fail.example": {AAAA: []string{"2001:db8::1"}, ServFail: true, FailTypes: []string{"A"}},
		// A null MX has no address to match.
		"nullmx.example": {TXT: []string{"v=spf1 mx -all"}, MX: []dnstest.MX{{Pref: 0, Host: "."}}},
		helo:             {TXT: []string{"v=spf1 ip4:" + clientIP + " -all"}},
	}
	for i := range includes {
		name := "inc" + string(rune('a'+i)) + ".example"
		includes[i] = "include:" + name
		zone[name] = dnstest.Records{TXT: []string{"v=spf1 -all"}}
	}
	zone["loops.example"] = dnstest.Records{TXT: []string{"v=spf1 " + strings.Join(includes, " ") + " -all"}}
	e := newEnv(t, zone, nil)

	for _, tc := range []struct {
		sender, symbol, header string
	}{
		{"joe@pass.example", SymSPFPass, "spf=pass smtp.mailfrom=joe@pass.example"},
		{"joe@PASS.example.", SymSPFPass, "spf=pass smtp.mailfrom=joe@PASS.example."},
		{"joe@fail.example", SymSPFFail, "spf=fail smtp.mailfrom=joe@fail.example"},
		{"joe@softfail.example", SymSPFSoftFail, "spf=softfail smtp.mailfrom=joe@softfail.example"},
		{"joe@neutral.example", SymSPFNeutral, "spf=neutral smtp.mailfrom=joe@neutral.example"},
		{"joe@norecord.example", SymSPFNone, "spf=none smtp.mailfrom=joe@norecord.example"},
		{"joe@nxdomain.example", SymSPFNone, "spf=none smtp.mailfrom=joe@nxdomain.example"},
		{"joe@[192.0.2.10]", SymSPFNone, "spf=none"},
		{"joe@servfail.example", SymSPFTempError,
			`spf=temperror reason="server failure (SERVFAIL) for servfail.example" smtp.mailfrom=joe@servfail.example`},
		{"joe@syntax.example", SymSPFPermError, "spf=permerror reason="},
		{"joe@twice.example", SymSPFPermError, "spf=permerror reason="},
		{"joe@loops.example", SymSPFPermError, `spf=permerror reason="lookup limit reached"`},
		{"joe@a.example", SymSPFPass, "spf=pass"},
		{"joe@a4fail.example", SymSPFTempError, "spf=temperror"},
		{"joe@nullmx.example", SymSPFFail, "spf=fail"},
		{"", SymSPFPass, "spf=pass smtp.helo=" + helo},
	} {
		t.Run(tc.sender, func(t *testing.T) {
			r := e.check(tc.sender, plain("a@nopolicy.example"))
			want(t, r, tc.symbol, tc.header)
			if r.Action != filter.Accept {
				t.Errorf("action %v", r.Action)
			}
		})
	}
}

func TestDKIM(t *testing.T) {
	rfc6376 := testdata(t, "rfc6376-a2.eml")
	rfc8463 := testdata(t, "rfc8463-a.eml")

	t.Run("rfc6376", func(t *testing.T) {
		e := newEnv(t, rfcKeys(), nil)
		r := e.check("joe@football.example.com", rfc6376)
		// d=example.com is aligned (relaxed) with football.example.com.
		want(t, r, SymDKIMValid, "dkim=pass header.d=example.com header.s=brisbane")
		if got := symbols(r)[SymDKIMValid].Detail; got != "example.com" {
			t.Errorf("detail %q", got)
		}
	})
	t.Run("rfc8463", func(t *testing.T) {
		e := newEnv(t, rfcKeys(), nil)
		r := e.check("joe@football.example.com", rfc8463)
		want(t, r, SymDKIMValid,
			"dkim=pass header.d=football.example.com header.s=brisbane; dkim=pass header.d=football.example.com header.s=test;")
	})
	t.Run("From changed", func(t *testing.T) {
		// The From field is signed: changing it breaks the signature.
		e := newEnv(t, rfcKeys(), nil)
		msg := bytes.Replace(rfc6376, []byte("From: Joe SixPack <joe@football.example.com>"),
			[]byte("From: Joe SixPack <joe@football.example.org>"), 1)
		r := e.check("joe@football.example.com", msg)
		want(t, r, SymDKIMInvalid, "dkim=fail", "header.d=example.com header.s=brisbane")
	})
	t.Run("unaligned", func(t *testing.T) {
		// Signed by an ESP's domain for a shop's mail: verified, but
		// not the author's domain, and so no DMARC pass either.
		z, msg := espSigned(t, "news@shop.example")
		e := newEnv(t, merge(z, dnstest.Zone{"_dmarc.shop.example": {TXT: []string{"v=DMARC1; p=quarantine"}}}), nil)
		r := e.check("bounce@bounces.esp.example", msg)
		want(t, r, SymDKIMValidUnaligned, "dkim=pass header.d=esp.example header.s=sel", "dmarc=fail")
		want(t, r, SymDMARCFailQuarantine)
	})
	t.Run("header section too long", func(t *testing.T) {
		z, msg := espSigned(t, "news@esp.example")
		pad := bytes.Repeat([]byte("X-Pad: "+strings.Repeat("x", 990)+"\r\n"), maxHeaderBytes/990+1)
		end := bytes.Index(msg, []byte("\r\n\r\n")) + 2
		msg = append(append(append([]byte{}, msg[:end]...), pad...), msg[end:]...)
		e := newEnv(t, z, nil)
		r := e.check("bounce@bounces.esp.example", msg)
		want(t, r, SymDKIMInvalid, `dkim=permerror reason="header section too long" header.d=esp.example header.s=sel`)
	})
	t.Run("tampered body", func(t *testing.T) {
		e := newEnv(t, rfcKeys(), nil)
		msg := bytes.Replace(rfc8463, []byte("We lost the game."), []byte("We won the game."), 1)
		r := e.check("joe@football.example.com", msg)
		want(t, r, SymDKIMInvalid, `dkim=fail reason="body hash did not verify" header.d=football.example.com header.s=brisbane`)
	})
	t.Run("tampered header", func(t *testing.T) {
		e := newEnv(t, rfcKeys(), nil)
		msg := bytes.Replace(rfc6376, []byte("Subject: Is dinner ready?"), []byte("Subject: Is lunch ready?"), 1)
		r := e.check("joe@football.example.com", msg)
		want(t, r, SymDKIMInvalid, "dkim=fail", "header.d=example.com header.s=brisbane")
	})
	t.Run("missing key", func(t *testing.T) {
		e := newEnv(t, dnstest.Zone{"example.com": {A: []string{"192.0.2.99"}}}, nil)
		r := e.check("joe@football.example.com", rfc6376)
		want(t, r, SymDKIMInvalid, "dkim=permerror", "header.d=example.com header.s=brisbane")
	})
	t.Run("servfail", func(t *testing.T) {
		e := newEnv(t, dnstest.Zone{"brisbane._domainkey.example.com": {ServFail: true}}, nil)
		r := e.check("joe@football.example.com", rfc6376)
		want(t, r, SymDKIMTempError, "dkim=temperror", "header.d=example.com header.s=brisbane")
		if s := symbols(r)[SymDKIMTempError]; s.Score != 0 {
			t.Errorf("temperror scores %v", s.Score)
		}
	})
	t.Run("temperror beside a failure", func(t *testing.T) {
		// Ed25519 key unavailable, RSA signature broken: no verdict.
		z := rfcKeys()
		z["brisbane._domainkey.football.example.com"] = dnstest.Records{ServFail: true}
		e := newEnv(t, z, nil)
		msg := bytes.Replace(rfc8463, []byte("Subject: Is dinner ready?"), []byte("Subject: Is lunch ready?"), 1)
		r := e.check("joe@football.example.com", msg)
		want(t, r, SymDKIMTempError, "dkim=temperror", "dkim=fail")
	})
	t.Run("unsigned", func(t *testing.T) {
		e := newEnv(t, nil, nil)
		r := e.check("joe@football.example.com", plain("joe@football.example.com"))
		want(t, r, SymDKIMNone, "; dkim=none;")
	})
	t.Run("bounded", func(t *testing.T) {
		// Seven copies of the RFC 6376 signature: five are verified,
		// with five key lookups.
		e := newEnv(t, rfcKeys(), nil)
		end := bytes.Index(rfc6376, []byte("Received:"))
		msg := append(bytes.Repeat(rfc6376[:end], 6), rfc6376...)
		r := e.check("joe@football.example.com", msg)
		want(t, r, SymDKIMValid)
		if n := strings.Count(header(t, r), "dkim=pass"); n != DefaultMaxSignatures {
			t.Errorf("%d dkim results, want %d", n, DefaultMaxSignatures)
		}
		if n := e.srv.Queries("brisbane._domainkey.example.com", "TXT"); n != DefaultMaxSignatures {
			t.Errorf("%d key lookups, want %d", n, DefaultMaxSignatures)
		}
	})
	t.Run("unreadable spool", func(t *testing.T) {
		e := newEnv(t, rfcKeys(), nil)
		m := spool(t, rfc6376)
		if err := os.Remove(m.Path); err != nil {
			t.Fatal(err)
		}
		r := e.chk.CheckBody(context.Background(), &filter.Body{
			Conn: &filter.Conn{IP: netip.MustParseAddr(clientIP), Helo: helo}, From: "joe@football.example.com", Msg: m})
		if r.Err == nil || len(r.Headers) != 0 {
			t.Errorf("Err %v, headers %v: want an error and no header", r.Err, r.Headers)
		}
	})
}

func TestDMARC(t *testing.T) {
	rfc6376 := testdata(t, "rfc6376-a2.eml")
	rfc8463 := testdata(t, "rfc8463-a.eml")
	spfZone := dnstest.Zone{
		"bounces.esp.example":  {TXT: []string{"v=spf1 ip4:192.0.2.0/24 -all"}},
		"attacker.example":     {TXT: []string{"v=spf1 ip4:192.0.2.0/24 -all"}},
		"mail.shop.example":    {TXT: []string{"v=spf1 ip4:192.0.2.0/24 -all"}},
		"shop.example":         {TXT: []string{"v=spf1 ip4:198.51.100.1 -all"}},
		"football.example.com": {TXT: []string{"v=spf1 ip4:198.51.100.1 -all"}},
	}
	policy := func(name, rec string) dnstest.Zone {
		return dnstest.Zone{"_dmarc." + name: {TXT: []string{rec}}}
	}

	for _, tc := range []struct {
		name    string
		zone    dnstest.Zone
		sender  string
		msg     []byte
		symbol  string
		header  string
		action  filter.Action
		asScore bool
	}{
		{name: "pass by aligned DKIM despite SPF fail",
			zone:   policy("football.example.com", "v=DMARC1; p=reject"),
			sender: "joe@football.example.com", msg: rfc8463,
			symbol: SymDMARCPass, header: "dmarc=pass (p=reject) header.from=football.example.com"},
		{name: "pass by aligned SPF",
			zone:   policy("shop.example", "v=DMARC1; p=reject"),
			sender: "bounce@mail.shop.example", msg: plain("news@shop.example"),
			symbol: SymDMARCPass, header: "dmarc=pass (p=reject) header.from=shop.example"},
		{name: "strict SPF alignment",
			zone:   policy("shop.example", "v=DMARC1; p=quarantine; aspf=s"),
			sender: "bounce@mail.shop.example", msg: plain("news@shop.example"),
			symbol: SymDMARCFailQuarantine, header: "dmarc=fail (p=quarantine) header.from=shop.example"},
		{name: "relaxed DKIM alignment",
			zone:   policy("football.example.com", "v=DMARC1; p=quarantine"),
			sender: "joe@bounces.esp.example", msg: rfc6376,
			symbol: SymDMARCPass, header: "dmarc=pass (p=quarantine) header.from=football.example.com"},
		{name: "strict DKIM alignment",
			zone:   policy("football.example.com", "v=DMARC1; p=quarantine; adkim=s"),
			sender: "joe@bounces.esp.example", msg: rfc6376,
			symbol: SymDMARCFailQuarantine, header: "dmarc=fail (p=quarantine) header.from=football.example.com"},
		{name: "fail under p=reject",
			zone:   policy("bank.example", "v=DMARC1; p=reject; rua=mailto:d@bank.example"),
			sender: "ceo@attacker.example", msg: plain("ceo@bank.example"),
			symbol: SymDMARCFailReject, header: "dmarc=fail (p=reject) header.from=bank.example",
			action: filter.Reject},
		{name: "fail under p=reject, scored",
			zone:   policy("bank.example", "v=DMARC1; p=reject"),
			sender: "ceo@attacker.example", msg: plain("ceo@bank.example"), asScore: true,
			symbol: SymDMARCFailReject, header: "dmarc=fail (p=reject) header.from=bank.example"},
		{name: "fail under p=none",
			zone:   policy("bank.example", "v=DMARC1; p=none"),
			sender: "ceo@attacker.example", msg: plain("ceo@bank.example"),
			symbol: SymDMARCFailNone, header: "dmarc=fail (p=none) header.from=bank.example"},
		{name: "pct below 100 softens reject",
			zone:   policy("bank.example", "v=DMARC1; p=reject; pct=20"),
			sender: "ceo@attacker.example", msg: plain("ceo@bank.example"),
			symbol: SymDMARCFailQuarantine, header: "dmarc=fail (p=reject pct=20) header.from=bank.example"},
		{name: "organisational domain, sp applies",
			zone:   policy("bank.example", "v=DMARC1; p=none; sp=reject"),
			sender: "ceo@attacker.example", msg: plain("ceo@a.b.bank.example"),
			symbol: SymDMARCFailReject, header: "dmarc=fail (p=none sp=reject) header.from=a.b.bank.example",
			action: filter.Reject},
		{name: "organisational domain, p without sp",
			zone:   policy("bank.example", "v=DMARC1; p=quarantine"),
			sender: "ceo@attacker.example", msg: plain("ceo@a.b.bank.example"),
			symbol: SymDMARCFailQuarantine, header: "dmarc=fail (p=quarantine) header.from=a.b.bank.example"},
		{name: "the From domain's own record comes first",
			zone: merge(policy("bank.example", "v=DMARC1; p=reject"),
				policy("a.b.bank.example", "v=DMARC1; p=none")),
			sender: "ceo@attacker.example", msg: plain("ceo@a.b.bank.example"),
			symbol: SymDMARCFailNone, header: "dmarc=fail (p=none) header.from=a.b.bank.example"},
		{name: "no policy",
			sender: "ceo@attacker.example", msg: plain("ceo@bank.example"),
			symbol: SymDMARCNone, header: "dmarc=none header.from=bank.example"},
		{name: "a record of another kind is no policy",
			zone:   policy("bank.example", "v=spf1 -all"),
			sender: "ceo@attacker.example", msg: plain("ceo@bank.example"),
			symbol: SymDMARCNone, header: "dmarc=none header.from=bank.example"},
		{name: "invalid record",
			zone:   policy("bank.example", "v=DMARC1; p=bounce"),
			sender: "ceo@attacker.example", msg: plain("ceo@bank.example"),
			symbol: SymDMARCPermError, header: "dmarc=permerror reason="},
		{name: "policy lookup fails",
			zone:   dnstest.Zone{"_dmarc.bank.example": {ServFail: true}},
			sender: "ceo@attacker.example", msg: plain("ceo@bank.example"),
			symbol: SymDMARCTempError, header: "dmarc=temperror reason="},
		{name: "aligned DKIM temperror is not a fail",
			zone: merge(policy("football.example.com", "v=DMARC1; p=reject"),
				dnstest.Zone{"brisbane._domainkey.football.example.com": {ServFail: true},
					"test._domainkey.football.example.com": {ServFail: true}}),
			sender: "joe@attacker.example", msg: rfc8463,
			symbol: SymDMARCTempError, header: "dmarc=temperror (p=reject)"},
		{name: "no From",
			sender: "ceo@attacker.example", msg: []byte("Subject: hi\r\n\r\nHello.\r\n"),
			symbol: SymDMARCPermError, header: `dmarc=permerror reason="no single From domain: no From field"`},
		{name: "From in two domains",
			sender: "ceo@attacker.example", msg: []byte("From: a@one.example, b@two.example\r\n\r\nHello.\r\n"),
			symbol: SymDMARCPermError, header: "dmarc=permerror"},
		{name: "unknown charset in the display name",
			zone:   policy("bank.example", "v=DMARC1; p=reject"),
			sender: "ceo@attacker.example", msg: []byte("From: =?x-unknown?q?Bank?= <ceo@bank.example>\r\n\r\nHello.\r\n"),
			symbol: SymDMARCFailReject, header: "dmarc=fail (p=reject) header.from=bank.example",
			action: filter.Reject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, merge(rfcKeys(), spfZone, tc.zone), func(c *Config) { c.DMARCRejectAsScore = tc.asScore })
			r := e.check(tc.sender, tc.msg)
			want(t, r, tc.symbol, tc.header)
			if r.Action != tc.action {
				t.Fatalf("action %v, want %v", r.Action, tc.action)
			}
			if tc.action == filter.Reject {
				if r.Reason != ReasonDMARCReject || r.Reply == nil || r.Reply.Code != 550 ||
					r.Reply.Enhanced != [3]int{5, 7, 1} || !strings.Contains(r.Reply.Text, "DMARC") {
					t.Errorf("reason %q reply %v", r.Reason, r.Reply)
				}
			} else if r.Reply != nil || r.Reason != "" {
				t.Errorf("reason %q reply %v without an action", r.Reason, r.Reply)
			}
		})
	}
}

func TestDMARCOrgDomainLookups(t *testing.T) {
	// RFC 7489 §6.6.3: the From domain, then the organisational domain,
	// never the names between them.
	e := newEnv(t, dnstest.Zone{"_dmarc.bank.example": {TXT: []string{"v=DMARC1; p=quarantine"}}}, nil)
	r := e.check("ceo@attacker.example", plain("ceo@a.b.bank.example"))
	want(t, r, SymDMARCFailQuarantine)
	for name, n := range map[string]int{"_dmarc.a.b.bank.example": 1, "_dmarc.b.bank.example": 0, "_dmarc.bank.example": 1} {
		if got := e.srv.Queries(name, "TXT"); got != n {
			t.Errorf("%s asked %d times, want %d", name, got, n)
		}
	}
}

func TestHeaderPass(t *testing.T) {
	e := newEnv(t, merge(rfcKeys(), dnstest.Zone{
		"football.example.com":        {TXT: []string{"v=spf1 ip4:192.0.2.0/24 -all"}},
		"_dmarc.football.example.com": {TXT: []string{"v=DMARC1; p=reject"}},
	}), nil)
	r := e.check("joe@football.example.com", testdata(t, "rfc8463-a.eml"))
	wantHeader := "mx1.example.net;\r\n" +
		"\tspf=pass smtp.mailfrom=joe@football.example.com;\r\n" +
		"\tdkim=pass header.d=football.example.com header.s=brisbane;\r\n" +
		"\tdkim=pass header.d=football.example.com header.s=test;\r\n" +
		"\tdmarc=pass (p=reject) header.from=football.example.com"
	if len(r.Headers) != 1 || r.Headers[0] != (filter.Header{Name: "Authentication-Results", Value: wantHeader}) {
		t.Errorf("headers:\n%q\nwant:\n%q", r.Headers, wantHeader)
	}
	var score float64
	for _, s := range r.Symbols {
		score += s.Score
	}
	if len(r.Symbols) != 3 || score != -0.8 {
		t.Errorf("symbols %+v (score %v), want SPF_PASS, DKIM_VALID and DMARC_PASS for -0.8", r.Symbols, score)
	}
	if r.Err != nil || r.Action != filter.Accept {
		t.Errorf("err %v action %v", r.Err, r.Action)
	}
}

func TestHeaderHostileValues(t *testing.T) {
	// A sender address with a quote and a selector with a backslash must
	// not break the header's quoting or lines.
	e := newEnv(t, nil, nil)
	msg := []byte("DKIM-Signature: v=1; a=rsa-sha256; d=evil.example; s=a\\b\"c;\r\n h=from; bh=AA==; b=AA==\r\n" +
		"From: x@evil.example\r\n\r\nHi.\r\n")
	r := e.check(`"a\"b"@evil.example`, msg)
	h := r.Headers[0].Value
	if strings.ContainsAny(h, "\\") || strings.Count(h, `"`)%2 != 0 {
		t.Errorf("header %q", h)
	}
	for _, line := range strings.Split(h, "\r\n") {
		if strings.ContainsAny(line, "\r\n") || len(line) > 200 {
			t.Errorf("line %q", line)
		}
	}
	want(t, r, SymSPFNone, "smtp.mailfrom=evil.example", "header.s=abc")
}

func TestTrustedNotChecked(t *testing.T) {
	e := newEnv(t, merge(rfcKeys(), dnstest.Zone{"_dmarc.bank.example": {TXT: []string{"v=DMARC1; p=reject"}}}), nil)
	b := &filter.Body{
		Conn: &filter.Conn{IP: netip.MustParseAddr("10.0.0.5"), Helo: "backend", Trusted: true},
		From: "ceo@bank.example", Msg: spool(t, plain("ceo@bank.example")),
	}
	r := e.chk.CheckBody(context.Background(), b)
	if r.Action != filter.Accept || len(r.Symbols) != 0 || len(r.Headers) != 0 || r.Err != nil {
		t.Errorf("trusted client: %+v", r)
	}
	if n := e.srv.TotalQueries(); n != 0 {
		t.Errorf("%d DNS queries for a trusted client", n)
	}
}

func TestNew(t *testing.T) {
	for _, cfg := range []Config{
		{Hostname: hostname},
		{Resolver: dns.Mock{}},
		{Resolver: dns.Mock{}, Hostname: "mx1; spf=pass"},
		{Resolver: dns.Mock{}, Hostname: hostname, MaxSignatures: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	c, err := New(Config{Resolver: dns.Mock{}, Hostname: hostname})
	if err != nil || c.Name() != "auth" || c.cfg.MaxSignatures != DefaultMaxSignatures || c.cfg.Timeout != DefaultTimeout {
		t.Errorf("New: %v %+v", err, c)
	}
}
