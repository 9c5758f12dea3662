package mimeview

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mxgate/mxgate/filter/clamav/clamdtest"
)

// samples are the MIME test messages of testdata/mime.
func samples(t testing.TB) []string {
	t.Helper()
	dir := clamdtest.Testdata(t, "mime")
	var files []string
	for _, sub := range []string{"malformed", "rfc", "thirdparty"} {
		m, err := filepath.Glob(filepath.Join(dir, sub, "*.eml"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 50 {
		t.Fatalf("found only %d samples under %s", len(files), dir)
	}
	return files
}

func parseString(s string, lim Limits) *View {
	return Parse(strings.NewReader(s), lim)
}

func parseFile(t *testing.T, path string) *View {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Parse(f, Limits{})
}

// checkBounds asserts what every view must satisfy under lim.
func checkBounds(t testing.TB, v *View, lim Limits) {
	t.Helper()
	lim = lim.withDefaults()
	if v.Parts < 0 || v.Parts > lim.MaxParts {
		t.Errorf("Parts = %d, limit %d", v.Parts, lim.MaxParts)
	}
	if v.MaxDepth > lim.MaxDepth {
		t.Errorf("MaxDepth = %d, limit %d", v.MaxDepth, lim.MaxDepth)
	}
	if n := v.TextBytes(); n > lim.MaxTextBytes {
		t.Errorf("text kept = %d bytes, limit %d", n, lim.MaxTextBytes)
	}
	if len(v.URLs) > lim.MaxURLs {
		t.Errorf("%d URLs, limit %d", len(v.URLs), lim.MaxURLs)
	}
	if len(v.Attachments) > lim.MaxAttachments {
		t.Errorf("%d attachments, limit %d", len(v.Attachments), lim.MaxAttachments)
	}
	if v.Bytes > lim.MaxBytes {
		t.Errorf("read %d bytes, limit %d", v.Bytes, lim.MaxBytes)
	}
	if len(v.Errors) > maxErrors || len(v.Hidden) > maxHidden || len(v.Words) > maxWords {
		t.Errorf("errors %d, hidden %d, words %d: over their bounds", len(v.Errors), len(v.Hidden), len(v.Words))
	}
	if v.Truncated != (len(v.Limits) > 0) {
		t.Errorf("Truncated = %v with Limits %v", v.Truncated, v.Limits)
	}
	valid := func(what, s string) {
		if !utf8.ValidString(s) {
			t.Errorf("%s is not valid UTF-8: %q", what, s)
		}
	}
	valid("Subject", v.Subject)
	for _, x := range v.Texts {
		valid("text", x.Content)
		if len(x.Content) > lim.MaxPartBytes*4+16 {
			t.Errorf("text part of %d bytes", len(x.Content))
		}
	}
	for _, h := range v.Hidden {
		valid("hidden", h.Text)
		if len(h.Text) > maxHiddenText {
			t.Errorf("hidden run of %d bytes kept", len(h.Text))
		}
	}
	for _, u := range v.URLs {
		valid("url", u.Norm)
		valid("url", u.Raw)
		if u.Host == "" || len(u.Raw) > maxURLLen || len(u.Norm) > maxURLLen {
			t.Errorf("bad URL %+v", u)
		}
	}
	for _, a := range v.Attachments {
		valid("attachment name", a.Name)
	}
}

// Every sample parses, within the default limits and within tiny ones.
func TestSamples(t *testing.T) {
	tiny := Limits{MaxBytes: 300, MaxHeaderBytes: 64, MaxFields: 3, MaxPartBytes: 16, MaxTextBytes: 40,
		MaxParts: 3, MaxDepth: 1, MaxURLs: 1, MaxAttachments: 1, MaxZipEntries: 1, MaxZipTail: 64}
	for _, path := range samples(t) {
		name := filepath.Base(filepath.Dir(path)) + "/" + filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			v := Parse(bytes.NewReader(data), Limits{})
			checkBounds(t, v, Limits{})
			if v.Parts < 1 {
				t.Errorf("Parts = %d", v.Parts)
			}
			if v.Bytes != int64(len(data)) || slices.Contains(v.Limits, LimitBytes) {
				t.Errorf("read %d of %d bytes, limits %v", v.Bytes, len(data), v.Limits)
			}
			checkBounds(t, Parse(bytes.NewReader(data), tiny), tiny)
		})
	}
}

type textWant struct {
	typ, content string
	embedded     bool
}

func texts(v *View) []textWant {
	var out []textWant
	for _, x := range v.Texts {
		out = append(out, textWant{x.Type, strings.TrimSpace(x.Content), x.Embedded})
	}
	return out
}

func attachments(v *View) []string {
	var out []string
	for _, a := range v.Attachments {
		out = append(out, fmt.Sprintf("%s|%s|%s", a.Name, a.Type, a.InZip))
	}
	return out
}

// The parts and attachments found in RFC examples, exactly.
func TestRFCSamples(t *testing.T) {
	dir := clamdtest.Testdata(t, "mime", "rfc")
	cases := []struct {
		file    string
		subject string
		parts   int
		texts   []textWant
		attach  []string
		hosts   []string
	}{
		{
			// RFC 8621 §4.1.4: nested multiparts, an attached message.
			file: "007.eml", subject: "RFC 8621 Section 4.1.4 test", parts: 16,
			texts: []textWant{{"text/plain", "A", false}, {"text/plain", "B", false}, {"text/plain", "D", false},
				{"text/html", "E", false}, {"text/plain", "J", true}, {"text/plain", "K", false}},
			attach: []string{"|image/jpeg|", "|image/jpeg|", "|image/jpeg|", "|application/x-excel|"},
		},
		{
			// A forwarded message with an image and a URL inside.
			file: "002.eml", subject: "[Fwd: Map of Argentina with Description]", parts: 6,
			texts: []textWant{
				{"text/plain", "Fred,\n\nFire up Air Force One!  We're going South!\n\nThanks,\nAl", false},
				{"text/plain", "", true},
			},
			attach: []string{"map_of_Argentina.gif|image/gif|"},
			hosts:  []string{"www.1one1yp1anet.com"},
		},
		{
			// A base64-encoded message/rfc822 attachment, parsed after decoding.
			file: "008.eml", parts: 6,
			texts: []textWant{{"text/plain", "This is a message with a base64 encoded attached email", false},
				{"text/plain", "This is an *HTML* test message", true}, {"text/html", "This is an HTML test message", true}},
			attach: []string{"attached_email.eml|message/rfc822|"},
		},
		{
			// multipart/digest: parts default to message/rfc822.
			file: "004.eml", subject: "Internet Digest, volume 42", parts: 7,
			texts: []textWant{{"text/plain", "...Introductory text or table of contents...", false},
				{"text/plain", "...body goes here ...", true}, {"text/plain", "... another body goes here ...", true}},
		},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			v := parseFile(t, filepath.Join(dir, c.file))
			if v.Subject != c.subject {
				t.Errorf("Subject = %q, want %q", v.Subject, c.subject)
			}
			if v.Parts != c.parts {
				t.Errorf("Parts = %d, want %d", v.Parts, c.parts)
			}
			got := texts(v)
			if c.file == "002.eml" && len(got) == 2 {
				// the forwarded text is long: check its start only
				if !strings.HasPrefix(got[1].content, "Hi A1,") {
					t.Errorf("forwarded text = %q", got[1].content)
				}
				got[1].content = ""
			}
			if !slices.Equal(got, c.texts) {
				t.Errorf("texts:\n got %+v\nwant %+v", got, c.texts)
			}
			if a := attachments(v); !slices.Equal(a, c.attach) {
				t.Errorf("attachments = %q, want %q", a, c.attach)
			}
			var hosts []string
			for _, u := range v.URLs {
				hosts = append(hosts, u.Host)
			}
			if !slices.Equal(hosts, c.hosts) {
				t.Errorf("URL hosts = %q, want %q", hosts, c.hosts)
			}
			if v.Truncated {
				t.Errorf("truncated: %v", v.Limits)
			}
		})
	}
}

// A multipart nested 10,000 deep is read to the depth limit, the rest
// skipped, the text after it still found.
func TestDeepNesting(t *testing.T) {
	const levels = 10000
	var b strings.Builder
	b.WriteString("From: a@example.com\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n")
	for i := 0; i < levels; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", i, i+1)
	}
	fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\ninnermost\r\n--b%d--\r\n", levels, levels)
	for i := levels - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	v := parseString(b.String(), Limits{})
	checkBounds(t, v, Limits{})
	if v.MaxDepth != DefaultLimits.MaxDepth || !slices.Contains(v.Limits, LimitDepth) {
		t.Errorf("MaxDepth = %d, Limits %v: want the depth limit %d", v.MaxDepth, v.Limits, DefaultLimits.MaxDepth)
	}
	if v.Parts != DefaultLimits.MaxDepth+1 {
		t.Errorf("Parts = %d, want %d", v.Parts, DefaultLimits.MaxDepth+1)
	}
	if len(v.Texts) != 0 {
		t.Errorf("texts below the depth limit were read: %+v", texts(v))
	}

	// attached messages nested as deep
	b.Reset()
	for i := 0; i < levels; i++ {
		b.WriteString("Subject: level\r\nContent-Type: message/rfc822\r\n\r\n")
	}
	b.WriteString("Subject: last\r\n\r\nbottom\r\n")
	v = parseString(b.String(), Limits{})
	checkBounds(t, v, Limits{})
	if v.MaxDepth != DefaultLimits.MaxDepth || !slices.Contains(v.Limits, LimitDepth) {
		t.Errorf("rfc822 nesting: MaxDepth = %d, Limits %v", v.MaxDepth, v.Limits)
	}
}

// A message of 10,000 parts is read up to the part limit.
func TestManyParts(t *testing.T) {
	var b strings.Builder
	b.WriteString("Subject: many\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&b, "--x\r\nContent-Type: text/plain\r\n\r\npart %d http://h%d.example/\r\n", i, i)
	}
	b.WriteString("--x--\r\n")
	v := parseString(b.String(), Limits{})
	checkBounds(t, v, Limits{})
	if v.Parts != DefaultLimits.MaxParts || !slices.Contains(v.Limits, LimitParts) {
		t.Errorf("Parts = %d, Limits %v: want the part limit %d", v.Parts, v.Limits, DefaultLimits.MaxParts)
	}
	if len(v.Texts) != DefaultLimits.MaxParts-1 || v.Texts[0].Content != "part 0 http://h0.example/" {
		t.Errorf("%d texts, first %q", len(v.Texts), v.Texts[0].Content)
	}
	if len(v.URLs) != DefaultLimits.MaxParts-1 || v.URLs[5].Host != "h5.example" {
		t.Errorf("%d URLs, URLs[5] = %+v", len(v.URLs), v.URLs[5])
	}
	lim := Limits{MaxURLs: 10}
	v = parseString(b.String(), lim)
	if len(v.URLs) != 10 || !slices.Contains(v.Limits, LimitURLs) {
		t.Errorf("URL limit: %d URLs, limits %v", len(v.URLs), v.Limits)
	}
}

func makeZip(t *testing.T, pad int, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	if pad > 0 {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: "padding.bin", Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(bytes.Repeat([]byte{0xAA}, pad))
	}
	for _, n := range names {
		fh := &zip.FileHeader{Name: n, Method: zip.Deflate}
		if strings.HasSuffix(n, ".locked") {
			fh.Flags |= 1
		}
		w, err := zw.CreateHeader(fh)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "content of %s", n)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func withAttachment(name, ctype string, data []byte) string {
	enc := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	b.WriteString("From: a@example.com\r\nSubject: files\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--zz\r\n")
	fmt.Fprintf(&b, "Content-Type: %s\r\nContent-Disposition: attachment; filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", ctype, name)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--zz--\r\n")
	return b.String()
}

// The names inside a zip attachment are listed, from its central
// directory only, whatever the zip is declared as.
func TestZip(t *testing.T) {
	z := makeZip(t, 0, "invoice.pdf.exe", "docs/readme.txt", "secret.locked")
	v := parseString(withAttachment("docs.zip", "application/octet-stream", z), Limits{})
	checkBounds(t, v, Limits{})
	want := []string{"docs.zip|application/octet-stream|", "invoice.pdf.exe||docs.zip", "docs/readme.txt||docs.zip", "secret.locked||docs.zip"}
	if got := attachments(v); !slices.Equal(got, want) {
		t.Fatalf("attachments = %q, want %q", got, want)
	}
	if !v.Attachments[0].Zip || v.Attachments[0].Size != int64(len(z)) {
		t.Errorf("zip part: %+v (size want %d)", v.Attachments[0], len(z))
	}
	if v.Attachments[1].Encrypted || !v.Attachments[3].Encrypted {
		t.Errorf("encrypted flags: %+v", v.Attachments[1:])
	}
	if v.Attachments[1].Size != int64(len("content of invoice.pdf.exe")) {
		t.Errorf("entry size = %d", v.Attachments[1].Size)
	}

	// A large zip: the central directory is in the tail kept.
	big := makeZip(t, 3<<20, "payload.js")
	v = parseString(withAttachment("big.dat", "image/png", big), Limits{})
	if got := attachments(v); !slices.Equal(got, []string{"big.dat|image/png|", "padding.bin||big.dat", "payload.js||big.dat"}) {
		t.Errorf("large zip: attachments = %q, errors %q", got, v.Errors)
	}

	// A tail too small for the central directory: flagged, not read.
	v = parseString(withAttachment("big.zip", "application/zip", big), Limits{MaxZipTail: 16})
	if !slices.Contains(v.Limits, LimitZip) || len(v.Attachments) != 1 {
		t.Errorf("tiny tail: limits %v, attachments %q", v.Limits, attachments(v))
	}

	// Entry limit.
	many := makeZip(t, 0, "a", "b", "c", "d", "e")
	v = parseString(withAttachment("m.zip", "application/zip", many), Limits{MaxZipEntries: 2})
	if len(v.Attachments) != 3 || !slices.Contains(v.Limits, LimitZip) {
		t.Errorf("entry limit: attachments %q, limits %v", attachments(v), v.Limits)
	}

	// Not a zip, named as one.
	v = parseString(withAttachment("fake.zip", "application/zip", []byte("not a zip at all")), Limits{})
	if len(v.Attachments) != 1 || v.Attachments[0].Zip {
		t.Errorf("fake zip: %+v", v.Attachments)
	}
}

const hiddenHTML = `From: shop@example.com
Subject: offer
Content-Type: text/html; charset=utf-8

<html><head><title>Title text</title><style>p { color: red }</style></head>
<body bgcolor="#ffffff">
<p>Buy <b>cheap</b> watches at <a href="HTTP://Shop.Example.COM:80/deal?id=1">our shop</a>.</p>
<div style="display:none; max-height:0">preheader words hidden here</div>
<span style="font-size:0px">zero sized poison text</span>
<font color="#FFFFFF">white on white bayes words</font>
<p style="font-size: 1px">tiny font text</p>
<span style="visibility: hidden">invisible span</span>
<table><tr><td bgcolor="black"><font color="white">white on black is visible</font></td></tr></table>
<div style="background: url(x.png)"><span style="color:#fff">over an image</span></div>
<img src="//img.example.net/pixel.gif"><script>var s = "script text";</script>
<p>Visit www.example.org/page, today!
</body></html>
`

// HTML is reduced to its visible text; hidden text and its reason are set
// apart; URLs come from attributes and from the text.
func TestHTMLHidden(t *testing.T) {
	v := parseString(strings.ReplaceAll(hiddenHTML, "\n", "\r\n"), Limits{})
	checkBounds(t, v, Limits{})
	if len(v.Texts) != 1 || !v.Texts[0].FromHTML || !v.HTMLOnly {
		t.Fatalf("texts %+v, HTMLOnly %v", v.Texts, v.HTMLOnly)
	}
	text := v.Texts[0].Content
	for _, want := range []string{"Buy cheap watches at our shop.", "white on black is visible", "over an image", "Visit www.example.org/page, today!"} {
		if !strings.Contains(text, want) {
			t.Errorf("visible text lacks %q:\n%s", want, text)
		}
	}
	for _, hidden := range []string{"Title text", "color: red", "preheader", "poison", "bayes", "tiny font", "invisible", "script text"} {
		if strings.Contains(text, hidden) {
			t.Errorf("visible text has %q:\n%s", hidden, text)
		}
	}
	got := map[string]string{}
	for _, h := range v.Hidden {
		got[h.Reason] = h.Text
	}
	want := map[string]string{
		HiddenDisplayNone: "preheader words hidden here",
		HiddenZeroFont:    "zero sized poison text",
		HiddenSameColor:   "white on white bayes words",
		HiddenTinyFont:    "tiny font text",
		HiddenVisibility:  "invisible span",
	}
	if len(got) != len(want) {
		t.Errorf("hidden = %q, want %q", got, want)
	}
	for r, s := range want {
		if got[r] != s {
			t.Errorf("hidden[%s] = %q, want %q", r, got[r], s)
		}
	}
	var urls []string
	for _, u := range v.URLs {
		urls = append(urls, u.Norm)
	}
	wantURLs := []string{"http://shop.example.com/deal?id=1", "http://img.example.net/pixel.gif", "http://www.example.org/page"}
	if !slices.Equal(urls, wantURLs) {
		t.Errorf("URLs = %q, want %q", urls, wantURLs)
	}
}

// Encoded-words are decoded with their charsets and recorded.
func TestEncodedWords(t *testing.T) {
	msg := "From: =?utf-8?B?Sm9zw6kgR2FyY8OtYQ==?= <jose@example.es>\r\n" +
		"Reply-To: =?koi8-r?B?8NLJ18XU?= <x@example.ru>\r\n" +
		"Subject: =?iso-8859-1?Q?caf=E9?= =?utf-8?B?IGNyw6htZQ==?= and =?utf-8?Q?plain?= =?x-unknown?Q?abc?=\r\n" +
		"To: a@example.com, \"B, Person\" <b@example.com>\r\n" +
		"\r\nbody\r\n"
	v := parseString(msg, Limits{})
	checkBounds(t, v, Limits{})
	if want := "café crème and plain =?x-unknown?Q?abc?="; v.Subject != want {
		t.Errorf("Subject = %q, want %q", v.Subject, want)
	}
	if len(v.From) != 1 || v.From[0].Name != "José García" || v.From[0].Addr != "jose@example.es" || v.From[0].Domain() != "example.es" {
		t.Errorf("From = %+v", v.From)
	}
	if len(v.ReplyTo) != 1 || v.ReplyTo[0].Name != "Привет" {
		t.Errorf("Reply-To = %+v", v.ReplyTo)
	}
	if len(v.To) != 2 || v.To[1].Name != "B, Person" {
		t.Errorf("To = %+v", v.To)
	}
	var got []string
	for _, w := range v.Words {
		got = append(got, fmt.Sprintf("%s:%s:%c:%v:%v", w.Field, w.Charset, w.Encoding, w.ASCII, w.Bad))
	}
	want := []string{
		"Subject:iso-8859-1:Q:false:false", "Subject:utf-8:B:false:false", "Subject:utf-8:Q:true:false", "Subject:x-unknown:Q:false:true",
		"From:utf-8:B:false:false", "Reply-To:koi8-r:B:false:false",
	}
	if !slices.Equal(got, want) {
		t.Errorf("words:\n got %q\nwant %q", got, want)
	}
}

// File names: RFC 2231 (with continuations), RFC 2047 (common though not
// standard), Content-Type name.
func TestFileNames(t *testing.T) {
	msg := "Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''na%C3%AFve%20file.pdf\r\n\r\nx\r\n" +
		"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment;\r\n filename*0=\"long\"; filename*1=\"name.pdf\"\r\n\r\nx\r\n" +
		"--b\r\nContent-Type: application/octet-stream; name=\"=?utf-8?B?0YTQsNC50LsuZXhl?=\"\r\n\r\nx\r\n" +
		"--b\r\nContent-Type: text/plain; name=notes.txt\r\n\r\nsome notes\r\n" +
		"--b\r\nContent-Type: application/x-thing; name=\"unterminated\r\n\r\nx\r\n" +
		"--b--\r\n"
	v := parseString(msg, Limits{})
	checkBounds(t, v, Limits{})
	want := []string{"naïve file.pdf|application/pdf|", "longname.pdf|application/pdf|", "файл.exe|application/octet-stream|",
		"notes.txt|text/plain|", "unterminated|application/x-thing|"}
	if got := attachments(v); !slices.Equal(got, want) {
		t.Errorf("attachments:\n got %q\nwant %q", got, want)
	}
	if len(v.Texts) != 1 || v.Texts[0].Content != "some notes" {
		t.Errorf("texts = %+v", texts(v))
	}
}

// Charsets and transfer encodings of text parts are decoded.
func TestTextDecoding(t *testing.T) {
	msg := "Content-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=EFve caf=\r\n=E9\r\n" +
		"--b\r\nContent-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: base64\r\n\r\n8NLJ\r\n18XU\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nraw \xe9t\xe9\r\n" +
		"--b--\r\n"
	v := parseString(msg, Limits{})
	checkBounds(t, v, Limits{})
	want := []textWant{{"text/plain", "naïve café", false}, {"text/plain", "Привет", false}, {"text/plain", "raw été", false}}
	if got := texts(v); !slices.Equal(got, want) {
		t.Errorf("texts:\n got %+v\nwant %+v", got, want)
	}
	if v.HTMLOnly {
		t.Error("HTMLOnly without HTML")
	}
}

// A message over MaxBytes, or a text over MaxPartBytes, is described on
// what was read and flagged.
func TestLimits(t *testing.T) {
	body := strings.Repeat("word ", 10000)
	msg := "Subject: big\r\n\r\n" + body
	v := parseString(msg, Limits{MaxBytes: 1000})
	if v.Bytes != 1000 || !slices.Contains(v.Limits, LimitBytes) || v.Subject != "big" || len(v.Texts) != 1 {
		t.Errorf("MaxBytes: read %d, limits %v, texts %d", v.Bytes, v.Limits, len(v.Texts))
	}
	v = parseString(msg, Limits{MaxBytes: int64(len(msg))})
	if v.Truncated {
		t.Errorf("a message of exactly MaxBytes is flagged: %v", v.Limits)
	}
	v = parseString(msg, Limits{MaxPartBytes: 100})
	if len(v.Texts) != 1 || len(v.Texts[0].Content) != 100 || !v.Texts[0].Truncated || !slices.Contains(v.Limits, LimitPartBytes) {
		t.Errorf("MaxPartBytes: %d bytes kept, limits %v", len(v.Texts[0].Content), v.Limits)
	}
	hdr := "Subject: s\r\nX-Long: " + strings.Repeat("a", 5000) + "\r\nX-B: b\r\n\r\nbody\r\n"
	v = parseString(hdr, Limits{MaxHeaderBytes: 1000})
	if !slices.Contains(v.Limits, LimitHeader) || v.Header.Get("X-B") != "b" || v.Header.Has("X-Long") || v.Texts[0].Content != "body" {
		t.Errorf("MaxHeaderBytes: limits %v, X-B %q, body %q", v.Limits, v.Header.Get("X-B"), v.Texts[0].Content)
	}
	// A line longer than the line buffer is body, not a boundary.
	long := "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\n" + strings.Repeat("x", 3*lineBufSize) + "--q\r\n--q--\r\n"
	v = parseString(long, Limits{MaxPartBytes: 4 * lineBufSize})
	if len(v.Texts) != 1 || len(v.Texts[0].Content) != 3*lineBufSize+3 {
		t.Errorf("long line: %d texts", len(v.Texts))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v = ParseContext(ctx, strings.NewReader(msg), Limits{})
	if !slices.Contains(v.Limits, LimitTime) {
		t.Errorf("cancelled context: limits %v", v.Limits)
	}
}

func TestNormalizeURL(t *testing.T) {
	cases := []struct{ in, norm, host string }{
		{"HTTP://WWW.Example.COM/Path?Q=1", "http://www.example.com/Path?Q=1", "www.example.com"},
		{"https://user:pw@bank.example:443/login", "https://bank.example/login", "bank.example"},
		{"http://paypal.com@evil.example/x", "http://evil.example/x", "evil.example"},
		{`http:\\evil.example\x`, "http://evil.example/x", "evil.example"},
		{"www.example.org.", "http://www.example.org", "www.example.org"},
		{"http://bücher.example/", "http://xn--bcher-kva.example/", "xn--bcher-kva.example"},
		{"http://%65vil.example/", "http://evil.example/", "evil.example"},
		{"http://[::1]:8080/", "http://[::1]:8080/", "[::1]"},
		{"//cdn.example/a.js", "http://cdn.example/a.js", "cdn.example"},
	}
	for _, c := range cases {
		norm, host, ok := normalizeURL(c.in)
		if !ok || norm != c.norm || host != c.host {
			t.Errorf("normalizeURL(%q) = %q, %q, %v; want %q, %q", c.in, norm, host, ok, c.norm, c.host)
		}
	}
	for _, bad := range []string{"mailto:a@example.com", "javascript:alert(1)", "cid:img1", "/relative", "http://", "http://a b/", "http://x.example:port/"} {
		if n, h, ok := normalizeURL(bad); ok {
			t.Errorf("normalizeURL(%q) = %q, %q: want refused", bad, n, h)
		}
	}
}
