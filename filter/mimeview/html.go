package mimeview

import (
	"strconv"
	"strings"

	"golang.org/x/net/html"
)

const (
	maxHTMLStack  = 256 // open elements tracked; deeper ones inherit
	maxHidden     = 256 // hidden runs kept
	maxHiddenText = 256 // bytes kept of one hidden run
)

// frame is an open HTML element and what it passes to its content.
type frame struct {
	tag    string
	skip   bool   // content never shown (script, style, title...)
	hidden string // why its content is hidden, "" when shown
	color  string // text colour, "#rrggbb" or ""
	bg     string // background colour, "#rrggbb", "?" (an image), or ""
}

var (
	voidTags = map[string]bool{"area": true, "base": true, "br": true, "col": true, "embed": true, "hr": true,
		"img": true, "input": true, "link": true, "meta": true, "param": true, "source": true, "track": true, "wbr": true}
	skipTags  = map[string]bool{"script": true, "style": true, "title": true, "template": true, "xml": true}
	blockTags = map[string]bool{"p": true, "div": true, "br": true, "tr": true, "li": true, "h1": true, "h2": true,
		"h3": true, "h4": true, "h5": true, "h6": true, "table": true, "blockquote": true, "hr": true, "pre": true,
		"ul": true, "ol": true, "dl": true, "dt": true, "dd": true, "section": true, "article": true, "header": true,
		"footer": true, "center": true, "form": true, "body": true}
	// autoClose: a start tag that closes an open element of the same kind
	// at the top (HTML's implied end tags, simplified).
	autoClose = map[string]bool{"p": true, "li": true, "td": true, "th": true, "tr": true, "option": true, "dt": true, "dd": true}
	urlAttrs  = map[string]bool{"href": true, "src": true, "background": true, "action": true, "formaction": true}
)

// htmlText is the state of one HTML part's conversion.
type htmlText struct {
	p     *parser
	out   strings.Builder
	stack []frame
	space bool // a separator is owed before the next word
	// the current hidden run
	run *Hidden
}

// html returns the visible text of an HTML document, records its hidden
// text and its URLs. It reads tokens, not a tree: linear in the input,
// whatever the nesting.
func (p *parser) html(src string) string {
	h := &htmlText{p: p, stack: []frame{{tag: "#root"}}}
	z := html.NewTokenizer(strings.NewReader(src))
	z.SetMaxBuf(len(src) + 1)
	for {
		if p.halt() {
			break
		}
		switch z.Next() {
		case html.ErrorToken:
			h.endRun()
			return strings.TrimSpace(h.out.String())
		case html.TextToken:
			h.text(string(z.Text()))
		case html.StartTagToken:
			h.start(z, false)
		case html.SelfClosingTagToken:
			h.start(z, true)
		case html.EndTagToken:
			name, _ := z.TagName()
			h.end(string(name))
		}
	}
	h.endRun()
	return strings.TrimSpace(h.out.String())
}

func (h *htmlText) top() *frame { return &h.stack[len(h.stack)-1] }

func (h *htmlText) start(z *html.Tokenizer, selfClosing bool) {
	name, hasAttr := z.TagName()
	tag := string(name)
	parent := *h.top()
	if autoClose[tag] && parent.tag == tag || (tag == "td" || tag == "th") && (parent.tag == "td" || parent.tag == "th") {
		h.pop()
		parent = *h.top()
	}
	if tag == "body" {
		// a body start ends an unclosed head
		for i := len(h.stack) - 1; i > 0; i-- {
			if h.stack[i].tag == "head" {
				h.stack = h.stack[:i]
				break
			}
		}
		parent = *h.top()
	}
	f := frame{tag: tag, skip: parent.skip || skipTags[tag], hidden: parent.hidden, color: parent.color, bg: parent.bg}
	for hasAttr {
		var k, v []byte
		k, v, hasAttr = z.TagAttr()
		key := string(k)
		switch {
		case urlAttrs[key]:
			h.p.addURL(string(v), true)
		case key == "style":
			h.style(&f, string(v))
		case key == "hidden":
			if f.hidden == "" {
				f.hidden = HiddenDisplayNone
			}
		case key == "color" && tag == "font":
			if c, ok := parseColor(string(v)); ok {
				f.color = c
			}
		case key == "bgcolor":
			if c, ok := parseColor(string(v)); ok {
				f.bg = c
			}
		}
	}
	if blockTags[tag] {
		h.newline()
	} else if tag == "td" || tag == "th" {
		h.space = true
	}
	if voidTags[tag] || selfClosing || len(h.stack) >= maxHTMLStack {
		return
	}
	h.stack = append(h.stack, f)
}

func (h *htmlText) pop() {
	if len(h.stack) > 1 {
		h.stack = h.stack[:len(h.stack)-1]
	}
}

// end closes the nearest open element of that name (an end tag with no
// open element is ignored).
func (h *htmlText) end(tag string) {
	for i := len(h.stack) - 1; i > 0 && i >= len(h.stack)-64; i-- {
		if h.stack[i].tag == tag {
			h.stack = h.stack[:i]
			break
		}
	}
	if blockTags[tag] {
		h.newline()
	}
}

func (h *htmlText) newline() {
	if h.out.Len() > 0 {
		s := h.out.String()
		if s[len(s)-1] != '\n' {
			h.out.WriteByte('\n')
		}
	}
	h.space = false
}

// text adds a text token: to the visible text, or to a hidden run.
func (h *htmlText) text(t string) {
	f := h.top()
	if f.skip {
		return
	}
	words := strings.Fields(t)
	if len(words) == 0 {
		if t != "" {
			h.space = true
		}
		return
	}
	leading := t[0] == ' ' || t[0] == '\t' || t[0] == '\n' || t[0] == '\r'
	trailing := strings.TrimRight(t, " \t\r\n") != t
	s := strings.Join(words, " ")
	reason := f.hidden
	if reason == "" && f.color != "" && f.bg != "?" && sameColor(f.color, orWhite(f.bg)) {
		reason = HiddenSameColor
	}
	if reason != "" {
		h.hidden(reason, s)
		h.space = h.space || trailing
		return
	}
	h.endRun()
	if h.out.Len() > 0 && (h.space || leading) {
		if last := h.out.String()[h.out.Len()-1]; last != ' ' && last != '\n' {
			h.out.WriteByte(' ')
		}
	}
	h.out.WriteString(s)
	h.space = trailing
	h.p.textURLs(s)
}

// hidden adds text to the current hidden run, or starts a new one.
func (h *htmlText) hidden(reason, s string) {
	if h.run != nil && h.run.Reason != reason {
		h.endRun()
	}
	if h.run == nil {
		h.run = &Hidden{Reason: reason}
	} else {
		s = " " + s
	}
	h.run.Len += len(s)
	if room := maxHiddenText - len(h.run.Text); room > 0 {
		h.run.Text += cutUTF8(s, room)
	}
}

func (h *htmlText) endRun() {
	if h.run == nil {
		return
	}
	r := *h.run
	h.run = nil
	p := h.p
	if len(p.v.Hidden) >= maxHidden {
		p.limit(LimitText)
		return
	}
	r.Text = strings.TrimSpace(r.Text)
	if p.textBytes+len(r.Text) > p.lim.MaxTextBytes {
		p.limit(LimitText)
		return
	}
	p.textBytes += len(r.Text)
	p.v.Hidden = append(p.v.Hidden, r)
}

// style applies the declarations of a style attribute that hide text or
// set its colours.
func (h *htmlText) style(f *frame, css string) {
	if len(css) > 4096 {
		css = css[:4096]
	}
	for _, decl := range strings.Split(css, ";") {
		k, v, ok := strings.Cut(decl, ":")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.ToLower(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "!important")))
		switch k {
		case "display":
			if v == "none" {
				setHidden(f, HiddenDisplayNone)
			}
		case "visibility":
			if v == "hidden" || v == "collapse" {
				setHidden(f, HiddenVisibility)
			}
		case "opacity":
			if x, err := strconv.ParseFloat(v, 64); err == nil && x <= 0.05 {
				setHidden(f, HiddenOpacity)
			}
		case "font-size":
			if r := fontSize(v); r != "" {
				setHidden(f, r)
			}
		case "color":
			if c, ok := parseColor(v); ok {
				f.color = c
			}
		case "background-color":
			if c, ok := parseColor(v); ok {
				f.bg = c
			}
		case "background", "background-image":
			if strings.Contains(v, "url(") {
				f.bg = "?"
			} else if k == "background" {
				for _, tok := range strings.Fields(v) {
					if c, ok := parseColor(tok); ok {
						f.bg = c
						break
					}
				}
			}
		}
	}
}

func setHidden(f *frame, reason string) {
	if f.hidden == "" {
		f.hidden = reason
	}
}

// fontSize tells whether a CSS font-size hides text: zero, or too small to
// read (under 3px, 2pt or 0.2em).
func fontSize(v string) string {
	num := strings.TrimRight(v, "abcdefghijklmnopqrstuvwxyz%")
	unit := v[len(num):]
	x, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil {
		return ""
	}
	if x <= 0 {
		return HiddenZeroFont
	}
	switch unit {
	case "px", "":
		if x < 3 {
			return HiddenTinyFont
		}
	case "pt":
		if x < 2 {
			return HiddenTinyFont
		}
	case "em", "rem":
		if x < 0.2 {
			return HiddenTinyFont
		}
	case "%":
		if x < 20 {
			return HiddenTinyFont
		}
	}
	return ""
}

var namedColors = map[string]string{
	"white": "#ffffff", "black": "#000000", "red": "#ff0000", "green": "#008000", "blue": "#0000ff",
	"yellow": "#ffff00", "gray": "#808080", "grey": "#808080", "silver": "#c0c0c0", "maroon": "#800000",
	"navy": "#000080", "purple": "#800080", "teal": "#008080", "olive": "#808000", "lime": "#00ff00",
	"aqua": "#00ffff", "fuchsia": "#ff00ff", "orange": "#ffa500", "whitesmoke": "#f5f5f5", "snow": "#fffafa",
	"ivory": "#fffff0", "ghostwhite": "#f8f8ff",
}

// parseColor reads #rgb, #rrggbb, rgb(r,g,b) and a few colour names.
func parseColor(v string) (string, bool) {
	v = strings.ToLower(strings.TrimSpace(v))
	if c, ok := namedColors[v]; ok {
		return c, true
	}
	if strings.HasPrefix(v, "rgb(") && strings.HasSuffix(v, ")") {
		parts := strings.Split(v[4:len(v)-1], ",")
		if len(parts) != 3 {
			return "", false
		}
		var b strings.Builder
		b.WriteByte('#')
		for _, s := range parts {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 0 || n > 255 {
				return "", false
			}
			b.WriteString(hex2(n))
		}
		return b.String(), true
	}
	v = strings.TrimPrefix(v, "#")
	if !isHex(v) {
		return "", false
	}
	switch len(v) {
	case 3:
		return "#" + string([]byte{v[0], v[0], v[1], v[1], v[2], v[2]}), true
	case 6:
		return "#" + v, true
	}
	return "", false
}

func hex2(n int) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[n>>4], digits[n&15]})
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return s != ""
}

func orWhite(bg string) string {
	if bg == "" {
		return "#ffffff"
	}
	return bg
}

// sameColor: two #rrggbb colours no channel of which differs by more than
// 12 (text a reader cannot tell from its background).
func sameColor(a, b string) bool {
	if len(a) != 7 || len(b) != 7 {
		return false
	}
	for i := 1; i < 7; i += 2 {
		x, _ := strconv.ParseUint(a[i:i+2], 16, 8)
		y, _ := strconv.ParseUint(b[i:i+2], 16, 8)
		d := int(x) - int(y)
		if d < -12 || d > 12 {
			return false
		}
	}
	return true
}
