package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"slices"
	"time"
)

// ServerName is the DNS name every node certificate carries (in addition to
// the node's own name and hosts); clients verify the server against it, so a
// node certificate proves membership of the cluster, whatever address the
// node is reached at.
const ServerName = "cluster.mxgate"

// caCommonName is the subject of every cluster CA. It is the same for all
// clusters: what tells two CAs apart is their key, which chain
// verification checks, not their name.
const caCommonName = "mxgate cluster CA"

// clockSkew backdates NotBefore so that a certificate issued on one node is
// already valid on a node whose clock is a little behind.
const clockSkew = time.Hour

// Config keys of the three files, used to name them in errors so that an
// operator knows which line of mxgate.yaml to look at.
const (
	keyCAFile   = "cluster.tls.ca"
	keyCertFile = "cluster.tls.cert"
	keyKeyFile  = "cluster.tls.key"
)

// PEM block types. Keys are written as PKCS#8 only; the older SEC 1 and
// PKCS#1 forms are still read, so that a certificate made with openssl or
// another CA tool can be brought in.
const (
	pemCertificate = "CERTIFICATE"
	pemPKCS8Key    = "PRIVATE KEY"
	pemECKey       = "EC PRIVATE KEY"
	pemRSAKey      = "RSA PRIVATE KEY"
)

// GenerateCA makes a self-signed ECDSA P-256 CA (IsCA,
// KeyUsageCertSign|CRLSign, MaxPathLenZero), CN "mxgate cluster CA", random
// 128-bit serial.
func GenerateCA(validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, fmt.Errorf("generate cluster CA: validity %v is not positive", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate cluster CA: key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("generate cluster CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: caCommonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// The CA signs node certificates directly; it must never be able to
		// mint an intermediate that could then issue "node" certificates
		// outside the operator's view.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("generate cluster CA: sign: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("generate cluster CA: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}), keyPEM, nil
}

// IssueNodeCert signs a node certificate with the CA: ECDSA P-256, CN =
// node, SANs = ServerName, node, and each of hosts (IP literals go to
// IPAddresses, others to DNSNames), ExtKeyUsage ServerAuth and ClientAuth,
// KeyUsage DigitalSignature.
//
// The certificate never outlives the CA: NotAfter is cut to the CA's
// NotAfter, since the chain stops verifying then anyway, and a later date
// would only mislead whoever reads it.
func IssueNodeCert(caCertPEM, caKeyPEM []byte, node string, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, fmt.Errorf("issue certificate for node %q: validity %v is not positive", node, validity)
	}
	now := time.Now()
	return issueNodeCert(caCertPEM, caKeyPEM, node, hosts, now.Add(-clockSkew), now.Add(validity), true)
}

// issueNodeCert is IssueNodeCert with an explicit validity period; tests use
// it to make certificates that are expired or not yet valid. clampToCA cuts
// notAfter to the CA's NotAfter.
func issueNodeCert(caCertPEM, caKeyPEM []byte, node string, hosts []string, notBefore, notAfter time.Time, clampToCA bool) (certPEM, keyPEM []byte, err error) {
	if node == "" {
		return nil, nil, errors.New("issue node certificate: empty node name")
	}
	wrap := func(format string, args ...any) error {
		return fmt.Errorf("issue certificate for node %q: %w", node, fmt.Errorf(format, args...))
	}
	caCert, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, wrap("%w", err)
	}
	if clampToCA && notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	if !notAfter.After(notBefore) {
		return nil, nil, wrap("validity period is empty (not before %s, not after %s)",
			notBefore.UTC().Format(time.RFC3339), notAfter.UTC().Format(time.RFC3339))
	}

	var dnsNames []string
	var ips []net.IP
	for _, h := range append([]string{ServerName, node}, hosts...) {
		if h == "" {
			return nil, nil, wrap("empty host name")
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		if !slices.Contains(dnsNames, h) {
			dnsNames = append(dnsNames, h)
		}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, wrap("key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, wrap("%w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: node},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Both: every node is a server for the nodes that dial it and a
		// client when it dials them, with the same certificate.
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, wrap("sign: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, wrap("%w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der}), keyPEM, nil
}

// parseCA decodes a CA certificate and its key and checks that they belong
// together, so that a wrong ca-key.pem is reported here rather than as a
// node certificate that no node accepts.
func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	certs, err := decodeCertificates(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	if len(certs) != 1 {
		return nil, nil, fmt.Errorf("CA certificate: want exactly one certificate to sign with, found %d", len(certs))
	}
	caCert := certs[0]
	if !caCert.IsCA {
		return nil, nil, fmt.Errorf("CA certificate %q is not a CA (basic constraints)", caCert.Subject.CommonName)
	}
	caKey, err := decodeKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	if !publicKeysEqual(caKey.Public(), caCert.PublicKey) {
		return nil, nil, errors.New("CA key does not match the CA certificate")
	}
	return caCert, caKey, nil
}

// randomSerial returns a random positive serial number of at most 128 bits;
// RFC 5280 section 4.1.2.2 asks for positive serials of at most 20 octets,
// and randomness keeps serials unique without a counter to store.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPKCS8Key, Bytes: der}), nil
}

// errNotPEM and errNoCertificate are kept apart because they call for
// different fixes: the first is a wrong or damaged file, the second a key
// or other PEM file given where a certificate was expected.
var (
	errNotPEM        = errors.New("not PEM (no -----BEGIN block)")
	errNoCertificate = errors.New("no CERTIFICATE block")
	errNoKey         = errors.New("no PRIVATE KEY block")
)

// decodeCertificates returns every CERTIFICATE block of data, in order.
func decodeCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	var others []string
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != pemCertificate {
			others = append(others, block.Type)
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	switch {
	case len(certs) > 0:
		return certs, nil
	case len(others) > 0:
		return nil, fmt.Errorf("%w (found %v)", errNoCertificate, others)
	default:
		return nil, errNotPEM
	}
}

// decodeKey returns the first private key of data.
func decodeKey(data []byte) (crypto.Signer, error) {
	var others []string
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var key any
		var err error
		switch block.Type {
		case pemPKCS8Key:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case pemECKey:
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case pemRSAKey:
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			others = append(others, block.Type)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: unsupported key type %T", block.Type, key)
		}
		return signer, nil
	}
	if len(others) > 0 {
		return nil, fmt.Errorf("%w (found %v)", errNoKey, others)
	}
	return nil, errNotPEM
}

// publicKeysEqual reports whether a key pair's public half is the
// certificate's key. Every key type crypto/x509 parses has an Equal method.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// TLSFiles names the PEM files of a node (config keys cluster.tls.ca,
// .cert, .key).
type TLSFiles struct{ CA, Cert, Key string }

// TLS holds a node's loaded cluster TLS material.
type TLS struct {
	cert tls.Certificate
	pool *x509.CertPool
}

// fileError says which file (by config key and path) a problem was found
// in; LoadTLS returns only these.
type fileError struct {
	key, path string
	err       error
}

func (e *fileError) Error() string { return e.key + " " + e.path + ": " + e.err.Error() }
func (e *fileError) Unwrap() error { return e.err }

// LoadTLS reads and checks the files: each error names the file and says
// why (missing, not PEM, no certificate, key does not match cert, cert not
// signed by the CA, cert expired or not yet valid, cert lacks ServerName SAN
// or ServerAuth/ClientAuth usage).
//
// Everything a peer would refuse in the handshake is checked here, so that
// a bad file stops the node at start with a message naming it instead of
// showing up later as failed connections on the other nodes.
func LoadTLS(f TLSFiles) (*TLS, error) {
	return loadTLS(f, time.Now())
}

func loadTLS(f TLSFiles, now time.Time) (*TLS, error) {
	caData, err := readFile(keyCAFile, f.CA)
	if err != nil {
		return nil, err
	}
	certData, err := readFile(keyCertFile, f.Cert)
	if err != nil {
		return nil, err
	}
	keyData, err := readFile(keyKeyFile, f.Key)
	if err != nil {
		return nil, err
	}

	cas, err := decodeCertificates(caData)
	if err != nil {
		return nil, &fileError{keyCAFile, f.CA, err}
	}
	// Several CAs may be listed, which is how a CA is rotated: nodes trust
	// old and new while certificates are replaced.
	pool := x509.NewCertPool()
	for _, ca := range cas {
		if !ca.IsCA {
			return nil, &fileError{keyCAFile, f.CA, fmt.Errorf("certificate %q is not a CA (basic constraints); is this a node certificate?", ca.Subject.CommonName)}
		}
		pool.AddCert(ca)
	}

	chain, err := decodeCertificates(certData)
	if err != nil {
		return nil, &fileError{keyCertFile, f.Cert, err}
	}
	leaf := chain[0]
	key, err := decodeKey(keyData)
	if err != nil {
		return nil, &fileError{keyKeyFile, f.Key, err}
	}
	if !publicKeysEqual(key.Public(), leaf.PublicKey) {
		return nil, &fileError{keyKeyFile, f.Key, fmt.Errorf("key does not match the certificate in %s (%s)", f.Cert, keyCertFile)}
	}

	if err := checkNodeCert(leaf, now); err != nil {
		return nil, &fileError{keyCertFile, f.Cert, err}
	}
	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}
	// The handshake verifies a server for ServerAuth and a client for
	// ClientAuth; every node is both, so both must verify.
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots:         pool,
			Intermediates: intermediates,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{usage},
		})
		if err != nil {
			return nil, &fileError{keyCertFile, f.Cert, chainError(err, f.CA)}
		}
	}

	tlsCert := tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		tlsCert.Certificate = append(tlsCert.Certificate, c.Raw)
	}
	return &TLS{cert: tlsCert, pool: pool}, nil
}

func readFile(key, path string) ([]byte, error) {
	if path == "" {
		return nil, &fileError{key, path, errors.New("not set")}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		// The path is already in fileError; keep only the cause.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &fileError{key, path, fmt.Errorf("missing: %w", err)}
		}
		return nil, &fileError{key, path, fmt.Errorf("read: %w", err)}
	}
	return data, nil
}

// checkNodeCert checks what a node certificate needs besides a chain to
// the CA, with messages more precise than the verifier's.
func checkNodeCert(leaf *x509.Certificate, now time.Time) error {
	const layout = time.RFC3339
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("certificate not yet valid: valid from %s (is the clock right?)", leaf.NotBefore.UTC().Format(layout))
	}
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("certificate expired on %s", leaf.NotAfter.UTC().Format(layout))
	}
	if err := leaf.VerifyHostname(ServerName); err != nil {
		return fmt.Errorf("certificate %q lacks the DNS name %s that every node certificate carries (subject alternative names %v)",
			leaf.Subject.CommonName, ServerName, leaf.DNSNames)
	}
	// No ExtKeyUsage at all would pass Go's verifier for any usage; a
	// node certificate from IssueNodeCert always names both, so demand them.
	for _, want := range []struct {
		usage x509.ExtKeyUsage
		name  string
	}{{x509.ExtKeyUsageServerAuth, "ServerAuth"}, {x509.ExtKeyUsageClientAuth, "ClientAuth"}} {
		if !slices.Contains(leaf.ExtKeyUsage, want.usage) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
			return fmt.Errorf("certificate %q lacks extended key usage %s (node certificates need ServerAuth and ClientAuth)",
				leaf.Subject.CommonName, want.name)
		}
	}
	return nil
}

// chainError turns a verification failure into a reason an operator can
// act on.
func chainError(err error, caPath string) error {
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return fmt.Errorf("certificate not signed by the cluster CA in %s (%s): %w", caPath, keyCAFile, err)
	}
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) && invalid.Reason == x509.Expired {
		// The leaf's own dates were checked before, so this is the CA
		// or an intermediate.
		return fmt.Errorf("issuing certificate %q is expired or not yet valid (valid %s to %s): %w",
			invalid.Cert.Subject.CommonName,
			invalid.Cert.NotBefore.UTC().Format(time.RFC3339), invalid.Cert.NotAfter.UTC().Format(time.RFC3339), err)
	}
	return fmt.Errorf("certificate does not verify against the cluster CA in %s (%s): %w", caPath, keyCAFile, err)
}

// ServerConfig returns the configuration for the node's listener: TLS 1.3
// minimum, the node certificate, and client certificates required and
// verified against the cluster CA only, so that only nodes can connect.
// Each call returns a new Config that the caller may change.
func (t *TLS) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    t.pool,
	}
}

// ClientConfig returns the configuration for dialing another node: TLS 1.3
// minimum, the node certificate presented, and the server verified against
// the cluster CA only (never the system roots) under ServerName, whatever
// address it was dialed at. Each call returns a new Config that the caller
// may change.
func (t *TLS) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{t.cert},
		RootCAs:      t.pool,
		ServerName:   ServerName,
	}
}
