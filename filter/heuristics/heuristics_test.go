package heuristics

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/mimeview"
)

// msg builds a message: a clean header unless overridden (a field set to
// "" is left out), then the body as given (with its own MIME header lines
// when it has any).
func msg(fields map[string]string, body string) string {
	base := [][2]string{
		{"From", "Alice Example <alice@example.com>"},
		{"To", "bob@example.net"},
		{"Subject", "Lunch on Friday"},
		{"Date", "Tue, 1 Oct 2024 10:00:00 +0200"},
		{"Message-ID", "<123.456@mail.example.com>"},
	}
	var b strings.Builder
	seen := map[string]bool{}
	for _, f := range base {
		seen[f[0]] = true
		v := f[1]
		if o, ok := fields[f[0]]; ok {
			v = o
		}
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\r\n", f[0], v)
		}
	}
	for k, v := range fields {
		if !seen[k] && v != "" {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if !strings.HasPrefix(body, "Content-Type:") {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
	}
	b.WriteString(body)
	return b.String()
}

const plainBody = "Hi Bob,\r\nshall we meet at noon at the usual place? I booked a table.\r\nAlice\r\n"

func attachMsg(name string, data []byte) string {
	return msg(nil, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"+plainBody+
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"+
		"Content-Disposition: attachment; filename=\""+name+"\"\r\n\r\n"+base64.StdEncoding.EncodeToString(data)+"\r\n--b--\r\n")
}

func zipOf(t *testing.T, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("x"))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func html(body string) string {
	return "Content-Type: text/html; charset=utf-8\r\n\r\n<html><body>" + body + "</body></html>\r\n"
}

func symbols(raw, env string) map[string]filter.Symbol {
	v := mimeview.Parse(strings.NewReader(raw), mimeview.Limits{})
	out := map[string]filter.Symbol{}
	for _, s := range Evaluate(v, env) {
		out[s.Name] = s
	}
	return out
}

// Every heuristic fires on a message that has what it looks for, and not
// on a near twin without it; the clean message fires none.
func TestHeuristics(t *testing.T) {
	const env = "alice@example.com"
	cases := []struct {
		symbol   string
		has, not string
		hasEnv   string
	}{
		{MissingDate, msg(map[string]string{"Date": ""}, plainBody), msg(nil, plainBody), env},
		{InvalidDate, msg(map[string]string{"Date": "yesterday at noon"}, plainBody),
			msg(map[string]string{"Date": "Fri, 07 Oct 1994 16:15:05 -0700 (PDT)"}, plainBody), env},
		{MissingMID, msg(map[string]string{"Message-ID": ""}, plainBody), msg(nil, plainBody), env},
		{InvalidMsgID, msg(map[string]string{"Message-ID": "no-angle-brackets"}, plainBody),
			msg(map[string]string{"Message-ID": "<a.b+c@[192.0.2.1]>"}, plainBody), env},
		{FreemailReplyTo, msg(map[string]string{"Reply-To": "claims.dept@gmail.com"}, plainBody),
			msg(map[string]string{"Reply-To": "list@lists.example.com"}, plainBody), env},
		{FromNameHasAddr, msg(map[string]string{"From": "\"service@paypal.com\" <x@evil.example>"}, plainBody),
			msg(map[string]string{"From": "\"alice@mail.example.com\" <alice@example.com>"}, plainBody), env},
		{EnvFromMismatch, msg(nil, plainBody), msg(nil, plainBody), "bounce@unrelated.example"},
		{HTMLOnly, msg(nil, html("<p>Hello Bob, lunch at noon?</p>")),
			msg(nil, "Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\nHello Bob\r\n--a\r\n"+
				"Content-Type: text/html\r\n\r\n<p>Hello Bob</p>\r\n--a--\r\n"), env},
		{HTMLHiddenText, msg(nil, html("<p>Buy now</p><div style=\"display:none\">"+strings.Repeat("poison words ", 20)+"</div>")),
			msg(nil, html("<p>Buy now</p><div style=\"display:none\">Your weekly preview text</div>")), env},
		{HTMLInvisibleText, msg(nil, html("<p>Buy now</p><span style=\"font-size:0\">random bayes poison text</span>")),
			msg(nil, html("<p>Buy now</p><span style=\"font-size:9px\">the small print of the offer</span>")), env},
		{HTMLInvisibleText, msg(nil, html("<p>Buy now</p><font color=\"#fefefe\">random bayes poison text</font>")),
			msg(nil, html("<table><tr><td bgcolor=\"#000000\"><font color=\"#ffffff\">white on black is fine</font></td></tr></table>")), env},
		{SubjExcessCaps, msg(map[string]string{"Subject": "MAKE MONEY FAST NOW"}, plainBody),
			msg(map[string]string{"Subject": "Re: NASA and ESA news"}, plainBody), env},
		{BodyExcessCaps, msg(nil, strings.Repeat("THIS IS THE BEST OFFER EVER MADE TO YOU. ", 10)),
			msg(nil, strings.Repeat("This is an ordinary sentence with a NASA acronym. ", 10)), env},
		{SubjExcessEncoded, msg(map[string]string{"Subject": "=?utf-8?B?RnJlZSB2aWFncmE=?="}, plainBody),
			msg(map[string]string{"Subject": "=?utf-8?Q?Caf=C3=A9_on_Friday?="}, plainBody), env},
		{FromExcessEncoded, msg(map[string]string{"From": "=?utf-8?B?QWxpY2U=?= <alice@example.com>"}, plainBody),
			msg(map[string]string{"From": "=?utf-8?Q?Alic=C3=A9?= <alice@example.com>"}, plainBody), env},
		{ManyEncodedWords, msg(map[string]string{"Subject": strings.Repeat("=?utf-8?Q?=C3=A9?= ", 25)}, plainBody),
			msg(map[string]string{"Subject": strings.Repeat("=?utf-8?Q?=C3=A9?= ", 5)}, plainBody), env},
		{MixedCharsetHeader, msg(map[string]string{"Subject": "=?koi8-r?B?8NLJ18XU?= =?utf-8?Q?=C3=A9?="}, plainBody),
			msg(map[string]string{"Subject": "=?utf-8?B?0J/RgNC40LLQtdGC?= =?utf-8?Q?=C3=A9?="}, plainBody), env},
		{AttachExecutable, attachMsg("setup.exe", []byte("MZ")), attachMsg("report.pdf", []byte("%PDF")), env},
		{AttachExecutable, attachMsg("Invoice.JS", []byte("x")), attachMsg("notes.txt", []byte("x")), env},
		{AttachDoubleExt, attachMsg("invoice.pdf.exe", []byte("MZ")), attachMsg("archive.tar.gz", []byte("x")), env},
		{AttachDoubleExt, attachMsg("invoice\u202Efdp.exe", []byte("MZ")), attachMsg("invoice.exe", []byte("MZ")), env},
		{AttachExecInZip, attachMsg("docs.zip", zipOf(t, "readme.txt", "scan.pdf.scr")), attachMsg("docs.zip", zipOf(t, "readme.txt", "a.pdf")), env},
		{SubjScriptMismatch, msg(map[string]string{"Subject": "Специальное предложение"}, plainBody),
			msg(map[string]string{"Subject": "Специальное предложение"}, "Привет, Боб! Встретимся в полдень у кафе, я заказала столик на двоих.\r\n"), env},
		{MixedScriptSubj, msg(map[string]string{"Subject": "Your Pаypal account"}, plainBody),
			msg(map[string]string{"Subject": "Your Paypal account, Привет"}, plainBody), env},
		{MixedScriptFrom, msg(map[string]string{"From": "=?utf-8?B?0KBheVBhbA==?= <service@evil.example>"}, plainBody),
			msg(map[string]string{"From": "PayPal <service@evil.example>"}, plainBody), env},
		{MixedScriptBody, msg(nil, "Dear сustomer, уour Paypal aссount is lосked.\r\n"),
			msg(nil, "Dear customer, your account is fine. Привет!\r\n"), env},
	}
	for _, c := range cases {
		t.Run(c.symbol, func(t *testing.T) {
			has := symbols(c.has, c.hasEnv)
			s, ok := has[c.symbol]
			if !ok {
				t.Errorf("%s not found in its message; symbols: %v", c.symbol, has)
			} else if s.Score != Scores[c.symbol] || s.Score <= 0 || len(s.Detail) > maxDetail+3 {
				t.Errorf("symbol %+v: want score %v and a bounded detail", s, Scores[c.symbol])
			}
			if not := symbols(c.not, env); len(not) > 0 {
				if _, bad := not[c.symbol]; bad {
					t.Errorf("%s found in the message without it: %v", c.symbol, not)
				}
			}
		})
	}
	if clean := symbols(msg(nil, plainBody), env); len(clean) != 0 {
		t.Errorf("clean message: symbols %v", clean)
	}
	if s := symbols(msg(nil, plainBody), ""); len(s) != 0 {
		t.Errorf("null sender: symbols %v", s)
	}
}

// Every symbol has a default score and is in the package documentation's
// table.
func TestScoresDocumented(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for name, score := range Scores {
		line := fmt.Sprintf("%s %s", name, strings.TrimSpace(fmt.Sprintf("%6.1f", score)))
		found := false
		for _, l := range strings.Split(string(doc), "\n") {
			if strings.Join(strings.Fields(strings.TrimPrefix(l, "//")), " ") != "" &&
				strings.HasPrefix(strings.Join(strings.Fields(strings.TrimPrefix(l, "//")), " "), line) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s (%.1f) is not in the table of doc.go", name, score)
		}
	}
	if len(rules)+1 != len(Scores) {
		t.Errorf("%d rules and %d scores (GTUBE apart)", len(rules), len(Scores)-1)
	}
}

// writeMessage spools raw into a file and opens it as the pipeline does.
func writeMessage(t *testing.T, raw string) *filter.Message {
	t.Helper()
	path := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := filter.OpenMessage("Q1", path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The checks read the spooled message through Message.View; GTUBE scores
// 1000 wherever it is in a text part, and nothing without it.
func TestChecks(t *testing.T) {
	body := &filter.Body{Conn: &filter.Conn{ID: "s1"}, From: "x@spam.example",
		Msg: writeMessage(t, msg(map[string]string{"Subject": "FREE MONEY FOR YOU", "Date": ""}, html("<p>Click here</p>")))}
	res := Check{}.CheckBody(context.Background(), body)
	got := map[string]bool{}
	for _, s := range res.Symbols {
		got[s.Name] = true
	}
	for _, want := range []string{MissingDate, SubjExcessCaps, HTMLOnly, EnvFromMismatch} {
		if !got[want] {
			t.Errorf("heuristics check: %s missing from %v", want, res.Symbols)
		}
	}
	if Check.Name(Check{}) != "heuristics" || GTUBECheck.Name(GTUBECheck{}) != "gtube" {
		t.Error("check names")
	}
	if r := (GTUBECheck{}).CheckBody(context.Background(), body); len(r.Symbols) != 0 {
		t.Errorf("gtube on a message without it: %v", r.Symbols)
	}

	for _, raw := range []string{
		msg(nil, "Test message\r\n"+gtubeString+"\r\n"),
		msg(nil, "Content-Type: multipart/mixed; boundary=g\r\n\r\n--g\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
			base64.StdEncoding.EncodeToString([]byte("<p>test "+gtubeString+"</p>"))+"\r\n--g--\r\n"),
	} {
		b := &filter.Body{Conn: &filter.Conn{ID: "s2"}, Msg: writeMessage(t, raw)}
		r := GTUBECheck{}.CheckBody(context.Background(), b)
		if len(r.Symbols) != 1 || r.Symbols[0].Name != GTUBE || r.Symbols[0].Score != 1000 {
			t.Errorf("gtube: %v", r.Symbols)
		}
	}
	// the pipeline adds it up: GTUBE alone rejects
	p := filter.New(filter.Config{Body: []filter.BodyCheck{Check{}, GTUBECheck{}}, Thresholds: filter.Thresholds{Tag: 5, Quarantine: 8, Reject: 15}})
	d := p.Body(context.Background(), &filter.Body{Conn: &filter.Conn{ID: "s3"}, Msg: writeMessage(t, msg(nil, gtubeString))}, nil)
	if d.Action != filter.Reject || d.Score < 1000 {
		t.Errorf("pipeline decision on GTUBE: %v score %v", d.Action, d.Score)
	}
}

// A message that cannot be read gives no symbol but the view's error.
func TestUnreadableMessage(t *testing.T) {
	m := &filter.Message{QueueID: "Q2", Path: filepath.Join(t.TempDir(), "gone")}
	v := m.View()
	if len(v.Errors) != 1 || m.View() != v {
		t.Errorf("view of a missing file: %+v", v.Errors)
	}
	if r := (GTUBECheck{}).CheckBody(context.Background(), &filter.Body{Msg: m}); len(r.Symbols) != 0 {
		t.Errorf("symbols %v", r.Symbols)
	}
}
