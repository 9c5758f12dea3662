package report

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/quarantine"
	"github.com/mxgate/mxgate/quarantine/quarantinetest"
	"github.com/mxgate/mxgate/quarantine/userpage"
)

type sent struct{ from, rcpt, msg string }

type fakeMailer struct{ sent []sent }

func (m *fakeMailer) Mail(_ context.Context, from, rcpt string, msg []byte) (string, error) {
	m.sent = append(m.sent, sent{from, rcpt, string(msg)})
	return "qid", nil
}

func newSender(t *testing.T) (*Sender, *fakeMailer, *quarantine.LocalStore, *userpage.Signer) {
	t.Helper()
	dir := t.TempDir()
	st, err := quarantine.OpenLocal(filepath.Join(dir, "q.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	signer, err := userpage.NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMailer{}
	s := &Sender{Store: st, Mailer: m, Domains: []string{"example.com"},
		Settle:   10 * time.Minute,
		Composer: Composer{From: "postmaster@example.com", Hostname: "mx1.example.com", Links: userpage.Links{Base: "https://mx1.example.com:8025/", Signer: signer}}}
	return s, m, st, signer
}

var linkRE = regexp.MustCompile(`https://mx1\.example\.com:8025(/quarantine[^\s?]*)\?t=(\S+)`)

// TestReportContentAndOnlyNew: each recipient gets one report listing its
// entries (sender, subject, score, date) with signed links for itself
// only; a later run reports only entries received since, and none when
// there is nothing new.
func TestReportContentAndOnlyNew(t *testing.T) {
	s, m, st, signer := newSender(t)
	ctx := context.Background()
	a := quarantinetest.Entry("aaa1", 1)
	a.Recipients = []string{"User@example.com", "boss@example.com", "someone@elsewhere.test"}
	a.Subject = "cheap\r\nBcc: victim@example.org"
	quarantinetest.Put(t, st, a, quarantinetest.Message("aaa1", 100))
	b := quarantinetest.Entry("bbb1", 2)
	quarantinetest.Put(t, st, b, quarantinetest.Message("bbb1", 100))
	rej := quarantinetest.Entry("rej1", 3)
	rej.Reason = quarantine.ReasonRejected
	quarantinetest.Put(t, st, rej, quarantinetest.Message("rej1", 100))
	rel := quarantinetest.Entry("rel1", 4)
	quarantinetest.Put(t, st, rel, quarantinetest.Message("rel1", 100))
	if _, err := st.Delete(ctx, "rel1", "admin", quarantinetest.T0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}

	now := quarantinetest.T0.Add(time.Hour)
	n, err := s.Run(ctx, now)
	if err != nil || n != 2 {
		t.Fatalf("first run: %d %v, want 2 reports", n, err)
	}
	byRcpt := map[string]string{}
	for _, x := range m.sent {
		if x.from != "postmaster@example.com" {
			t.Errorf("envelope sender %q", x.from)
		}
		byRcpt[x.rcpt] = x.msg
	}
	user, boss := byRcpt["user@example.com"], byRcpt["boss@example.com"]
	if user == "" || boss == "" || len(byRcpt) != 2 {
		t.Fatalf("reports to %v", byRcpt)
	}
	for _, want := range []string{"From: Mail gateway <postmaster@example.com>\r\n", "To: <user@example.com>\r\n",
		"Subject: Quarantine: 2 new messages held for you\r\n", "Auto-Submitted: auto-generated\r\n",
		"From:    spammer@bad.example", "Subject: cheap  Bcc: victim@example.org", "Score:   9.0", "Subject: offer bbb1",
		quarantinetest.T0.Add(time.Minute).Local().Format("2006-01-02 15:04")} {
		if !strings.Contains(user, want) {
			t.Errorf("user's report lacks %q:\n%s", want, user)
		}
	}
	if strings.Contains(user, "rej1") || strings.Contains(user, "rel1") || strings.Contains(user, "\nBcc:") {
		t.Errorf("user's report lists a rejected or deleted entry, or a header injection:\n%s", user)
	}
	if strings.Contains(boss, "bbb1") || !strings.Contains(boss, "Subject: Quarantine: 1 new message held for you") {
		t.Errorf("boss's report:\n%s", boss)
	}
	links := linkRE.FindAllStringSubmatch(user, -1)
	if len(links) != 3 {
		t.Fatalf("links %q", links)
	}
	for i, l := range links {
		id := strings.TrimPrefix(strings.TrimPrefix(l[1], "/quarantine"), "/")
		c, err := signer.Verify(l[2], userpage.ActionView, id, now)
		if err != nil || c.Recipient != "user@example.com" || c.ID != id || !c.Expires.Equal(now.Add(userpage.ReportLinkLifetime)) {
			t.Errorf("link %d %s: %+v %v", i, l[0], c, err)
		}
		if id != "" {
			if _, err := signer.Verify(l[2], userpage.ActionRelease, id, now); err == nil {
				t.Errorf("a report link acts: %s", l[0])
			}
		}
	}
	for _, line := range strings.Split(user, "\r\n") {
		if len(line) > 998 || strings.Contains(line, "\n") {
			t.Errorf("bad line %q", line)
		}
	}

	// Nothing new: nothing sent.
	m.sent = nil
	if n, err := s.Run(ctx, now.Add(time.Hour)); err != nil || n != 0 || len(m.sent) != 0 {
		t.Fatalf("second run: %d %v %d", n, err, len(m.sent))
	}
	// A new entry, and one inside the settle window of the run.
	c := quarantinetest.Entry("ccc1", 60+59)
	quarantinetest.Put(t, st, c, quarantinetest.Message("ccc1", 100))
	late := quarantinetest.Entry("late1", 3*60-5)
	quarantinetest.Put(t, st, late, quarantinetest.Message("late1", 100))
	if n, err := s.Run(ctx, now.Add(2*time.Hour)); err != nil || n != 1 {
		t.Fatalf("third run: %d %v", n, err)
	}
	if msg := m.sent[0].msg; m.sent[0].rcpt != "user@example.com" || !strings.Contains(msg, "ccc1") ||
		strings.Contains(msg, "aaa1") || strings.Contains(msg, "bbb1") || strings.Contains(msg, "late1") {
		t.Errorf("third run's report:\n%s", msg)
	}
	m.sent = nil
	if n, err := s.Run(ctx, now.Add(3*time.Hour)); err != nil || n != 1 || !strings.Contains(m.sent[0].msg, "late1") {
		t.Errorf("the entry in the settle window was not in the next report: %d %v", n, err)
	}
}

func TestNextAndParseAt(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	now := time.Date(2026, 3, 2, 7, 30, 0, 0, loc)
	if got := Next(now, 7, 0); !got.Equal(time.Date(2026, 3, 3, 7, 0, 0, 0, loc)) {
		t.Errorf("Next after: %v", got)
	}
	if got := Next(now, 8, 15); !got.Equal(time.Date(2026, 3, 2, 8, 15, 0, 0, loc)) {
		t.Errorf("Next before: %v", got)
	}
	if got := Next(now, 7, 30); !got.Equal(now) {
		t.Errorf("Next at: %v", got)
	}
	if h, m, err := ParseAt("07:05"); err != nil || h != 7 || m != 5 {
		t.Errorf("ParseAt: %d %d %v", h, m, err)
	}
	for _, bad := range []string{"7:00", "24:00", "07:60", "0700", "", "07:00:00"} {
		if _, _, err := ParseAt(bad); err == nil {
			t.Errorf("ParseAt(%q) accepted", bad)
		}
	}
}

// The time a run covered is kept in the quarantine's store (replicated
// in a cluster), not in a file; an earlier version's file is read only
// while the store has no time.
func TestReportTimeInStore(t *testing.T) {
	s, m, st, _ := newSender(t)
	ctx := context.Background()
	legacy := filepath.Join(t.TempDir(), "quarantine-report.json")
	old := quarantinetest.T0.Add(30 * time.Minute)
	if err := os.WriteFile(legacy, []byte(`{"last":"`+old.Format(time.RFC3339Nano)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s.LegacyStatePath = legacy
	quarantinetest.Put(t, st, quarantinetest.Entry("old1", 10), quarantinetest.Message("old1", 100))
	quarantinetest.Put(t, st, quarantinetest.Entry("new1", 40), quarantinetest.Message("new1", 100))
	if last, err := s.Last(ctx); err != nil || !last.Equal(old) {
		t.Fatalf("from the legacy file: %v %v", last, err)
	}
	now := quarantinetest.T0.Add(2 * time.Hour)
	if n, err := s.Run(ctx, now); err != nil || n != 1 || strings.Contains(m.sent[0].msg, "old1") {
		t.Fatalf("run: %d %v", n, err)
	}
	want := now.Add(-s.Settle)
	if last, err := st.LastReport(ctx); err != nil || !last.Equal(want) {
		t.Errorf("store's report time %v %v, want %v", last, err, want)
	}
	if err := os.Remove(legacy); err != nil {
		t.Fatal(err)
	}
	if last, err := s.Last(ctx); err != nil || !last.Equal(want) {
		t.Errorf("without the file: %v %v, want %v", last, err, want)
	}
}
