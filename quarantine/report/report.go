// Package report is the quarantine's daily report: once a day, each
// recipient with messages held since the previous report gets one mail
// listing them (sender, subject, score, date) with signed links to their
// quarantine page and to each message (package userpage). The mail goes
// through the node's own delivery queue.
package report

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/mxgate/mxgate/quarantine"
	"github.com/mxgate/mxgate/quarantine/userpage"
	"github.com/mxgate/mxgate/smarthost"
)

// Report is one recipient's new held entries, newest first.
type Report struct {
	Recipient string
	Entries   []quarantine.Entry
}

// Collect lists the entries held now that were received after since and
// up to until, grouped by recipient (lower-cased), recipients in order.
// With domains, only recipients in those domains (or subdomains) get a
// report: the gateway never mails a report out of its own domains.
func Collect(ctx context.Context, store quarantine.Store, since, until time.Time, domains []string) ([]Report, error) {
	f := quarantine.Filter{State: quarantine.StateHeld, Until: until, Limit: quarantine.MaxLimit}
	if !since.IsZero() {
		f.Since = since.Add(time.Nanosecond) // Since is inclusive; since was reported
	}
	by := map[string]*Report{}
	for {
		p, err := store.List(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, e := range p.Entries {
			if e.Reason == quarantine.ReasonRejected {
				continue // the sender got a 550; the copy is the operator's
			}
			seen := map[string]bool{}
			for _, r := range e.Recipients {
				r = userpage.NormalizeRecipient(r)
				if seen[r] || !inDomains(r, domains) {
					continue
				}
				seen[r] = true
				if by[r] == nil {
					by[r] = &Report{Recipient: r}
				}
				by[r].Entries = append(by[r].Entries, e)
			}
		}
		if p.Next == "" {
			break
		}
		f.Before = p.Next
	}
	out := make([]Report, 0, len(by))
	for _, r := range by {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Recipient < out[j].Recipient })
	return out, nil
}

func inDomains(addr string, domains []string) bool {
	if len(domains) == 0 {
		return true
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	d := addr[at+1:]
	for _, want := range domains {
		want = strings.ToLower(want)
		if d == want || strings.HasSuffix(d, "."+want) {
			return true
		}
	}
	return false
}

// Composer writes report messages.
type Composer struct {
	// From is the report's sender, postmaster@ the first domain.
	From string
	// Hostname names the node in the Message-ID.
	Hostname string
	Links    userpage.Links
	// LinkLifetime is how long the links work (ReportLinkLifetime when
	// 0).
	LinkLifetime time.Duration
}

// maxShown bounds the entries listed in one report; the page has them all.
const maxShown = 100

// Message is r's report as an RFC 5322 message (CRLF line ends, UTF-8
// text, every line well under 998 bytes), at now.
func (c Composer) Message(r Report, now time.Time) ([]byte, error) {
	life := c.LinkLifetime
	if life == 0 {
		life = userpage.ReportLinkLifetime
	}
	exp := now.Add(life)
	page, err := c.Links.Page(r.Recipient, exp)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	n := len(r.Entries)
	subject := fmt.Sprintf("Quarantine: %d new message%s held for you", n, plural(n))
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	fmt.Fprintf(&b, "From: Mail gateway <%s>\r\n", c.From)
	fmt.Fprintf(&b, "To: <%s>\r\n", r.Recipient)
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <quarantine-report.%d.%s@%s>\r\n", now.Unix(), hex.EncodeToString(rnd[:]), c.Hostname)
	b.WriteString("Auto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\nPrecedence: bulk\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	fmt.Fprintf(&b, "Since the last report, %d message%s addressed to %s %s held as\r\n", n, plural(n), r.Recipient, map[bool]string{true: "was", false: "were"}[n == 1])
	b.WriteString("possible spam or malware, and not delivered. If one is mail you want,\r\n")
	b.WriteString("open it below and release it; the others are deleted when they expire.\r\n\r\n")
	fmt.Fprintf(&b, "All your held messages:\r\n%s\r\n\r\n", page)
	for i, e := range r.Entries {
		if i == maxShown {
			fmt.Fprintf(&b, "... and %d more: see the page above.\r\n", n-maxShown)
			break
		}
		link, err := c.Links.Entry(r.Recipient, e.ID, exp)
		if err != nil {
			return nil, err
		}
		sender := e.Sender
		if sender == "" {
			sender = "<>"
		}
		fmt.Fprintf(&b, "%d. From:    %s\r\n", i+1, line(sender, 200))
		fmt.Fprintf(&b, "   Subject: %s\r\n", line(e.Subject, 200))
		fmt.Fprintf(&b, "   Score:   %s\r\n", strconv.FormatFloat(e.Score, 'f', 1, 64))
		fmt.Fprintf(&b, "   Date:    %s\r\n", e.Time.Local().Format("2006-01-02 15:04 MST"))
		fmt.Fprintf(&b, "   Open:    %s\r\n\r\n", link)
	}
	fmt.Fprintf(&b, "These links work until %s. Opening one changes nothing:\r\nthe page has the buttons.\r\n", exp.Local().Format("2006-01-02 15:04 MST"))
	return b.Bytes(), nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// line makes s one printable line of at most n bytes (a hostile subject
// cannot add header lines or break the layout).
func line(s string, n int) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "") {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			r = ' '
		}
		if b.Len()+len(string(r)) > n {
			b.WriteString("...")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Mailer sends one report.
type Mailer interface {
	Mail(ctx context.Context, from, rcpt string, msg []byte) (queueID string, err error)
}

// ListenerReport is the envelope's listener of reports in the queue.
const ListenerReport = "quarantine-report"

// QueueMailer spools reports into the node's delivery queue.
type QueueMailer struct{ Queue *smarthost.Queue }

// Mail implements Mailer.
func (m QueueMailer) Mail(ctx context.Context, from, rcpt string, msg []byte) (string, error) {
	d, err := m.Queue.NewDraft()
	if err != nil {
		return "", err
	}
	defer d.Abort()
	if _, err := io.Copy(d, bytes.NewReader(msg)); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	env := smarthost.Envelope{From: from, Rcpts: []string{rcpt}, ReceivedAt: time.Now(), Listener: ListenerReport}
	if err := m.Queue.Commit(d, env); err != nil {
		return "", err
	}
	return d.ID(), nil
}

// Sender sends the reports and remembers, in the quarantine's store, when
// it last did: in a cluster the time is replicated, so a new leader
// reports from where the old one stopped (one report per recipient and
// period, across a change of leader).
type Sender struct {
	Store    quarantine.Store
	Composer Composer
	Mailer   Mailer
	// Domains limits who gets a report (Collect).
	Domains []string
	// LegacyStatePath is the file where earlier versions kept the time of
	// the last report: read while the store has no time yet.
	LegacyStatePath string
	// Settle leaves entries received in the last Settle before a run to
	// the next report: a message is committed to the quarantine a little
	// after its time (the end of its DATA), and must not fall between
	// two reports.
	Settle time.Duration
	Logger *slog.Logger
}

type state struct {
	Last time.Time `json:"last"`
}

// Last is the end of the period the last report covered (zero: never).
func (s *Sender) Last(ctx context.Context) (time.Time, error) {
	last, err := s.Store.LastReport(ctx)
	if err != nil || !last.IsZero() || s.LegacyStatePath == "" {
		return last, err
	}
	b, err := os.ReadFile(s.LegacyStatePath)
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", s.LegacyStatePath, err)
	}
	return st.Last, nil
}

func (s *Sender) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Run sends one report to each recipient with entries received since the
// last run and up to now-Settle, then records that time. It returns how
// many reports it queued. A failure to queue one report stops the run
// without recording it, so the next run sends them all again (a
// recipient may then get the same entries twice, never lose them).
func (s *Sender) Run(ctx context.Context, now time.Time) (int, error) {
	last, err := s.Last(ctx)
	if err != nil {
		return 0, err
	}
	until := now.Add(-s.Settle)
	if !until.After(last) {
		return 0, nil
	}
	reports, err := Collect(ctx, s.Store, last, until, s.Domains)
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, r := range reports {
		msg, err := s.Composer.Message(r, now)
		if err != nil {
			s.log().Warn("quarantine report not composed", "event", "quarantine_report", "to", r.Recipient, "error", err.Error())
			continue
		}
		qid, err := s.Mailer.Mail(ctx, s.Composer.From, r.Recipient, msg)
		if err != nil {
			return sent, fmt.Errorf("quarantine report to %s: %w", r.Recipient, err)
		}
		sent++
		metricReports.Inc()
		s.log().Info("quarantine report queued", "event", "quarantine_report", "to", r.Recipient, "queue_id", qid, "entries", len(r.Entries))
	}
	if err := s.Store.ReportSent(ctx, until); err != nil {
		return sent, fmt.Errorf("quarantine report: recording its time: %w", err)
	}
	metricRuns.Inc()
	return sent, nil
}

// Next is the first time at or after now that is hh:mm in now's location.
func Next(now time.Time, hh, mm int) time.Time {
	t := time.Date(now.Year(), now.Month(), now.Day(), hh, mm, 0, 0, now.Location())
	if t.Before(now) {
		t = time.Date(now.Year(), now.Month(), now.Day()+1, hh, mm, 0, 0, now.Location())
	}
	return t
}

// ParseAt parses "HH:MM" (24-hour).
func ParseAt(s string) (hh, mm int, err error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, 0, fmt.Errorf("%q: want HH:MM, e.g. 07:00", s)
	}
	return t.Hour(), t.Minute(), nil
}
