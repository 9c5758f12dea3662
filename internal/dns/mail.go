package dns

import (
	"context"
	"strings"
)

// MailHosts returns the hosts that receive mail for domain, best first
// (RFC 5321 §5.1): the MX hosts by preference, random among equal ones, or,
// when the domain exists without MX records, the domain itself (implicit is
// then true). Hosts are absolute names ("mx.example.com."); their addresses
// come from Resolver.IP.
//
// Errors: NXDOMAIN (IsNXDomain: the domain does not exist), NullMX
// (errors.Is(err, dns.NullMX): RFC 7505, the domain accepts no mail), both
// permanent, or a temporary failure (IsTemporary).
func MailHosts(ctx context.Context, r Resolver, domain string) (hosts []string, implicit bool, res Result, err error) {
	mxs, res, err := r.MX(ctx, domain)
	if IsNoData(err) || err == nil && len(mxs) == 0 {
		return []string{strings.ToLower(strings.TrimSuffix(domain, ".")) + "."}, true, res, nil
	}
	if err != nil {
		return nil, false, res, err
	}
	for _, mx := range mxs {
		// A "." among other MX records is not a null MX (RFC 7505 §3);
		// it is skipped as a host that cannot be reached.
		if mx.Host != "." && mx.Host != "" {
			hosts = append(hosts, mx.Host)
		}
	}
	if len(hosts) == 0 {
		return nil, false, res, &Error{Kind: NullMX, Type: "MX", Name: strings.ToLower(strings.TrimSuffix(domain, ".")) + "."}
	}
	return hosts, false, res, nil
}
