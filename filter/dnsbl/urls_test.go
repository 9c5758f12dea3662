package dnsbl

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestScanURLHosts(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		want      []string
	}{
		{name: "plain text", msg: `Subject: x

See HTTPS://WWW.Example.COM/a?b, http://user:pw@mail.example.org:8080/x
and http://Example.com. or www.third.example, also "https://quoted.example".
Not: ftp://ftp.example/ nothttp://word.example/ mailto:a@mail.example
Nor a bare name.example, nor http:// alone.
`, want: []string{"www.example.com", "mail.example.org", "example.com", "quoted.example", "www.third.example"}},
		{name: "IDN and trailing punctuation", msg: "\nhttp://bücher.example/” and (http://paren.example)\n",
			want: []string{"bücher.example", "paren.example"}},
		{name: "quoted-printable HTML with a soft break in the URL", msg: `MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

plain http://plain.example/
--b1
Content-Type: text/html; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

<a href=3D"https://evil.exa=
mple/login">log in</a>
--b1--
`, want: []string{"plain.example", "evil.example"}},
		{name: "base64 text, attachment skipped, nested message", msg: `MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain
Content-Transfer-Encoding: base64

` + b64("visit http://b64.example/ now") + `
--outer
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="x.bin"

http://attachment.example/
--outer
Content-Type: message/rfc822

Subject: inner
Content-Type: text/plain

http://inner.example/
--outer--
`, want: []string{"b64.example", "inner.example"}},
		{name: "broken header scanned raw", msg: " starts with a space\nhttp://raw.example/\n", want: []string{"raw.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ScanURLHosts(context.Background(), spool(t, tc.msg))
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("hosts %q, err %v; want %q", got, err, tc.want)
			}
		})
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestScanURLHostsBound(t *testing.T) {
	var b strings.Builder
	b.WriteString("\n")
	for i := range maxHosts + 50 {
		fmt.Fprintf(&b, "http://h%d.example/ http://h%d.example/\n", i, i)
	}
	got, err := ScanURLHosts(context.Background(), spool(t, b.String()))
	if err != nil || len(got) != maxHosts || got[0] != "h0.example" || got[maxHosts-1] != fmt.Sprintf("h%d.example", maxHosts-1) {
		t.Errorf("%d hosts (first %v), err %v; want the first %d", len(got), got[:min(3, len(got))], err, maxHosts)
	}
}

func TestRegistrable(t *testing.T) {
	for host, want := range map[string]string{
		"WWW.Mail.Example.CO.UK.": "example.co.uk",
		"example.com":             "example.com",
		"bücher.example":          "xn--bcher-kva.example",
		"1.2.3.4":                 "",
		"[2001:db8::1]":           "",
		"0x7f.1":                  "",
		"co.uk":                   "",
		"localhost":               "",
		"bad_label!.example":      "",
		"":                        "",
	} {
		if got := registrable(host); got != want {
			t.Errorf("registrable(%q) = %q, want %q", host, got, want)
		}
	}
}
