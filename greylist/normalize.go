package greylist

import "strings"

// NormalizeSender reduces an envelope sender to the form a retry of the same
// message will also have: lower-cased, with SRS (SRS0/SRS1) rewrites undone,
// BATV tags (prvs=, msprvs1=, btv1==) removed and a "+" sub-address
// stripped. Senders that change these parts per message (bounce tags, SRS
// timestamps) would otherwise never match their own retry. The null sender
// "" stays "".
func NormalizeSender(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	if s == "" {
		return ""
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return stripSubAddress(stripBATV(s))
	}
	local, domain := s[:at], strings.TrimSuffix(s[at+1:], ".")
	if l, d, ok := unSRS(local); ok {
		local, domain = l, d
	}
	return stripSubAddress(stripBATV(local)) + "@" + domain
}

// unSRS undoes Sender Rewriting Scheme addresses (the de-facto scheme of
// libsrs2 / postsrsd):
//
//	SRS0=HHH=TT=orig-domain=orig-local
//	SRS1=HHH=first-forwarder==HHH=TT=orig-domain=orig-local
//
// The separator right after SRS0/SRS1 may be '=', '+' or '-'. local must be
// lower-case.
func unSRS(local string) (string, string, bool) {
	if len(local) < 5 || !strings.ContainsRune("=+-", rune(local[4])) {
		return "", "", false
	}
	var body string
	switch local[:4] {
	case "srs0":
		body = local[5:]
	case "srs1":
		// HHH=first-forwarder==<SRS0 body>
		_, rest, ok := strings.Cut(local[5:], "==")
		if !ok {
			return "", "", false
		}
		body = rest
	default:
		return "", "", false
	}
	parts := strings.SplitN(body, "=", 4) // hash, timestamp, domain, local
	if len(parts) != 4 || parts[2] == "" || parts[3] == "" {
		return "", "", false
	}
	return parts[3], parts[2], true
}

// stripBATV removes a Bounce Address Tag Validation tag
// (draft-levine-smtp-batv-01 section 3: tag-type=tag-val=loc-core), as
// written by the common implementations: "prvs=TAG=user", "msprvs1=TAG=user",
// "btv1==TAG==user", and the older "prvs=user/TAG".
func stripBATV(local string) string {
	switch {
	case strings.HasPrefix(local, "btv1=="):
		if _, user, ok := strings.Cut(local[len("btv1=="):], "=="); ok && user != "" {
			return user
		}
	case strings.HasPrefix(local, "prvs="), strings.HasPrefix(local, "msprvs1="):
		_, rest, _ := strings.Cut(local, "=")
		if _, user, ok := strings.Cut(rest, "="); ok && user != "" {
			return user
		}
		if user, _, ok := strings.Cut(rest, "/"); ok && user != "" {
			return user
		}
	}
	return local
}

// stripSubAddress removes a "+detail" sub-address (RFC 5233).
func stripSubAddress(local string) string {
	if i := strings.IndexByte(local, '+'); i > 0 {
		return local[:i]
	}
	return local
}

// normalizeRecipient only lower-cases: recipients with different
// sub-addresses are different mailboxes to the backend.
func normalizeRecipient(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
}

// addressList matches addresses against "user@example.com" and "example.com"
// entries; a domain entry matches addresses at exactly that domain (not its
// subdomains), case-insensitively.
type addressList struct {
	addrs   map[string]bool
	domains map[string]bool
}

func newAddressList(entries []string, normalize func(string) string) addressList {
	l := addressList{addrs: map[string]bool{}, domains: map[string]bool{}}
	for _, e := range entries {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		if strings.Contains(strings.TrimPrefix(e, "@"), "@") {
			l.addrs[normalize(e)] = true
		} else {
			l.domains[strings.TrimSuffix(strings.TrimPrefix(e, "@"), ".")] = true
		}
	}
	return l
}

// match takes an already normalised address.
func (l addressList) match(addr string) bool {
	if addr == "" {
		return false
	}
	if l.addrs[addr] {
		return true
	}
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		return l.domains[addr[at+1:]]
	}
	return false
}
