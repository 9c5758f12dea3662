package heuristics

import (
	"fmt"
	"net/mail"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode"

	"golang.org/x/net/publicsuffix"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/mimeview"
)

// maxDetail bounds a symbol's detail.
const maxDetail = 120

// Evaluate returns the heuristics' symbols for a message's view; envFrom
// is the envelope sender ("" for the null sender).
func Evaluate(v *mimeview.View, envFrom string) []filter.Symbol {
	var out []filter.Symbol
	add := func(name, detail string) {
		if len(detail) > maxDetail {
			detail = cut(detail, maxDetail) + "..."
		}
		out = append(out, filter.Symbol{Name: name, Score: Scores[name], Detail: detail})
	}
	for _, r := range rules {
		if detail, ok := r.fn(v, envFrom); ok {
			add(r.name, detail)
		}
	}
	return out
}

type rule struct {
	name string
	fn   func(v *mimeview.View, envFrom string) (string, bool)
}

var rules = []rule{
	{MissingDate, func(v *mimeview.View, _ string) (string, bool) { return "", !v.Header.Has("Date") }},
	{InvalidDate, invalidDate},
	{MissingMID, func(v *mimeview.View, _ string) (string, bool) { return "", !v.Header.Has("Message-Id") }},
	{InvalidMsgID, invalidMsgID},
	{FreemailReplyTo, freemailReplyTo},
	{FromNameHasAddr, fromNameHasAddr},
	{EnvFromMismatch, envFromMismatch},
	{HTMLOnly, func(v *mimeview.View, _ string) (string, bool) { return "", v.HTMLOnly }},
	{HTMLHiddenText, htmlHidden},
	{HTMLInvisibleText, htmlInvisible},
	{SubjExcessCaps, subjCaps},
	{BodyExcessCaps, bodyCaps},
	{SubjExcessEncoded, excessEncoded("Subject")},
	{FromExcessEncoded, excessEncoded("From")},
	{ManyEncodedWords, manyWords},
	{MixedCharsetHeader, mixedCharsets},
	{AttachExecutable, attachExecutable},
	{AttachDoubleExt, attachDoubleExt},
	{AttachExecInZip, attachExecInZip},
	{SubjScriptMismatch, subjScriptMismatch},
	{MixedScriptSubj, func(v *mimeview.View, _ string) (string, bool) { return mixedWords(v.Subject, 1) }},
	{MixedScriptFrom, mixedScriptFrom},
	{MixedScriptBody, func(v *mimeview.View, _ string) (string, bool) { return mixedWords(bodyText(v), 3) }},
}

// --- Date and Message-ID ---

// dateLayouts are accepted beyond net/mail.ParseDate: the forms of RFC
// 5322's obsolete syntax that real mailers still write.
var dateLayouts = []string{
	"Mon, 2 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 2006 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04 -0700",
	"2 Jan 2006 15:04:05 -0700",
	"Mon, 2 Jan 06 15:04:05 -0700",
	"Mon, 2 Jan 06 15:04:05 MST",
	"Mon, 2 Jan 2006 15:04:05",
}

func invalidDate(v *mimeview.View, _ string) (string, bool) {
	if !v.Header.Has("Date") {
		return "", false
	}
	d := v.Header.Get("Date")
	if validDate(d) {
		return "", false
	}
	return d, true
}

func validDate(d string) bool {
	d = strings.TrimSpace(d)
	if _, err := mail.ParseDate(d); err == nil {
		return true
	}
	// drop a trailing comment, as in "-0700 (PDT)", and doubled spaces
	if i := strings.IndexByte(d, '('); i > 0 {
		d = strings.TrimSpace(d[:i])
	}
	d = strings.Join(strings.Fields(d), " ")
	for _, l := range dateLayouts {
		if _, err := time.Parse(l, d); err == nil {
			return true
		}
	}
	_, err := mail.ParseDate(d)
	return err == nil
}

// msgID is RFC 5322's msg-id, leniently: <left@right> with no white space
// or angle brackets inside.
var msgID = regexp.MustCompile(`^<[^<>\s@]+@[^<>\s@]+>$`)

func invalidMsgID(v *mimeview.View, _ string) (string, bool) {
	if !v.Header.Has("Message-Id") {
		return "", false
	}
	id := strings.TrimSpace(v.Header.Get("Message-Id"))
	if msgID.MatchString(id) {
		return "", false
	}
	return id, true
}

// --- From, Reply-To and the envelope ---

// freemail are domains where anyone gets an address.
var freemail = map[string]bool{
	"gmail.com": true, "googlemail.com": true, "yahoo.com": true, "yahoo.co.uk": true, "yahoo.fr": true,
	"yahoo.de": true, "yahoo.es": true, "yahoo.it": true, "yahoo.co.jp": true, "ymail.com": true,
	"rocketmail.com": true, "hotmail.com": true, "hotmail.co.uk": true, "hotmail.fr": true, "hotmail.de": true,
	"hotmail.it": true, "outlook.com": true, "live.com": true, "msn.com": true, "aol.com": true, "aim.com": true,
	"icloud.com": true, "me.com": true, "mac.com": true, "mail.com": true, "gmx.com": true, "gmx.net": true,
	"gmx.de": true, "web.de": true, "mail.ru": true, "bk.ru": true, "inbox.ru": true, "list.ru": true,
	"yandex.ru": true, "yandex.com": true, "rambler.ru": true, "qq.com": true, "163.com": true, "126.com": true,
	"sina.com": true, "protonmail.com": true, "proton.me": true, "zoho.com": true, "tutanota.com": true,
	"excite.com": true, "lycos.com": true, "juno.com": true, "netscape.net": true, "usa.net": true,
	"rediffmail.com": true, "naver.com": true, "hanmail.net": true, "libero.it": true, "laposte.net": true,
	"seznam.cz": true, "wp.pl": true, "o2.pl": true, "interia.pl": true,
}

// orgDomain is a domain's registrable part (example.co.uk for
// a.b.example.co.uk).
func orgDomain(d string) string {
	d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	if d == "" {
		return ""
	}
	if o, err := publicsuffix.EffectiveTLDPlusOne(d); err == nil {
		return o
	}
	return d
}

func fromDomain(v *mimeview.View) string {
	if len(v.From) == 0 {
		return ""
	}
	return v.From[0].Domain()
}

func freemailReplyTo(v *mimeview.View, _ string) (string, bool) {
	from := orgDomain(fromDomain(v))
	for _, a := range v.ReplyTo {
		rt := orgDomain(a.Domain())
		if rt != "" && freemail[rt] && rt != from {
			return a.Addr + " for " + from, true
		}
	}
	return "", false
}

// addrInText finds an email address written in a text.
var addrInText = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@([A-Za-z0-9\-]+\.)+[A-Za-z]{2,}`)

func fromNameHasAddr(v *mimeview.View, _ string) (string, bool) {
	if len(v.From) == 0 {
		return "", false
	}
	f := v.From[0]
	m := addrInText.FindString(f.Name)
	if m == "" {
		return "", false
	}
	named := orgDomain(m[strings.LastIndexByte(m, '@')+1:])
	if named == orgDomain(f.Domain()) {
		return "", false
	}
	return fmt.Sprintf("%q <%s>", f.Name, f.Addr), true
}

func envFromMismatch(v *mimeview.View, envFrom string) (string, bool) {
	i := strings.LastIndexByte(envFrom, '@')
	if i < 0 {
		return "", false
	}
	env, from := orgDomain(envFrom[i+1:]), orgDomain(fromDomain(v))
	if env == "" || from == "" || env == from {
		return "", false
	}
	return env + " for " + from, true
}

// --- HTML ---

func hiddenBytes(v *mimeview.View, reasons ...string) (int, string) {
	n, sample := 0, ""
	for _, h := range v.Hidden {
		for _, r := range reasons {
			if h.Reason == r {
				n += h.Len
				if sample == "" {
					sample = h.Reason + ": " + h.Text
				}
			}
		}
	}
	return n, sample
}

func htmlHidden(v *mimeview.View, _ string) (string, bool) {
	n, sample := hiddenBytes(v, mimeview.HiddenDisplayNone, mimeview.HiddenVisibility, mimeview.HiddenOpacity)
	return sample, n >= 200
}

func htmlInvisible(v *mimeview.View, _ string) (string, bool) {
	n, sample := hiddenBytes(v, mimeview.HiddenZeroFont, mimeview.HiddenTinyFont, mimeview.HiddenSameColor)
	return sample, n >= 20
}

// --- capitals ---

// caps counts the cased letters of s and the capitals among them.
func caps(s string) (letters, upper int) {
	for _, r := range s {
		switch {
		case unicode.IsUpper(r):
			letters++
			upper++
		case unicode.IsLower(r):
			letters++
		}
	}
	return
}

func subjCaps(v *mimeview.View, _ string) (string, bool) {
	letters, upper := caps(v.Subject)
	if letters >= 10 && float64(upper) >= 0.7*float64(letters) {
		return v.Subject, true
	}
	return "", false
}

func bodyCaps(v *mimeview.View, _ string) (string, bool) {
	letters, upper := caps(bodyText(v))
	if letters >= 200 && float64(upper) >= 0.5*float64(letters) {
		return fmt.Sprintf("%d of %d letters", upper, letters), true
	}
	return "", false
}

// bodyText is the message's own text (not that of attached messages):
// its plain text parts, or its HTML text when it has no plain text.
func bodyText(v *mimeview.View) string {
	var b strings.Builder
	for _, html := range []bool{false, true} {
		for _, t := range v.Texts {
			if !t.Embedded && t.FromHTML == html {
				b.WriteString(t.Content)
				b.WriteByte('\n')
			}
		}
		if strings.TrimSpace(b.String()) != "" {
			break
		}
	}
	return b.String()
}

// --- encoded-words ---

func fieldWords(v *mimeview.View, field string) []mimeview.EncodedWord {
	var out []mimeview.EncodedWord
	for _, w := range v.Words {
		if w.Field == field {
			out = append(out, w)
		}
	}
	return out
}

// excessEncoded: every encoded-word of the field decodes to plain ASCII,
// text that needed no encoding (hiding words from filters that do not
// decode).
func excessEncoded(field string) func(*mimeview.View, string) (string, bool) {
	return func(v *mimeview.View, _ string) (string, bool) {
		ws := fieldWords(v, field)
		if len(ws) == 0 {
			return "", false
		}
		for _, w := range ws {
			if !w.ASCII {
				return "", false
			}
		}
		return fmt.Sprintf("%d encoded-words of ASCII", len(ws)), true
	}
}

func manyWords(v *mimeview.View, _ string) (string, bool) {
	n := len(fieldWords(v, "Subject")) + len(fieldWords(v, "From"))
	return fmt.Sprintf("%d encoded-words", n), n > 20
}

func mixedCharsets(v *mimeview.View, _ string) (string, bool) {
	for _, field := range []string{"Subject", "From", "Reply-To", "To"} {
		seen := map[string]bool{}
		var list []string
		for _, w := range fieldWords(v, field) {
			cs := w.Charset
			if cs == "us-ascii" || cs == "ascii" || seen[cs] {
				continue
			}
			seen[cs] = true
			list = append(list, cs)
		}
		if len(list) > 1 {
			return field + ": " + strings.Join(list, ","), true
		}
	}
	return "", false
}

// --- attachments ---

// executable are extensions a click runs (Windows executables and
// scripts, Java, shortcuts, disk images that mount with them inside).
var executable = map[string]bool{
	"exe": true, "scr": true, "js": true, "jse": true, "vbs": true, "vbe": true, "bat": true, "cmd": true,
	"com": true, "pif": true, "jar": true, "lnk": true, "hta": true, "iso": true, "img": true, "vhd": true,
	"vhdx": true, "msi": true, "msp": true, "cpl": true, "wsf": true, "wsh": true, "ws": true, "wsc": true,
	"ps1": true, "psm1": true, "reg": true, "scf": true, "inf": true, "application": true, "gadget": true,
	"appx": true, "msix": true, "apk": true, "dll": true, "sct": true, "chm": true, "url": true, "xll": true,
}

// decoy are extensions a double extension pretends to be.
var decoy = map[string]bool{
	"pdf": true, "doc": true, "docx": true, "xls": true, "xlsx": true, "ppt": true, "pptx": true, "txt": true,
	"rtf": true, "jpg": true, "jpeg": true, "png": true, "gif": true, "bmp": true, "tif": true, "tiff": true,
	"htm": true, "html": true, "zip": true, "rar": true, "mp3": true, "mp4": true, "avi": true, "wav": true,
	"csv": true, "odt": true, "ods": true, "xml": true, "eml": true, "msg": true,
}

// bidiControls reorder the letters a reader sees of a name
// ("invoice\u202Efdp.exe" shows as "invoiceexe.pdf").
const bidiControls = "\u202A\u202B\u202C\u202D\u202E\u2066\u2067\u2068\u2069\u200E\u200F"

// extensions are the extensions of a file name, last first, lower-cased,
// without padding ("a.pdf   .exe": exe, pdf).
func extensions(name string) []string {
	name = strings.ToLower(path.Base(strings.ReplaceAll(name, `\`, "/")))
	name = strings.Map(func(r rune) rune {
		if strings.ContainsRune(bidiControls, r) {
			return -1
		}
		return r
	}, name)
	parts := strings.Split(name, ".")
	if len(parts) < 2 {
		return nil
	}
	var out []string
	for i := len(parts) - 1; i >= 1 && len(out) < 3; i-- {
		out = append(out, strings.TrimSpace(parts[i]))
	}
	return out
}

func isExecutable(name string) bool {
	ext := extensions(name)
	return len(ext) > 0 && executable[ext[0]]
}

func attachExecutable(v *mimeview.View, _ string) (string, bool) {
	for _, a := range v.Attachments {
		if a.InZip == "" && isExecutable(a.Name) {
			return a.Name, true
		}
	}
	return "", false
}

func attachDoubleExt(v *mimeview.View, _ string) (string, bool) {
	for _, a := range v.Attachments {
		if strings.ContainsAny(a.Name, bidiControls) {
			return a.Name, true
		}
		ext := extensions(a.Name)
		if len(ext) >= 2 && executable[ext[0]] && decoy[ext[1]] {
			return a.Name, true
		}
	}
	return "", false
}

func attachExecInZip(v *mimeview.View, _ string) (string, bool) {
	for _, a := range v.Attachments {
		if a.InZip != "" && isExecutable(a.Name) {
			return a.InZip + ": " + a.Name, true
		}
	}
	return "", false
}

// --- scripts ---

// script is the writing system of a letter, with Han, kana and Hangul
// as one (CJK text mixes them); "" for anything else.
func script(r rune) string {
	switch {
	case r < 0x80:
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return "Latin"
		}
		return ""
	case unicode.Is(unicode.Latin, r):
		return "Latin"
	case unicode.Is(unicode.Cyrillic, r):
		return "Cyrillic"
	case unicode.Is(unicode.Greek, r):
		return "Greek"
	case unicode.Is(unicode.Han, r), unicode.Is(unicode.Hiragana, r), unicode.Is(unicode.Katakana, r), unicode.Is(unicode.Hangul, r):
		return "CJK"
	case unicode.Is(unicode.Arabic, r):
		return "Arabic"
	case unicode.Is(unicode.Hebrew, r):
		return "Hebrew"
	case unicode.Is(unicode.Thai, r):
		return "Thai"
	case unicode.Is(unicode.Devanagari, r):
		return "Devanagari"
	case unicode.Is(unicode.Armenian, r):
		return "Armenian"
	case unicode.Is(unicode.Georgian, r):
		return "Georgian"
	}
	return ""
}

// dominant is the script of at least 60% of the letters of s, when s has
// at least min of them.
func dominant(s string, min int) string {
	counts := map[string]int{}
	total := 0
	for _, r := range s {
		if sc := script(r); sc != "" {
			counts[sc]++
			total++
		}
	}
	if total < min {
		return ""
	}
	for sc, n := range counts {
		if float64(n) >= 0.6*float64(total) {
			return sc
		}
	}
	return ""
}

func subjScriptMismatch(v *mimeview.View, _ string) (string, bool) {
	subj := dominant(v.Subject, 4)
	if subj == "" {
		return "", false
	}
	body := dominant(bodyText(v), 30)
	if body == "" || body == subj {
		return "", false
	}
	return "subject " + subj + ", body " + body, true
}

// mixedWords finds words whose letters mix Latin, Cyrillic and Greek: a
// homoglyph spelling ("Pаypal" with a Cyrillic а). It fires at min such
// words.
func mixedWords(s string, min int) (string, bool) {
	var found []string
	n := 0
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsMark(r) }) {
		seen := map[string]bool{}
		for _, r := range w {
			switch sc := script(r); sc {
			case "Latin", "Cyrillic", "Greek":
				seen[sc] = true
			}
		}
		if len(seen) > 1 {
			n++
			if len(found) < 3 {
				found = append(found, w)
			}
		}
	}
	return strings.Join(found, " "), n >= min
}

func mixedScriptFrom(v *mimeview.View, _ string) (string, bool) {
	if len(v.From) == 0 {
		return "", false
	}
	return mixedWords(v.From[0].Name, 1)
}

// cut cuts s to n bytes at most, at a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n]
}
