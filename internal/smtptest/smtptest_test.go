package smtptest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/wait"
)

// send delivers one message with go-smtp's client.
func send(addr, from string, rcpts []string, data string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(from, rcpts, strings.NewReader(data)); err != nil {
		return err
	}
	return c.Quit()
}

func TestRecordsDeliveries(t *testing.T) {
	s := Start(t)
	s.RejectRcpt("Bad@Example.com", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"})
	s.OnRcpt(func(rcpt string) error {
		if rcpt == "later@example.com" {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	})
	var se *smtp.SMTPError
	if err := send(s.Addr(), "a@example.org", []string{"bad@example.com"}, "x\r\n"); !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("RCPT of a rejected address: %v, want 550", err)
	}
	if err := send(s.Addr(), "a@example.org", []string{"later@example.com"}, "x\r\n"); !errors.As(err, &se) || se.Code != 451 {
		t.Fatalf("RCPT refused by OnRcpt: %v, want 451", err)
	}
	msg := "Message-ID: <one@example.org>\r\nSubject: folded\r\n\tsubject\r\n\r\nbody\r\n"
	if err := send(s.Addr(), "a@example.org", []string{"u@example.com", "v@example.com"}, msg); err != nil {
		t.Fatal(err)
	}
	got := s.Deliveries()
	if len(got) != 1 || s.Count() != 1 {
		t.Fatalf("%d deliveries (count %d), want 1", len(got), s.Count())
	}
	d := got[0]
	if d.From != "a@example.org" || strings.Join(d.Rcpts, ",") != "u@example.com,v@example.com" || string(d.Data) != msg || d.At.IsZero() {
		t.Errorf("delivery %+v", d)
	}
	if h := d.Header("subject"); h != "folded subject" {
		t.Errorf("Subject %q, want the unfolded value", h)
	}
	if s.ByMessageID()["<one@example.org>"] != 1 || s.RcptCount("v@example.com") != 1 || s.Sessions() != 3 {
		t.Errorf("ByMessageID %v, RcptCount %d, Sessions %d", s.ByMessageID(), s.RcptCount("v@example.com"), s.Sessions())
	}
}

func TestDownAnswers451(t *testing.T) {
	s := Start(t)
	s.SetDown(true)
	var se *smtp.SMTPError
	if err := send(s.Addr(), "a@example.org", []string{"u@example.com"}, "x\r\n"); !errors.As(err, &se) || se.Code != 451 {
		t.Fatalf("send to a down server: %v, want 451", err)
	}
	s.SetDown(false)
	if err := send(s.Addr(), "a@example.org", []string{"u@example.com"}, "x\r\n"); err != nil {
		t.Fatalf("send after SetDown(false): %v", err)
	}
}

// A held message is recorded when released, not when dropped, nor when the
// server was stopped while it waited; Start serves the same port again.
func TestHoldReleaseDropStopStart(t *testing.T) {
	s := Start(t)
	for _, tc := range []struct {
		name   string
		end    func()
		stop   bool
		record bool
	}{
		{"released", s.ReleaseHeld, false, true},
		{"dropped", s.DropHeld, false, false},
		{"stopped", s.ReleaseHeld, true, false},
	} {
		before := s.Count()
		s.HoldData()
		errc := make(chan error, 1)
		go func() {
			errc <- send(s.Addr(), "a@example.org", []string{"u@example.com"}, "Subject: "+tc.name+"\r\n\r\nx\r\n")
		}()
		wait.For(t, 10*time.Second, tc.name+": the message held", func() bool { return s.Held() == 1 })
		if tc.stop {
			s.Stop()
		}
		tc.end()
		err := <-errc
		if got := s.Count() - before; (got == 1) != tc.record || (err == nil) != tc.record {
			t.Errorf("%s: %d recorded, client error %v; want recorded %v", tc.name, got, err, tc.record)
		}
		if tc.stop {
			if err := send(s.Addr(), "a@example.org", []string{"u@example.com"}, "x\r\n"); err == nil {
				t.Fatalf("%s: a stopped server accepted a message", tc.name)
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			if err := send(s.Addr(), "a@example.org", []string{"u@example.com"}, "x\r\n"); err != nil {
				t.Fatalf("%s: after Start: %v", tc.name, err)
			}
		}
	}
}

func TestForgetCountsOnly(t *testing.T) {
	var seen []Delivery
	s := StartConfig(t, Config{Forget: true, OnMessage: func(d Delivery) error {
		seen = append(seen, d)
		if len(seen) == 2 {
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "full"}
		}
		return nil
	}})
	if err := send(s.Addr(), "a@example.org", []string{"u@example.com"}, "x\r\n"); err != nil {
		t.Fatal(err)
	}
	var se *smtp.SMTPError
	if err := send(s.Addr(), "a@example.org", []string{"u@example.com"}, "x\r\n"); !errors.As(err, &se) || se.Code != 452 {
		t.Fatalf("refused by OnMessage: %v, want 452", err)
	}
	if len(seen) != 2 || s.Count() != 1 || len(s.Deliveries()) != 0 {
		t.Errorf("OnMessage saw %d, Count %d, Deliveries %d; want 2, 1, 0", len(seen), s.Count(), len(s.Deliveries()))
	}
}
