package greylist

import "testing"

func TestNormalizeSender(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"<>", ""},
		{"User@Example.COM", "user@example.com"},
		{"<user@example.com>", "user@example.com"},
		{"user+tag@example.com", "user@example.com"},
		{"user+a+b@example.com", "user@example.com"},
		{"+weird@example.com", "+weird@example.com"},
		{"prvs=0123abcdef=user@example.com", "user@example.com"},
		{"PRVS=4567ABCDEF=User@Example.com", "user@example.com"},
		{"prvs=user/0123abcdef@example.com", "user@example.com"},
		{"msprvs1=17733vjW2UNZA=bounces-1234@example.com", "bounces-1234@example.com"},
		{"btv1==0a3b1c2d3e4==user@example.com", "user@example.com"},
		{"prvs=0123abcdef=user+list@example.com", "user@example.com"},
		{"SRS0=HHH=TT=orig.example=alice@forwarder.example", "alice@orig.example"},
		{"SRS0=abcd=x7=Orig.Example=Alice@forwarder.example", "alice@orig.example"},
		{"srs0+HHH=TT=orig.example=alice@forwarder.example", "alice@orig.example"},
		{"SRS1=HHH=first.example==HHH=TT=orig.example=alice@second.example", "alice@orig.example"},
		{"SRS0=HHH=TT=orig.example=prvs=1234=alice@forwarder.example", "alice@orig.example"},
		{"SRS0=broken@forwarder.example", "srs0=broken@forwarder.example"},
		{"srsuser@example.com", "srsuser@example.com"},
		{"postmaster", "postmaster"},
		{"user@example.com.", "user@example.com"},
	} {
		if got := NormalizeSender(c.in); got != c.want {
			t.Errorf("NormalizeSender(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
