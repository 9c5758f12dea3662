package gateway_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/gateway"
	"github.com/mxgate/mxgate/internal/dns"
	"github.com/mxgate/mxgate/internal/gatewaytest"
	"github.com/mxgate/mxgate/smarthost"
)

// FuzzSession throws arbitrary client bytes at a real session: whatever
// arrives, the server must not panic, must answer with well-formed
// replies, and must still serve the next client.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@fuzz.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<u@other.example>\r\nRCPT TO:<postmaster>\r\nQUIT\r\n",
		"HELO a\r\nMAIL FROM:<a@b> SIZE=99999999999\r\nQUIT\r\n",
		"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@fuzz.test>\r\nDATA\r\nx\n.\nMAIL FROM:<e@x>\r\n.\r\n",
		"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@fuzz.test>\r\nDATA\r\nx\r.\r\n.\r\n",
		"EHLO a\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@fuzz.test>\r\nBDAT 5 LAST\r\nhello",
		"EHLO a\r\nSTARTTLS\r\n\x16\x03\x01garbage",
		"\x00\xff\r\n\r\n\r\nRSET\r\nNOOP\r\nVRFY x\r\n",
	} {
		f.Add(seed)
	}
	g := gatewaytest.Start(f, gatewaytest.Options{
		Config: func(c *gateway.Config) {
			c.Hostname, c.Domains = "mx.fuzz.test", []string{"fuzz.test"}
			c.MaxMessageBytes, c.MaxRecipients = 64<<10, 5
			// Short: an input that leaves DATA or BDAT open is ended
			// by the server's timeout, which is part of what is
			// tested.
			c.CommandTimeout, c.DataTimeout = time.Second, time.Second
			c.HardErrorLimit, c.JunkCommandLimit = 0, 0
		},
		// No DNS: mail for fuzz.test goes to the backend, and nothing
		// else is relayed.
		Queue: func(c *smarthost.Config) {
			c.LocalDomains, c.Resolver = []string{"fuzz.test"}, dns.Mock{}
		},
		LongRun: true,
	})
	addr := g.Addr
	// A recovered panic is counted in mxgate_gateway_panics_total and
	// logged as an ERROR line with event "panic" at the same moment; the
	// log is read here, as gathering every metric of the process for each
	// input would slow the fuzzing a hundredfold.
	panics := func() int { return len(g.Events("event", "panic")) }
	before := panics()
	f.Fuzz(func(t *testing.T, input string) {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			_, _ = io.WriteString(conn, input)
			_, _ = io.WriteString(conn, "\n\r\n.\r\nQUIT\r\n")
		}()
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break // closed after QUIT, or after a fatal error reply
			}
			if len(line) < 4 || line[0] < '2' || line[0] > '5' || (line[3] != ' ' && line[3] != '-') || !strings.HasSuffix(line, "\r\n") {
				t.Fatalf("malformed reply line %q", line)
			}
		}
		if got := panics(); got != before {
			t.Fatalf("session panicked (%d panic lines in the mail log, %d before): %v", got, before, g.Events("event", "panic"))
		}
	})
}
