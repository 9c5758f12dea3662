package e2e

import (
	"context"
	"crypto/tls"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/smtptest"
	"github.com/mxgate/mxgate/internal/wait"
)

// TestSTARTTLS: a real client (swaks) delivers over STARTTLS and the
// Received header says so; a client limited to TLS 1.1 cannot handshake.
func TestSTARTTLS(t *testing.T) {
	be := smtptest.Start(t)
	n := startNode(t, nodeOptions{backends: []string{be.Addr()}})

	t.Run("Swaks", func(t *testing.T) {
		swaks, err := exec.LookPath("swaks")
		if err != nil {
			t.Fatalf("e2e: swaks not installed (Debian package swaks; run make deps): %v", err)
		}
		host, port, _ := strings.Cut(n.inbound, ":")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, swaks, "--server", host, "--port", port, "--tls",
			"--ehlo", "swaks.e2e.test", "--from", "tls-sender@example.org", "--to", "tls@e2e.test",
			"--header", "Message-Id: <starttls@client.e2e.test>", "--header", "Subject: over TLS",
			"--body", "sent with STARTTLS", "--timeout", "30")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("e2e: swaks --tls: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "<~  250 2.0.0 Ok: queued as ") {
			t.Errorf("e2e: swaks did not get 250 2.0.0 after the data:\n%s", out)
		}
		var d smtptest.Delivery
		wait.For(t, 30*time.Second, "the TLS message at the backend", func() (bool, string) {
			for _, x := range be.Deliveries() {
				if smtptest.HeaderValue(x.Data, "Message-Id") == "<starttls@client.e2e.test>" {
					d = x
					return true, ""
				}
			}
			return false, "not yet"
		})
		recv, _, ok := splitReceived(d.Data)
		if !ok {
			t.Fatalf("e2e: delivered message has no Received header from mxgate:\n%s", d.Data)
		}
		r := string(recv)
		if !strings.Contains(r, "with ESMTPS") || !strings.Contains(r, "using TLSv1.") {
			t.Errorf("e2e: Received header does not record TLS (want \"with ESMTPS\" and \"using TLSv1.\"):\n%s", r)
		}
	})

	t.Run("TLS11Refused", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			max     uint16
			succeed bool
		}{
			{"TLS1.1", tls.VersionTLS11, false},
			{"TLS1.2", tls.VersionTLS12, true},
		} {
			c, _ := dialHello(t, n.inbound)
			c.expectCmd(t, "STARTTLS", "220")
			tc2 := tls.Client(c.conn, &tls.Config{
				InsecureSkipVerify: true, // the node's certificate is self-signed
				MinVersion:         tls.VersionTLS10,
				MaxVersion:         tc.max,
				ServerName:         "mx1.e2e.test",
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := tc2.HandshakeContext(ctx)
			cancel()
			switch {
			case tc.succeed && err != nil:
				t.Errorf("e2e: %s handshake failed: %v", tc.name, err)
			case !tc.succeed && err == nil:
				t.Errorf("e2e: a client limited to %s completed the handshake (version %s)", tc.name, tls.VersionName(tc2.ConnectionState().Version))
			case !tc.succeed:
				t.Logf("e2e: %s client refused as it should be: %v", tc.name, err)
			}
			if err == nil && tc.succeed {
				tl := newRawSMTP(tc2)
				tl.expectCmd(t, "EHLO client.e2e.test", "250")
				tl.expectCmd(t, "QUIT", "221")
			}
			_ = tc2.Close()
		}
	})
}
