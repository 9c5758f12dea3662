// Package dnsbl is the DNS block list check: the client's IP address is
// looked up in the configured IP zones (Spamhaus ZEN style), and the
// registrable domains of the URLs in the message in the domain zones
// (Spamhaus DBL, URIBL, SURBL style), all through internal/dns, at the end
// of DATA so that the decision has every symbol.
//
// # Queries
//
// An IPv4 address is asked as its octets reversed (192.0.2.1 in
// zen.spamhaus.org is 1.2.0.192.zen.spamhaus.org), an IPv6 address as its
// 32 nibbles reversed, as for ip6.arpa. A domain is asked as
// domain.zone. Only the A records of the answer are read.
//
// # URL domains
//
// The hosts of the message's URLs come from Config.URLHosts, by default
// ScanURLHosts, this package's bounded scan of the decoded text parts. A
// host is reduced to its registrable domain (the public suffix and one
// label more: www.mail.example.co.uk is example.co.uk; IDNs in ASCII);
// IP-literal hosts, public suffixes and names that are not domain names are
// skipped; the domains are deduplicated.
//
// A trusted client (mynetworks) is not looked up at all, neither its
// address nor its URLs.
//
// # Answers
//
// NXDOMAIN (and NODATA) is a miss. An answer is a hit when one of its
// addresses is a code the zone counts: one of Zone.Codes, each with its own
// symbol and score, or, when Codes is empty, any address in 127.0.0.0/8.
// An answer whose addresses the zone does not count is a miss.
//
// An answer is an error, never a hit, when it holds one of the zone's
// error codes (Zone.ErrorCodes, by default 127.255.255.0/24: Spamhaus
// answers 127.255.255.252 for a typing error in the query,
// 127.255.255.254 for a query through a public resolver and
// 127.255.255.255 for excessive queries) or an address outside
// 127.0.0.0/8 that Codes does not list (a resolver rewriting NXDOMAIN).
// SERVFAIL, a timeout and every other temporary DNS failure are errors
// too.
//
// # Result
//
// Every hit is a symbol, one per symbol name and check run, whose Detail
// lists what was listed and the code ("192.0.2.1 127.0.0.2"). A zone with
// failed lookups adds one error symbol, its symbol with _ERROR appended,
// scoring 0, whose Detail says what failed; the other zones still count.
// Result.Err is set only when lookups were made and every one of them
// failed: the check then gave no answer at all, and the pipeline replaces
// its symbols with DNSBL_ERROR (see filter.Result).
//
// # Bounds
//
// At most Config.MaxDomains distinct registrable domains are looked up per
// message (the first found), at most Config.Concurrency lookups run at
// once per check run, and Config.Timeout bounds the lookups of one check
// run together. The URL scanner reads at most maxScanRaw octets of the
// message, decodes at most maxScanText octets of text parts and keeps at
// most maxHosts hosts.
//
// # Metrics
//
// mxgate_dnsbl_lookups_total{zone,result} counts lookups by configured
// zone and result (hit, miss, error).
package dnsbl
