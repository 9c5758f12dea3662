package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium runs Debian's headless Chromium with args and returns its
// standard output.
func chromium(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("e2e: chromium not installed (scripts/install-deps.sh installs Debian's chromium): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("e2e: chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

// artefactDir is where tests leave files for a person to look at:
// $MXGATE_E2E_ARTEFACTS, else mxgate-e2e-artefacts in the temporary
// directory.
func artefactDir(t *testing.T) string {
	dir := os.Getenv("MXGATE_E2E_ARTEFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "mxgate-e2e-artefacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestQuarantinePageInChromium: the page a report links to, rendered by
// a real browser (headless Chromium, scripts enabled): it lists the
// recipient's messages with their buttons, the hostile subject as text
// (its script never ran: the title and the DOM are the page's own), and
// the entry's page shows the message as text, none of its HTML. A
// phone-sized screenshot is left as an artefact.
func TestQuarantinePageInChromium(t *testing.T) {
	r := startReportNode(t)
	r.send("user@e2e.test", "From: offers@spam.e2e-quarantine.test\r\nTo: user@e2e.test\r\n"+
		"Subject: <script>document.title='pwned';document.body.innerHTML='pwned'</script>offer\r\n"+
		"Message-ID: <cq1@client.e2e.test>\r\nContent-Type: text/html\r\n\r\n<html><body>"+
		"<script>document.title='pwned2'</script><img src=\"http://tracker.e2e.test/p.png\"><p id=\"evil\">"+gtube+
		" plain words</p></body></html>\r\n")
	report := r.waitReports("user@e2e.test", 1)[0]
	m := reportPageRE.FindStringSubmatch(report)
	em := reportEntryRE.FindStringSubmatch(report)
	if m == nil || em == nil {
		t.Fatalf("e2e: no links in the report:\n%s", report)
	}
	pageURL, entryURL := m[1]+"?t="+m[2], em[1]+"?t="+em[3]

	dom := chromium(t, "--dump-dom", pageURL)
	for _, want := range []string{"<title>Quarantine for user@e2e.test</title>", `class="entry"`,
		"&lt;script&gt;document.title='pwned';document.body.innerHTML='pwned'&lt;/script&gt;offer",
		`<button type="submit" name="do" value="release">Release</button>`} {
		if !strings.Contains(dom, want) {
			t.Errorf("e2e: the rendered page lacks %q:\n%s", want, dom)
		}
	}
	if strings.Contains(dom, "<script") || strings.Contains(dom, "<title>pwned") {
		t.Errorf("e2e: a script in the rendered page, or one ran:\n%s", dom)
	}

	dom = chromium(t, "--dump-dom", entryURL)
	if !strings.Contains(dom, "plain words") || !strings.Contains(dom, `id="preview"`) {
		t.Errorf("e2e: the entry page lacks the text preview:\n%s", dom)
	}
	for _, bad := range []string{"<script", "<img", "tracker.e2e.test", `id="evil"`, "pwned2"} {
		if strings.Contains(dom, bad) {
			t.Errorf("e2e: the entry page holds the message's HTML (%q):\n%s", bad, dom)
		}
	}

	shot := filepath.Join(artefactDir(t), "quarantine-page.png")
	chromium(t, "--hide-scrollbars", "--window-size=412,900", "--screenshot="+shot, pageURL)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 1000 {
		t.Errorf("e2e: screenshot %s: %v", shot, err)
	} else {
		t.Logf("e2e: screenshot of the user's page: %s", shot)
	}
}

// TestQuarantineReleaseInChromium: the user opens the report's link in a
// real browser (headless Chromium driven by chromedp), clicks the
// message's Release button, sees the result page, and the message
// arrives at the backend exactly once. A screenshot of the result page
// is left as an artefact.
func TestQuarantineReleaseInChromium(t *testing.T) {
	bin := "/usr/bin/chromium"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("chromium"); err != nil {
			t.Fatalf("e2e: chromium not installed (scripts/install-deps.sh installs Debian's chromium): %v", err)
		}
	}
	r := startReportNode(t)
	r.send("user@e2e.test", "From: offers@spam.e2e-quarantine.test\r\nTo: user@e2e.test\r\nSubject: a browser offer\r\n"+
		"Message-ID: <cr1@client.e2e.test>\r\n\r\n"+gtube+"\r\n")
	report := r.waitReports("user@e2e.test", 1)[0]
	m := reportPageRE.FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("e2e: no page link in the report:\n%s", report)
	}
	pageURL := m[1] + "?t=" + m[2]
	if k := deliveriesOf(r.be, "cr1"); k != 0 {
		t.Fatalf("e2e: quarantined message delivered %d times before its release", k)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(412, 900),
	)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer bcancel()

	release := chromedp.CSS(`form button[type="submit"][name="do"][value="release"]`)
	if err := chromedp.Do(bctx, chromedp.Navigate(pageURL), chromedp.WaitVisible(release)); err != nil {
		t.Fatalf("e2e: chromium on %s: %v", pageURL, err)
	}
	title, err := chromedp.Run(bctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.Click(release), chromedp.WaitVisible(chromedp.CSS("#notice"))); err != nil {
		t.Fatalf("e2e: chromium, release clicked: %v", err)
	}
	notice, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#notice")))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Fatal(err)
	}
	if title != "Quarantine for user@e2e.test" {
		t.Errorf("e2e: page title %q", title)
	}
	if !strings.HasPrefix(notice, "Released") {
		t.Errorf("e2e: result page notice %q, want Released", notice)
	}
	path := filepath.Join(artefactDir(t), "quarantine-release.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil || len(shot) < 1000 {
		t.Errorf("e2e: screenshot %s (%d bytes): %v", path, len(shot), err)
	} else {
		t.Logf("e2e: screenshot of the release result: %s", path)
	}

	d := waitDelivery(t, r.be, "<cr1@client.e2e.test>")
	if rel := d.Header("X-Quarantine-Released"); !strings.HasPrefix(rel, "by user@e2e.test (quarantine page) at ") {
		t.Errorf("e2e: X-Quarantine-Released %q", rel)
	}
	// A clean message sent after the release is delivered after any
	// second copy would have been: then the count is final.
	c, _ := dialHello(t, r.n.inbound)
	if rep, err := c.sendMessage("friend@example.org", []string{"user@e2e.test"},
		[]byte("From: friend@example.org\r\nMessage-ID: <cr1-after@client.e2e.test>\r\nSubject: hello\r\n\r\nhello\r\n")); err != nil || !rep.is("250 2.0.0") {
		t.Fatalf("e2e: control message: %q %v", rep, err)
	}
	waitDelivery(t, r.be, "<cr1-after@client.e2e.test>")
	if k := deliveriesOf(r.be, "cr1"); k != 1 {
		t.Errorf("e2e: released message delivered %d times, want 1", k)
	}
}
