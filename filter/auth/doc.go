// Package auth is sender authentication as a body check (name "auth"):
// SPF of the envelope sender, DKIM signatures of the message, and the DMARC
// policy of its From domain, summed up in one Authentication-Results header
// (RFC 8601) and in scored symbols.
//
//   - SPF (RFC 7208, blitiri.com.ar/go/spf): the envelope sender's domain,
//     or the HELO name for the null sender (checked as postmaster@helo),
//     against the client's address. A sender or HELO that is not a domain
//     name is "none".
//   - DKIM (RFC 6376, RFC 8463 Ed25519; go-msgauth/dkim): the first
//     Config.MaxSignatures (5) DKIM-Signature fields of the spooled
//     message, each pass, fail, temperror or permerror with its d= and s=;
//     later ones are not verified. rsa-sha1 and the l= tag are not
//     accepted (permerror, fail).
//   - DMARC (RFC 7489, go-msgauth/dmarc): the record at _dmarc.<From
//     domain>, else at _dmarc.<organisational domain> (the public suffix
//     list's registrable domain, golang.org/x/net/publicsuffix), where sp=
//     then applies. Pass when SPF passed for a domain aligned with the From
//     domain, or a DKIM signature of an aligned domain verified (relaxed:
//     same organisational domain; strict, adkim=s / aspf=s: same domain).
//     A pct= below 100 applies the next milder policy to every failing
//     message (DMARCbis's t=y), no random sampling. A message without
//     exactly one From domain is permerror.
//
// Every DNS question goes through internal/dns: its NXDOMAIN and NODATA are
// "no record" (SPF none, DKIM permerror for a missing key, DMARC none),
// its temporary failures (SERVFAIL, timeouts...) temperror. Config.Timeout
// (20 s, RFC 7208 §4.6.4's minimum for SPF) bounds the lookups of one
// message.
//
// # Results, errors and temperrors
//
// A temperror is a result, not a failure of the check: it is in the header
// (spf=temperror, dkim=temperror, dmarc=temperror), its symbol scores 0,
// and Result.Err stays nil. It never counts as a pass or a fail: a DKIM
// temperror beside failed signatures gives DKIM_TEMPERROR, not
// DKIM_INVALID, and when an aligned identifier had a temperror, DMARC
// gives temperror instead of fail, so that no policy is applied on a guess.
// Nothing is tempfailed for a DNS temperror either: the message is judged
// by its other checks. Result.Err is set only when the check could not run
// (the spooled message could not be read); the pipeline then adds
// AUTH_ERROR scoring 0 and no header is added.
//
// # Trusted clients
//
// Clients in mynetworks (Conn.Trusted: our backends sending out) are not
// checked at all, as Postfix's policy services and rspamd skip
// authentication for their own networks: no symbols and no header. Their
// mail is ours, and an "spf=none" header on it would mislead the systems
// after us. Incoming Authentication-Results fields that claim this node's
// authserv-id are removed by the gateway as the message is received,
// whoever the client is (RFC 8601 §5).
//
// # DMARC reject
//
// A DMARC fail under p=reject (after sp= and pct=) refuses the message
// with "550 5.7.1 message refused: it fails the DMARC policy of DOMAIN
// (p=reject)", reason dmarc_reject in mxgate_messages_total. With
// Config.DMARCRejectAsScore it is scored instead (DMARC_FAIL_REJECT): for
// operators whose users get mail through forwarders and mailing lists that
// break alignment (this check does not evaluate ARC).
//
// # Symbols
//
// Each message gets one SPF, one DKIM and one DMARC symbol. The scores are
// on SpamAssassin's scale (a tag threshold around 5) and the config's
// spam.scores override them. Credits for passing are small on purpose:
// spammers authenticate their own domains as easily as anyone, so passing
// says who sent the message, not that it is wanted; failures of what a
// domain owner published weigh more.
//
//	symbol                 score  when, and why this score
//	SPF_PASS               -0.1   the client may send for the domain; little evidence of ham
//	SPF_FAIL                2     -all excludes the client; forwarding also causes it, so not alone enough to tag
//	SPF_SOFTFAIL            0.7   ~all: the owner is unsure of its own list
//	SPF_NEUTRAL             0     ?all says nothing
//	SPF_NONE                0.3   no SPF record: most legitimate senders publish one now, not all
//	SPF_TEMPERROR           0     DNS failure: not a verdict
//	SPF_PERMERROR           0     a broken record is its owner's mistake, not evidence about this message
//	DKIM_VALID             -0.2   a verified signature of a domain aligned (relaxed) with From
//	DKIM_VALID_UNALIGNED    0     verified, but for another domain (an ESP's): says who relayed, not who wrote
//	DKIM_INVALID            1     signatures present, none verified (failed, key missing or unusable); lists and footers break some in transit
//	DKIM_TEMPERROR          0     no signature verified and one could not be checked: not a verdict
//	DKIM_NONE               0     not signed: common for small legitimate senders
//	DMARC_PASS             -0.5   aligned authentication under a published policy
//	DMARC_FAIL_REJECT       8     p=reject failed, with DMARCRejectAsScore (else refused): over a tag or quarantine threshold alone, under a reject threshold of 10 or more
//	DMARC_FAIL_QUARANTINE   4     p=quarantine failed: tags with the SPF failure that usually comes with it
//	DMARC_FAIL_NONE         0.5   p=none failed: the owner is still monitoring, often because its own mail does not align yet
//	DMARC_NONE              0     no policy published
//	DMARC_TEMPERROR         0     not a verdict
//	DMARC_PERMERROR         0     invalid record, or no single From domain
//
// The detail of a symbol is the domain concerned (DKIM: the signing
// domains; DMARC: the From domain and its policy, "p=reject sp=none").
//
// # The header
//
// One field, the node's hostname as authserv-id; on one line when it fits
// in 78 octets, else one result per line; one dkim result per signature
// verified (dkim=none when unsigned); the DMARC policy as a comment:
//
//	Authentication-Results: mx1.example.net;
//		spf=pass smtp.mailfrom=joe@football.example.com;
//		dkim=pass header.d=football.example.com header.s=brisbane;
//		dmarc=pass (p=reject) header.from=football.example.com
//
// Values taken from the client or from DNS are cut to printable ASCII
// without quotes or backslashes before they go into the header.
package auth
