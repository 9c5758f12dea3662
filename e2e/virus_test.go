package e2e

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/filter/clamav/clamdtest"
	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

var eicar = clamdtest.EICAR

func plainMessage(subject, body string) []byte {
	return []byte("From: <sender@example.org>\r\nTo: <user@e2e.test>\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@e2e.test>\r\n\r\n" + body + "\r\n")
}

func attachment(subject, name string, data []byte) []byte {
	return clamdtest.Attachment(subject, name, data)
}

// send delivers one message over a fresh connection and returns the reply
// to the end of data.
func send(t *testing.T, addr string, data []byte) smtpReply {
	t.Helper()
	c, err := dialSMTP(addr)
	if err != nil {
		t.Fatalf("e2e: dial: %v", err)
	}
	defer c.close()
	if _, err := c.hello(); err != nil {
		t.Fatalf("e2e: %v", err)
	}
	rep, err := c.sendMessage("sender@example.org", []string{"user@e2e.test"}, data)
	if err != nil {
		t.Fatalf("e2e: send: %v (%q)", err, rep)
	}
	return rep
}

// crlf normalises line ends the way mxgate stores a message (bare LF to
// CRLF) and ends the data with CRLF, as DATA requires.
func crlf(data []byte) []byte {
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	data = bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		data = append(data, '\r', '\n')
	}
	return data
}

func TestVirusScanning(t *testing.T) {
	clamd := clamdtest.StartServer(t, clamdtest.Options{SigDir: clamdtest.SigDir(t)})
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{backends: []string{be.Addr()}, clamav: clamd.TCPAddress(), maxMessageBytes: 10 << 20})

	t.Run("EICAR", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			data []byte
		}{
			{"whole body", plainMessage("eicar-body", string(eicar))},
			{"base64 attachment", attachment("eicar-attachment", "eicar.com", eicar)},
			{"inside a zip", attachment("eicar-zip", "eicar.zip", clamdtest.Zip(t, "eicar.com", eicar))},
		} {
			rep := send(t, n.inbound, tc.data)
			if !rep.is("554 5.7.1") || !strings.Contains(rep.String(), "Eicar-Test-Signature") {
				t.Errorf("e2e: EICAR %s: got %q, want 554 5.7.1 naming Eicar-Test-Signature", tc.name, rep)
			}
		}
	})

	t.Run("ClamAVTestFiles", func(t *testing.T) {
		files := clamdtest.TestFiles(t)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rep := send(t, n.inbound, attachment("testfile-"+filepath.Base(f), filepath.Base(f), data))
			if !rep.is("554 5.7.1") || !strings.Contains(rep.String(), "virus found") {
				t.Errorf("e2e: %s: got %q, want 554 5.7.1 virus found", filepath.Base(f), rep)
			}
		}
		t.Logf("e2e: %d clamav-testfiles sent as attachments, each rejected", len(files))
	})

	t.Run("CleanMIMESamples", func(t *testing.T) {
		before := be.Count()
		sent := map[string][]byte{} // Subject marker -> normalised bytes
		refused := 0
		root := clamdtest.SharedTestdata(t, "mime")
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.EqualFold(filepath.Ext(path), ".md") || strings.Contains(path, "LICENSES") {
				return err
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			// A unique first header lets us find the delivery.
			rel, _ := filepath.Rel(root, path)
			data := crlf(append([]byte("X-E2E-Sample: "+rel+"\r\n"), raw...))
			rep := send(t, n.inbound, data)
			switch {
			case rep.is("250 2.0.0"):
				sent[rel] = data
			case rep.code/100 == 5 && !strings.Contains(rep.String(), "virus"):
				// A clear refusal (e.g. a bare CR) is allowed; a virus
				// verdict on a clean sample is not.
				refused++
				t.Logf("e2e: %s refused: %q", rel, rep)
			default:
				t.Errorf("e2e: clean sample %s: got %q, want 250 (or a clear 5xx that is not a virus)", rel, rep)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		wait.For(t, 30*time.Second, "clean samples delivered", func() (bool, string) {
			got := be.Count() - before
			return got == len(sent), fmt.Sprintf("%d of %d delivered", got, len(sent))
		})
		for _, d := range be.Deliveries()[before:] {
			recv, rest, ok := splitReceived(d.Data)
			if !ok {
				t.Errorf("e2e: delivery without a leading Received header: %.200q", d.Data)
				continue
			}
			sample := smtptest.HeaderValue(rest, "X-E2E-Sample")
			want, found := sent[sample]
			if !found {
				t.Errorf("e2e: unexpected delivery %q", sample)
				continue
			}
			if !bytes.Equal(rest, want) {
				t.Errorf("e2e: %s delivered changed (%d bytes sent, %d delivered after the added headers)", sample, len(want), len(rest))
			}
			if !bytes.Contains(d.Data[:len(d.Data)-len(rest)], []byte("X-Virus-Scanned: clamav by mxgate")) {
				t.Errorf("e2e: %s: no X-Virus-Scanned header in %q", sample, d.Data[:len(d.Data)-len(rest)])
			}
			_ = recv
		}
		t.Logf("e2e: %d clean MIME samples delivered unchanged, %d refused with a clear 5xx", len(sent), refused)
		if len(sent) == 0 {
			t.Fatal("e2e: no sample delivered")
		}
	})

	t.Run("ClamdKilledUnderLoad", func(t *testing.T) {
		before := be.Count()
		var (
			mu        sync.Mutex
			accepted  = map[string]bool{} // Message-ID -> 250
			tempfails int
			bad       []string
		)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				c, err := dialSMTP(n.inbound)
				if err != nil {
					t.Errorf("e2e: dial: %v", err)
					return
				}
				defer c.close()
				if _, err := c.hello(); err != nil {
					t.Errorf("e2e: %v", err)
					return
				}
				for i := 0; i < 400; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("kill-%d-%d", w, i)
					rep, err := c.sendMessage("sender@example.org", []string{"user@e2e.test"}, plainMessage(id, "clean "+id))
					if err != nil {
						t.Errorf("e2e: %s: %v", id, err)
						return
					}
					mu.Lock()
					switch {
					case rep.is("250 2.0.0"):
						accepted[id+"@e2e.test"] = true
					case rep.is("451 4.3.0"):
						tempfails++
					default:
						bad = append(bad, rep.String())
					}
					mu.Unlock()
				}
			}(w)
		}
		wait.For(t, 30*time.Second, "some mail accepted before clamd is killed", func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			return len(accepted) >= 50, fmt.Sprintf("%d accepted", len(accepted))
		})
		clamd.Kill()
		wait.For(t, 30*time.Second, "451 replies while clamd is down", func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			return tempfails >= 20, fmt.Sprintf("%d tempfails", tempfails)
		})
		wait.For(t, 10*time.Second, "/readyz to report clamd down", func() (bool, string) {
			code := readyzCode(n)
			return code == http.StatusServiceUnavailable, fmt.Sprintf("readyz %d", code)
		})
		close(stop)
		wg.Wait()
		mu.Lock()
		if len(bad) > 0 {
			t.Errorf("e2e: replies other than 250 or 451 4.3.0 while clamd died: %q", bad)
		}
		acked := len(accepted)
		mu.Unlock()

		clamd.Restart()
		wait.For(t, 15*time.Second, "/readyz ready again after clamd restarts", func() (bool, string) {
			code := readyzCode(n)
			return code == http.StatusOK, fmt.Sprintf("readyz %d", code)
		})
		if rep := send(t, n.inbound, plainMessage("after-restart", "clean again")); !rep.is("250 2.0.0") {
			t.Fatalf("e2e: after clamd restarted: got %q, want 250 without restarting mxgate", rep)
		}
		want := acked + 1
		wait.For(t, 30*time.Second, "every acknowledged message delivered", func() (bool, string) {
			got := be.Count() - before
			return got >= want, fmt.Sprintf("%d of %d delivered", got, want)
		})
		for _, d := range be.Deliveries()[before:] {
			_, rest, _ := splitReceived(d.Data)
			mid := strings.Trim(smtptest.HeaderValue(rest, "Message-ID"), "<>")
			if mid != "after-restart@e2e.test" && !accepted[mid] {
				t.Errorf("e2e: delivered %s, which never got a 250", mid)
			}
			if !bytes.Contains(d.Data, []byte("X-Virus-Scanned: clamav by mxgate")) {
				t.Errorf("e2e: %s delivered without being scanned", mid)
			}
		}
		t.Logf("e2e: clamd killed under load: %d accepted (all scanned and delivered), %d answered 451 4.3.0", acked, tempfails)
	})
}

func readyzCode(n *node) int {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + n.http + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
