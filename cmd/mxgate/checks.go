package main

// Checks of values that several sections use: addresses, networks,
// domain names and duration ranges.

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

const oneDay = 24 * time.Hour

// checkDuration reports key when v is outside min to max; why, when not
// empty, says where the bounds come from. Every duration key has a range
// (the README's table of durations says the same): a typo of a unit (5d
// for 5m) or a value past what the code expects is caught here, not at
// 3 a.m.
func checkDuration(errs *ConfigErrors, key string, v Duration, min, max time.Duration, why string) {
	if d := v.D(); d < min || d > max {
		errs.add(key, "%s: want %s to %s%s", formatDuration(d), formatDuration(min), formatDuration(max), why)
	}
}

func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. \":25\" or \"192.0.2.1:25\")", addr)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !validDomain(host) {
			return fmt.Errorf("%q: %q is not an IP address or host name", addr, host)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: %q is not a port number", addr, port)
	}
	return nil
}

func checkHostPort(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	return checkListenAddr(addr)
}

// checkNextHop accepts "[10.1.1.1]:25", "[mail.example.org]", "host:port"
// and "host": brackets mean "this host, no MX lookup" as in Postfix.
func checkNextHop(hop string) error {
	h := hop
	if strings.HasPrefix(h, "[") {
		end := strings.Index(h, "]")
		if end < 0 {
			return fmt.Errorf("%q: missing ]", hop)
		}
		host, rest := h[1:end], h[end+1:]
		if _, err := netip.ParseAddr(host); err != nil && !validDomain(host) {
			return fmt.Errorf("%q: %q is not an IP address or host name", hop, host)
		}
		if rest == "" {
			return nil
		}
		if !strings.HasPrefix(rest, ":") {
			return fmt.Errorf("%q: want [host] or [host]:port", hop)
		}
		if n, err := strconv.Atoi(rest[1:]); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: %q is not a port number", hop, rest[1:])
		}
		return nil
	}
	if strings.Contains(h, ":") {
		return checkHostPort(h)
	}
	if !validDomain(h) {
		return fmt.Errorf("%q is not a host name", hop)
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network in CIDR form (e.g. 10.0.0.0/24)", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR network", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// validDomain checks RFC 1035 §2.3.1 host name syntax (letters, digits,
// hyphens; labels up to 63 octets, names up to 253), allowing
// underscores for operators' internal names.
func validDomain(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}
