package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A dialogue is a plain request/reply exchange with a node, kept as a text
// file under testdata/dialogues/: each test plays the files of its own
// directory against its node, one subtest per file, named after it. A file
// is read line by line:
//
//	# a comment; blank lines are ignored
//	connect: relay            the listener to dial (first line; default inbound)
//	s: 220                    read one reply: its code and, if given, its
//	                          enhanced code; an x matches any number (501 5.x.x)
//	c: MAIL FROM:<a@b.example> send the line and CRLF
//	raw: "DATA\r\n" + "\n"*600000 + "partial"
//	                          send exactly these bytes: Go-quoted strings,
//	                          each repeated *N times, joined with +
//	s: closed                 the server closes the connection, with no
//	                          further reply
//	s: closed-raw             the server closes the connection; what it sent
//	                          before holds no SMTP reply line (after a failed
//	                          TLS handshake: a TLS alert at most)
//	repeat 19                 play the lines up to the matching "end" 19 times
//	end
//
// The greeting is a reply like any other: a file starts with "s: 220".
type dialogue struct {
	file     string
	listener string // "inbound" or "relay"
	steps    []step
}

// step is one line of a dialogue.
type step struct {
	line int    // in the file, for failure messages
	send []byte // c: and raw:
	want string // s:
}

const (
	wantClosed    = "closed"
	wantClosedRaw = "closed-raw"
)

// playDialogues plays every dialogue of testdata/dialogues/dir on n.
func playDialogues(t *testing.T, dir string, n *node) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "dialogues", dir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("e2e: no dialogues in testdata/dialogues/%s (%v)", dir, err)
	}
	for _, f := range files {
		d, err := readDialogue(f)
		if err != nil {
			t.Fatalf("e2e: %v", err)
		}
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			addr := n.inbound
			if d.listener == "relay" {
				addr = n.relay
			}
			d.play(t, addr)
		})
	}
}

// readDialogue parses a dialogue file.
func readDialogue(path string) (*dialogue, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d := &dialogue{file: path, listener: "inbound"}
	type block struct {
		times int
		start int // index in d.steps
	}
	var open []block
	sc := bufio.NewScanner(bytes.NewReader(data))
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimRight(sc.Text(), " \t")
		bad := func(why string) error { return fmt.Errorf("%s:%d: %s: %q", path, ln, why, line) }
		key, arg, _ := strings.Cut(line, ":")
		arg = strings.TrimPrefix(arg, " ")
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case key == "connect":
			if len(d.steps) > 0 || (arg != "inbound" && arg != "relay") {
				return nil, bad("connect: inbound or relay, before the first step")
			}
			d.listener = arg
		case key == "c":
			d.steps = append(d.steps, step{line: ln, send: []byte(arg + "\r\n")})
		case key == "raw":
			b, err := parseRaw(arg)
			if err != nil {
				return nil, bad(err.Error())
			}
			d.steps = append(d.steps, step{line: ln, send: b})
		case key == "s":
			if arg == "" {
				return nil, bad("s: wants a reply code, closed or closed-raw")
			}
			d.steps = append(d.steps, step{line: ln, want: arg})
		case strings.HasPrefix(line, "repeat "):
			times, err := strconv.Atoi(strings.TrimPrefix(line, "repeat "))
			if err != nil || times < 1 {
				return nil, bad("repeat takes a count")
			}
			open = append(open, block{times, len(d.steps)})
		case line == "end":
			if len(open) == 0 {
				return nil, bad("end without repeat")
			}
			b := open[len(open)-1]
			open = open[:len(open)-1]
			body := d.steps[b.start:]
			for range b.times - 1 {
				d.steps = append(d.steps, body...)
			}
		default:
			return nil, bad("not a dialogue line")
		}
	}
	if len(open) > 0 {
		return nil, fmt.Errorf("%s: repeat without end", path)
	}
	return d, sc.Err()
}

// parseRaw reads `"a\r\n" + "x"*3000 + "b"`.
func parseRaw(expr string) ([]byte, error) {
	var out []byte
	rest := strings.TrimSpace(expr)
	for {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return nil, fmt.Errorf("raw: want a Go-quoted string at %q", rest)
		}
		s, _ := strconv.Unquote(q)
		rest = strings.TrimSpace(rest[len(q):])
		times := 1
		if r, ok := strings.CutPrefix(rest, "*"); ok {
			num, after, _ := strings.Cut(strings.TrimSpace(r), " ")
			if times, err = strconv.Atoi(num); err != nil || times < 1 {
				return nil, fmt.Errorf("raw: bad repeat count %q", num)
			}
			rest = strings.TrimSpace(after)
		}
		out = append(out, strings.Repeat(s, times)...)
		if rest == "" {
			return out, nil
		}
		after, ok := strings.CutPrefix(rest, "+")
		if !ok {
			return nil, fmt.Errorf("raw: want + between strings at %q", rest)
		}
		rest = strings.TrimSpace(after)
	}
}

// play runs the dialogue on a new connection to addr.
func (d *dialogue) play(t *testing.T, addr string) {
	t.Helper()
	c, err := dialSMTP(addr)
	if err != nil {
		t.Fatalf("e2e: dial %s: %v", addr, err)
	}
	defer c.close()
	for _, s := range d.steps {
		what := fmt.Sprintf("%s:%d", d.file, s.line)
		switch {
		case s.send != nil:
			if err := c.write(s.send); err != nil {
				t.Fatalf("e2e: %s: write %.60q: %v", what, s.send, err)
			}
		case s.want == wantClosed:
			expectClosed(t, c, what)
		case s.want == wantClosedRaw:
			_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
			rest, err := io.ReadAll(c.r)
			if err != nil && !isConnReset(err) {
				t.Fatalf("e2e: %s: the connection stays open: %v", what, err)
			}
			if bytes.Contains(rest, []byte("250")) || bytes.Contains(rest, []byte("\r\n")) {
				t.Errorf("e2e: %s: the server answered in plain text: %q", what, rest)
			}
		default:
			rep, err := c.readReply()
			if err != nil {
				t.Fatalf("e2e: %s: %v", what, err)
			}
			if !replyMatches(rep, s.want) {
				t.Fatalf("e2e: %s: got %q, want %q", what, rep, s.want)
			}
		}
	}
}

// replyMatches is rep.is(want), where an x in want's enhanced code matches
// any number: "501 5.x.x".
func replyMatches(rep smtpReply, want string) bool {
	code, enh, ok := strings.Cut(want, " ")
	if !ok || !strings.Contains(enh, "x") {
		return rep.is(want)
	}
	if !rep.is(code) {
		return false
	}
	f := strings.Fields(strings.Replace(rep.lines[0], "-", " ", 1) + " -")
	got, pat := strings.Split(f[1], "."), strings.Split(enh, ".")
	if len(got) != len(pat) {
		return false
	}
	for i := range pat {
		if _, err := strconv.Atoi(got[i]); err != nil || pat[i] != "x" && pat[i] != got[i] {
			return false
		}
	}
	return true
}

// TestDialogueSyntax: the dialogue reader expands repeats and raw
// expressions, and refuses what it does not know, naming the line.
func TestDialogueSyntax(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	d, err := readDialogue(write("ok.txt", "# comment\n\nconnect: relay\ns: 220\nrepeat 2\nc: NOOP\nrepeat 2\ns: 250\nend\nend\nraw: \"a\\r\\n\" + \"x\"*3 + \"b\"\ns: closed\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range d.steps {
		if s.send != nil {
			got = append(got, fmt.Sprintf("send %q", s.send))
		} else {
			got = append(got, "want "+s.want)
		}
	}
	want := []string{"want 220", `send "NOOP\r\n"`, "want 250", "want 250", `send "NOOP\r\n"`, "want 250", "want 250", `send "a\r\nxxxb"`, "want closed"}
	if d.listener != "relay" || strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("listener %s, steps %v; want relay, %v", d.listener, got, want)
	}
	for _, bad := range []string{"x: what\n", "repeat 2\nc: NOOP\n", "end\n", "raw: \"a\" \"b\"\n", "raw: \"a\"*0\n", "s:\n", "s: 220\nconnect: relay\n"} {
		if _, err := readDialogue(write("bad.txt", bad)); err == nil || !strings.Contains(err.Error(), "bad.txt") {
			t.Errorf("%q: error %v, want one naming the file", bad, err)
		}
	}
	for _, tc := range []struct {
		line, want string
		ok         bool
	}{
		{"501 5.1.7 Bad sender", "501 5.x.x", true},
		{"501 5.5.2 Syntax", "501 5.x.7", false},
		{"501 Syntax error", "501 5.x.x", false},
		{"554 5.7.1 Relay denied", "554 5.7.1", true},
	} {
		if got := replyMatches(smtpReply{code: 0, lines: []string{tc.line}}, tc.want); got != tc.ok {
			t.Errorf("replyMatches(%q, %q) = %v", tc.line, tc.want, got)
		}
	}
}
