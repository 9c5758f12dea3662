package bayes

import (
	"slices"
	"strings"
	"testing"
)

const sampleMIME = "From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@Mail.Example.COM>\r\n" +
	"Reply-To: other@elsewhere.example\r\n" +
	"To: a@example.test, b@example.test\r\n" +
	"Subject: =?utf-8?b?R3LDvMOfZSBhdXMgQmVybGlu?= Offer!\r\n" +
	"Message-ID: <abc@mx.example.com>\r\n" +
	"X-Mailer: Microsoft Outlook Express 6.00.2600\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=B\r\n" +
	"\r\n" +
	"--B\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Caf=C3=A9 visit www.shop.example.net/today or mail sales@promo.example\r\n" +
	"--B\r\n" +
	"Content-Type: text/html\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"PGh0bWw+PHN0eWxlPi5oaWRkZW57fTwvc3R5bGU+PHA+QnV5Jm5ic3A7bm93ITwvcD48YSBocmVm\r\n" +
	"PSJodHRwOi8vMTAuMC4wLjEvY2xpY2siPmNsaWNrPC9hPjwvaHRtbD4=\r\n" +
	"--B\r\n" +
	"Content-Type: application/zip; name=\"invoice.ZIP\"\r\n" +
	"Content-Disposition: attachment; filename=\"invoice.ZIP\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"UEsDBA==\r\n" +
	"--B--\r\n"

// TestDocFromView: the Doc of a message read through filter/mimeview.
func TestDocFromView(t *testing.T) {
	d, err := ParseMessage(strings.NewReader(sampleMIME))
	if err != nil {
		t.Fatal(err)
	}
	var subject string
	for _, kv := range d.Header {
		if kv[0] == "Subject" {
			subject = kv[1]
		}
	}
	if subject != "Grüße aus Berlin Offer!" {
		t.Errorf("decoded Subject = %q", subject)
	}
	if len(d.Texts) != 2 || !strings.Contains(d.Texts[0], "Café") {
		t.Fatalf("Texts = %q; want the decoded plain part and the HTML text", d.Texts)
	}
	// The base64 HTML is <html><style>.hidden{}</style><p>Buy&nbsp;now!</p><a href="http://10.0.0.1/click">click</a></html>.
	if html := d.Texts[1]; !strings.Contains(html, "Buy now!") || strings.Contains(html, "hidden") || strings.Contains(html, "<p>") {
		t.Errorf("HTML as text = %q; want the text, entities decoded, no style, no tags", html)
	}
	if !slices.Contains(d.URLs, "http://www.shop.example.net/today") || !slices.Contains(d.URLs, "http://10.0.0.1/click") {
		t.Errorf("URLs = %q; want the text's and the link's", d.URLs)
	}
	if !slices.Equal(d.Parts, []string{"application/zip .zip"}) {
		t.Errorf("Parts = %q", d.Parts)
	}
}

func TestTokenStrings(t *testing.T) {
	d, err := ParseMessage(strings.NewReader(sampleMIME))
	if err != nil {
		t.Fatal(err)
	}
	toks := TokenStrings(d, Features{Headers: true})
	for _, want := range []string{
		"subject:grüße", "subject:offer!", "from-domain:mail.example.com", "from-name:jürgen",
		"reply-to-domain:elsewhere.example", "reply-to:other-domain", "rcpts:2", "msgid-domain:mx.example.com",
		"mailer:microsoft outlook express", "header:x-mailer", "content-type:multipart/mixed",
		"url:shop.example.net", "url:example.net", "url:ip", "email:promo.example",
		"part:application/zip", "ext:.zip", "café", "visit", "now!", "flag:encoded-word:utf-8",
	} {
		if !slices.Contains(toks, want) {
			t.Errorf("token %q missing from %q", want, toks)
		}
	}
	base := TokenStrings(d, Features{})
	for _, tok := range base {
		if strings.HasPrefix(tok, "from-") || strings.HasPrefix(tok, "header:") {
			t.Errorf("header token %q without Features.Headers", tok)
		}
	}
	if !slices.Contains(base, "subject:offer!") || !slices.Contains(base, "url:shop.example.net") {
		t.Errorf("subject and URL tokens missing without Features.Headers: %q", base)
	}
	if got, again := Tokenize(d, DefaultFeatures), Tokenize(d, DefaultFeatures); !slices.Equal(got, again) {
		t.Error("Tokenize is not deterministic")
	}
	if n, np := len(Tokenize(d, Features{})), len(Tokenize(d, Features{Pairs: true})); np <= n {
		t.Errorf("pairs add no features: %d without, %d with", n, np)
	}
}

func TestTokenizeBounds(t *testing.T) {
	long := strings.Repeat("x", 1000)
	words := make([]string, 0, 3*MaxWords)
	for i := range 3 * MaxWords {
		words = append(words, "w"+strings.Repeat("a", i%30)+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676%26)))
	}
	d := &Doc{
		Texts: []string{long + " ab " + strings.Join(words, " ")},
	}
	toks := TokenStrings(d, Features{})
	if !slices.Contains(toks, "skip:x 160") {
		t.Errorf("a 1000-byte word: want one skip token, got %q...", toks[:3])
	}
	for _, tok := range toks {
		if tok == "ab" {
			t.Error("a 2-byte word became a token")
		}
		if len(tok) > MaxTokenBytes+20 {
			t.Errorf("token of %d bytes", len(tok))
		}
	}
	if n := len(toks); n > MaxWords {
		t.Errorf("%d word tokens from one message; want at most MaxWords (%d)", n, MaxWords)
	}
	if n := len(Tokenize(d, Features{Pairs: true})); n != MaxFeatures {
		t.Errorf("%d features with pairs; want the cap, MaxFeatures (%d)", n, MaxFeatures)
	}
}
