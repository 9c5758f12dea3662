package dns

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// rawServer answers each UDP query with whatever reply returns (nil: no
// answer), to play a resolver that lies or breaks the protocol.
func rawServer(t *testing.T, reply func(q *mdns.Msg, raw []byte) []byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(mdns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			if out := reply(q, buf[:n]); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

func pack(t *testing.T, m *mdns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		t.Error(err)
	}
	return b
}

func TestHostileAnswers(t *testing.T) {
	rr := func(s string) mdns.RR {
		r, err := mdns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	cases := []struct {
		name  string
		reply func(q *mdns.Msg, raw []byte) []byte
		kind  Kind
	}{
		{"garbage after a matching ID", func(q *mdns.Msg, raw []byte) []byte {
			return append([]byte{raw[0], raw[1], 0x81, 0x80, 0, 1, 0, 9, 0, 0, 0, 0}, 0xff, 0xfe, 0x01)
		}, BadAnswer},
		{"answer to another question", func(q *mdns.Msg, _ []byte) []byte {
			m := new(mdns.Msg)
			m.SetReply(q)
			m.Question[0].Name = "other.test."
			m.Answer = []mdns.RR{rr("other.test. 300 IN A 192.0.2.66")}
			return pack(t, m)
		}, BadAnswer},
		{"records of other names only", func(q *mdns.Msg, _ []byte) []byte {
			m := new(mdns.Msg)
			m.SetReply(q)
			m.Answer = []mdns.RR{rr("bank.test. 300 IN A 192.0.2.66"), rr("bank.test. 300 IN AAAA 2001:db8::66")}
			return pack(t, m)
		}, NoData},
		{"wrong ID only", func(q *mdns.Msg, _ []byte) []byte {
			m := new(mdns.Msg)
			m.SetReply(q)
			m.Id = q.Id + 1
			return pack(t, m)
		}, Timeout},
		{"not a response", func(q *mdns.Msg, _ []byte) []byte {
			return pack(t, q)
		}, BadAnswer},
		{"NOTIMP", func(q *mdns.Msg, _ []byte) []byte {
			m := new(mdns.Msg)
			m.SetRcode(q, mdns.RcodeNotImplemented)
			return pack(t, m)
		}, BadAnswer},
		{"truncated, then no TCP", func(q *mdns.Msg, _ []byte) []byte {
			m := new(mdns.Msg)
			m.SetReply(q)
			m.Truncated = true
			return pack(t, m)
		}, NetworkError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawServer(t, tc.reply)
			c, err := New(Options{Server: addr, Timeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			addrs, _, err := c.IP(context.Background(), "victim.test")
			if len(addrs) != 0 {
				t.Errorf("addresses %v from a hostile answer", addrs)
			}
			wantKind(t, tc.name, err, tc.kind)
			if tc.kind.Temporary() && c.cache.len() != 0 {
				t.Errorf("a temporary failure was cached (%d entries)", c.cache.len())
			}
			if tc.kind == NoData && c.cache.len() != 0 {
				t.Errorf("a negative answer without SOA was cached (%d entries)", c.cache.len())
			}
		})
	}
}

func TestNoResolver(t *testing.T) {
	// A UDP port nobody listens on: the kernel answers ICMP port
	// unreachable, a network error; or nothing, a timeout.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	c, err := New(Options{Server: addr, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.PTR(context.Background(), netip.MustParseAddr("192.0.2.1"))
	if k := KindOf(err); k != NetworkError && k != Timeout {
		t.Errorf("no resolver: %v (kind %v), want a network error or timeout", err, k)
	}
	if !IsTemporary(err) {
		t.Error("no resolver is not temporary")
	}
}
