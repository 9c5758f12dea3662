package dns

import (
	"errors"
	"fmt"
)

// Kind says why a lookup gave no records. A Kind is itself an error, so that
// errors.Is(err, dns.NXDomain) works on every error of this package and a
// Mock can be told to fail with one.
type Kind int

// The kinds of failure. NXDomain, NoData, InvalidName and NullMX are
// permanent:
// asking again gives the same answer. The others are temporary.
const (
	// NXDomain: the name does not exist (RCODE 3).
	NXDomain Kind = iota + 1
	// NoData: the name exists but has no records of the type asked for.
	NoData
	// ServFail: the resolver answered SERVFAIL (it could not get an answer,
	// or DNSSEC validation failed).
	ServFail
	// Refused: the resolver answered REFUSED.
	Refused
	// Timeout: no answer within the timeout, or the caller's context ended.
	Timeout
	// NetworkError: the query could not be sent or the answer not read.
	NetworkError
	// BadAnswer: an answer that cannot be used: malformed, for another
	// question, too many records, a CNAME loop or too long a chain, or
	// another RCODE (FORMERR, NOTIMP...).
	BadAnswer
	// InvalidName: the name asked for is not a domain name; nothing was
	// sent.
	InvalidName
	// NullMX: the domain publishes the null MX of RFC 7505, it accepts no
	// mail (from MailHosts only).
	NullMX
)

func (k Kind) String() string {
	switch k {
	case NXDomain:
		return "no such domain (NXDOMAIN)"
	case NoData:
		return "no records of this type (NODATA)"
	case ServFail:
		return "server failure (SERVFAIL)"
	case Refused:
		return "query refused (REFUSED)"
	case Timeout:
		return "timeout"
	case NetworkError:
		return "network error"
	case BadAnswer:
		return "unusable answer"
	case InvalidName:
		return "invalid domain name"
	case NullMX:
		return "domain accepts no mail (null MX)"
	}
	return fmt.Sprintf("dns error kind %d", int(k))
}

// Error makes a Kind an error.
func (k Kind) Error() string { return k.String() }

// Temporary reports whether asking again later may give another answer.
func (k Kind) Temporary() bool {
	switch k {
	case NXDomain, NoData, InvalidName, NullMX:
		return false
	}
	return true
}

// Error is the error of a lookup that gave no records.
type Error struct {
	Kind   Kind
	Type   string // the record type asked for: "MX", "A", "AAAA", "TXT", "PTR", "TLSA"
	Name   string // the name asked for, absolute
	Server string // the resolver that answered ("" for an answer from the cache or a Mock)
	Err    error  // the underlying cause, if any (network error, context error...)
}

func (e *Error) Error() string {
	s := "dns " + e.Type + " " + e.Name + ": " + e.Kind.String()
	if e.Server != "" {
		s += " from " + e.Server
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches a Kind: errors.Is(err, dns.NXDomain).
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k == e.Kind
}

// Temporary reports whether asking again later may give another answer.
func (e *Error) Temporary() bool { return e.Kind.Temporary() }

// Timeout reports whether the lookup timed out.
func (e *Error) Timeout() bool { return e.Kind == Timeout }

// KindOf returns the Kind of err, or 0 if err is nil or not from this
// package.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	var k Kind
	if errors.As(err, &k) {
		return k
	}
	return 0
}

// IsNotFound reports whether err says there are no such records: the name
// does not exist (NXDOMAIN) or has no records of the type (NODATA). Both
// are permanent.
func IsNotFound(err error) bool {
	k := KindOf(err)
	return k == NXDomain || k == NoData
}

// IsNXDomain reports whether err says the name does not exist.
func IsNXDomain(err error) bool { return KindOf(err) == NXDomain }

// IsNoData reports whether err says the name exists without records of the
// type.
func IsNoData(err error) bool { return KindOf(err) == NoData }

// IsTemporary reports whether err is a temporary failure: any non-nil error
// other than NXDOMAIN, NODATA, an invalid name and a null MX, including
// errors not
// from this package (such as a Mock's), so that an unknown error is retried
// rather than taken as a final answer.
func IsTemporary(err error) bool {
	if err == nil {
		return false
	}
	k := KindOf(err)
	return k == 0 || k.Temporary()
}
