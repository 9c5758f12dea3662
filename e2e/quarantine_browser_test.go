package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
