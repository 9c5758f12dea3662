// Package dns is mxgate's one way to ask DNS: the smarthost's MX routing
// and the spam checks (SPF, DKIM, DMARC, DNSBL, PTR, DANE) look up MX,
// A/AAAA, TXT, PTR and TLSA records through the Resolver interface. Client
// asks the configured resolver (dns.resolver, "host:port"; empty: the first
// nameserver of /etc/resolv.conf) with miekg/dns over UDP, and again over
// TCP when the answer is truncated; Mock answers from a map in unit tests.
//
// # Results
//
// A lookup returns records and a nil error, or no records and an error
// whose kind says what the caller may conclude (KindOf, or errors.Is with
// a Kind):
//
//   - NXDomain (IsNXDomain): the name does not exist. Permanent.
//   - NoData (IsNoData): the name exists but has no records of the type.
//     Permanent. IsNotFound is true for both NXDomain and NoData.
//   - ServFail, Refused, Timeout, NetworkError, BadAnswer (IsTemporary):
//     no answer could be had, or none that can be used; asking later may
//     work. The caller's context ending is a Timeout too (the context's
//     error is wrapped).
//   - InvalidName: the name is not a domain name; nothing was asked.
//     Permanent.
//   - NullMX: from MailHosts, the domain publishes the null MX of RFC 7505
//     and accepts no mail. Permanent.
//
// So MX routing answers 5.1.x for NXDOMAIN and the null MX, uses the
// domain itself for NODATA (MailHosts does both) and 4.4.x for temporary
// errors; SPF gives permerror or none where DNS gives a permanent answer
// and temperror for a temporary one; a DNSBL query with NXDOMAIN is a
// miss, one with a temporary error is neither a hit nor a miss.
//
// IP asks for A and AAAA together: when one has addresses and the other
// failed temporarily, it returns both the addresses and the error.
//
// CNAMEs in an answer are followed to the records of the name they lead to
// (NXDOMAIN and NODATA at the end of the chain are the answer, RFC 6604);
// when the resolver stopped at a CNAME, its target is asked for. At most 8
// CNAMEs are followed; a longer chain or a loop is a BadAnswer.
//
// # DNSSEC
//
// With Options.DNSSEC (dns.dnssec), queries carry the DO and AD bits and
// Result.Authentic reports the resolver's AD bit: true only when every
// answer the result is made of was validated. Negative answers carry it
// too (an authenticated denial). Without the option it is always false.
// The AD bit is only as trustworthy as the path to the resolver: use a
// validating resolver on the same host or a trusted network.
//
// # Cache
//
// Answers with records are kept for their smallest TTL, clamped to
// [MinTTL, MaxTTL]; NXDOMAIN and NODATA for the TTL of the SOA that came
// with them, bounded by its minimum field (RFC 2308 §5) and by
// MaxNegativeTTL, and not at all without an SOA. Temporary failures are
// never cached. The cache holds at most CacheSize answers and drops the
// least recently used one when full.
//
// # Hostile answers
//
// Every answer is untrusted: answers for another question are refused,
// records owned by names outside the CNAME chain are ignored, at most 512
// records of the type are taken, UDP answers are read into a 1232-octet
// buffer, and TXT strings are returned as the octets sent.
//
// # Metrics
//
// mxgate_dns_queries_total{type,result} counts queries sent (result: ok,
// nxdomain, nodata, servfail, timeout, error), mxgate_dns_cache_hits_total
// {type} lookups answered from the cache, and
// mxgate_dns_query_duration_seconds{type} the time of each query. Type is
// one of MX, A, AAAA, TXT, PTR, TLSA.
package dns
