package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const testValidity = 24 * time.Hour

type testCA struct{ cert, key []byte }

func newTestCA(t *testing.T) testCA {
	t.Helper()
	cert, key, err := GenerateCA(testValidity)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert, key}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeNodeFiles writes the CA, a node certificate and key into a fresh
// directory; the file names carry the node name so that an error naming the
// wrong file is caught.
func writeNodeFiles(t *testing.T, ca testCA, node string, cert, key []byte) TLSFiles {
	t.Helper()
	dir := t.TempDir()
	f := TLSFiles{
		CA:   filepath.Join(dir, node+"-ca.pem"),
		Cert: filepath.Join(dir, node+"-cert.pem"),
		Key:  filepath.Join(dir, node+"-key.pem"),
	}
	writeFile(t, f.CA, ca.cert)
	writeFile(t, f.Cert, cert)
	writeFile(t, f.Key, key)
	return f
}

// loadNode issues a certificate for node from ca and loads it.
func loadNode(t *testing.T, ca testCA, node string) *TLS {
	t.Helper()
	cert, key, err := IssueNodeCert(ca.cert, ca.key, node, nil, testValidity)
	if err != nil {
		t.Fatal(err)
	}
	nt, err := LoadTLS(writeNodeFiles(t, ca, node, cert, key))
	if err != nil {
		t.Fatal(err)
	}
	return nt
}

func parseCertPEM(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a CERTIFICATE PEM block: %q", data)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type handshakeResult struct {
	err   error
	state tls.ConnectionState
}

// handshake runs one connection over loopback and exchanges a byte each
// way. The exchange matters: in TLS 1.3 the client finishes its handshake
// before the server has checked the client certificate, so a refusal
// reaches the client only on its first read.
func handshake(t *testing.T, serverConf, clientConf *tls.Config) (server, client handshakeResult) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)

	done := make(chan handshakeResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- handshakeResult{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		tc := tls.Server(c, serverConf)
		var res handshakeResult
		res.err = tc.Handshake()
		if res.err == nil {
			buf := make([]byte, 1)
			if _, res.err = io.ReadFull(tc, buf); res.err == nil {
				_, res.err = tc.Write([]byte("s"))
			}
		}
		res.state = tc.ConnectionState()
		done <- res
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	tc := tls.Client(c, clientConf)
	client.err = tc.Handshake()
	if client.err == nil {
		if _, client.err = tc.Write([]byte("c")); client.err == nil {
			buf := make([]byte, 1)
			_, client.err = io.ReadFull(tc, buf)
		}
	}
	client.state = tc.ConnectionState()
	if client.err != nil {
		// Unblock a server still waiting for the client's byte.
		c.Close()
	}
	return <-done, client
}

func peerCN(state tls.ConnectionState) string {
	if len(state.PeerCertificates) == 0 {
		return ""
	}
	return state.PeerCertificates[0].Subject.CommonName
}

func TestTLSMutualAuthBothWays(t *testing.T) {
	ca := newTestCA(t)
	mx1, mx2 := loadNode(t, ca, "mx1"), loadNode(t, ca, "mx2")

	for _, tc := range []struct {
		server, client     *TLS
		serverCN, clientCN string
	}{
		{mx1, mx2, "mx1", "mx2"},
		{mx2, mx1, "mx2", "mx1"},
	} {
		server, client := handshake(t, tc.server.ServerConfig(), tc.client.ClientConfig())
		if server.err != nil || client.err != nil {
			t.Fatalf("%s dialing %s: server error %v, client error %v", tc.clientCN, tc.serverCN, server.err, client.err)
		}
		// The nodes were reached at 127.0.0.1, which neither certificate
		// names: ServerName is what the client checked.
		if got := peerCN(server.state); got != tc.clientCN {
			t.Errorf("server %s sees client CN %q, want %q", tc.serverCN, got, tc.clientCN)
		}
		if got := peerCN(client.state); got != tc.serverCN {
			t.Errorf("client %s sees server CN %q, want %q", tc.clientCN, got, tc.serverCN)
		}
		if server.state.Version != tls.VersionTLS13 {
			t.Errorf("negotiated version %#x, want TLS 1.3", server.state.Version)
		}
	}
}

func TestTLSServerRefusesClientFromOtherCA(t *testing.T) {
	ca := newTestCA(t)
	// The intruder trusts the cluster CA, so that it is the server's check
	// of the client certificate that fails and not the client's of the
	// server's.
	clientConf := loadNode(t, newTestCA(t), "intruder").ClientConfig()
	clientConf.RootCAs = x509.NewCertPool()
	clientConf.RootCAs.AddCert(parseCertPEM(t, ca.cert))
	server, client := handshake(t, loadNode(t, ca, "mx1").ServerConfig(), clientConf)
	var unknown x509.UnknownAuthorityError
	if !errors.As(server.err, &unknown) {
		t.Errorf("server error = %v, want an unknown authority error", server.err)
	}
	if client.err == nil {
		t.Error("client from another CA exchanged data with the server")
	}
}

func TestTLSClientRefusesServerFromOtherCA(t *testing.T) {
	server, client := handshake(t,
		loadNode(t, newTestCA(t), "impostor").ServerConfig(),
		loadNode(t, newTestCA(t), "mx1").ClientConfig())
	var unknown x509.UnknownAuthorityError
	if !errors.As(client.err, &unknown) {
		t.Errorf("client error = %v, want an unknown authority error", client.err)
	}
	if server.err == nil {
		t.Error("server from another CA exchanged data with the client")
	}
}

func TestTLSServerRefusesClientWithoutCert(t *testing.T) {
	ca := newTestCA(t)
	clientConf := loadNode(t, ca, "mx2").ClientConfig()
	clientConf.Certificates = nil
	server, client := handshake(t, loadNode(t, ca, "mx1").ServerConfig(), clientConf)
	if server.err == nil {
		t.Error("server accepted a client without a certificate")
	}
	// RFC 8446 section 4.4.2.4: a server that requires a client
	// certificate answers an empty one with certificate_required.
	if client.err == nil || !strings.Contains(client.err.Error(), "certificate required") {
		t.Errorf("client error = %v, want a certificate required alert", client.err)
	}
}

func TestTLSServerRefusesTLS12Client(t *testing.T) {
	ca := newTestCA(t)
	clientConf := loadNode(t, ca, "mx2").ClientConfig()
	clientConf.MinVersion, clientConf.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	server, client := handshake(t, loadNode(t, ca, "mx1").ServerConfig(), clientConf)
	if server.err == nil {
		t.Error("server accepted a TLS 1.2 client")
	}
	if client.err == nil || !strings.Contains(client.err.Error(), "protocol version") {
		t.Errorf("client error = %v, want a protocol version alert", client.err)
	}
}

func TestTLSConfigs(t *testing.T) {
	nt := loadNode(t, newTestCA(t), "mx1")
	s, c := nt.ServerConfig(), nt.ClientConfig()
	if s.MinVersion != tls.VersionTLS13 || c.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion server %#x client %#x, want TLS 1.3", s.MinVersion, c.MinVersion)
	}
	if s.ClientAuth != tls.RequireAndVerifyClientCert || s.ClientCAs == nil {
		t.Errorf("server ClientAuth %v ClientCAs %v, want verified client certificates against the CA", s.ClientAuth, s.ClientCAs)
	}
	if c.RootCAs == nil || c.ServerName != ServerName || c.InsecureSkipVerify {
		t.Errorf("client RootCAs %v ServerName %q InsecureSkipVerify %v", c.RootCAs, c.ServerName, c.InsecureSkipVerify)
	}
	if len(s.Certificates) != 1 || len(c.Certificates) != 1 {
		t.Errorf("certificates: server %d client %d, want 1 each", len(s.Certificates), len(c.Certificates))
	}
	// Callers may adjust their copy without changing the next one.
	c.ServerName = "changed"
	if nt.ClientConfig().ServerName != ServerName {
		t.Error("ClientConfig returned a shared Config")
	}
}

func TestGenerateCA(t *testing.T) {
	certPEM, keyPEM, err := GenerateCA(testValidity)
	if err != nil {
		t.Fatal(err)
	}
	c := parseCertPEM(t, certPEM)
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("IsCA %v BasicConstraintsValid %v MaxPathLen %d MaxPathLenZero %v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("KeyUsage %v, want CertSign|CRLSign", c.KeyUsage)
	}
	if c.Subject.CommonName != "mxgate cluster CA" {
		t.Errorf("CN %q", c.Subject.CommonName)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v: want positive, at most 128 bits", c.SerialNumber)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if d := time.Until(c.NotAfter); d > testValidity || d < testValidity-time.Minute {
		t.Errorf("NotAfter %v is not %v from now", c.NotAfter, testValidity)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key is not a PKCS#8 PRIVATE KEY block")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		t.Errorf("key: %v", err)
	}
	if _, _, err := GenerateCA(0); err == nil {
		t.Error("GenerateCA(0) succeeded")
	}

	other := parseCertPEM(t, newTestCA(t).cert)
	if other.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two CAs got the same serial")
	}
}

func TestIssueNodeCert(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM, err := IssueNodeCert(ca.cert, ca.key, "mx1", []string{"10.0.0.1", "mx1.example.net", "::1", "mx1"}, testValidity)
	if err != nil {
		t.Fatal(err)
	}
	c := parseCertPEM(t, certPEM)
	if c.Subject.CommonName != "mx1" {
		t.Errorf("CN %q, want mx1", c.Subject.CommonName)
	}
	if want := []string{ServerName, "mx1", "mx1.example.net"}; !slices.Equal(c.DNSNames, want) {
		t.Errorf("DNSNames %q, want %q", c.DNSNames, want)
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) || !c.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IPAddresses %v, want [10.0.0.1 ::1]", c.IPAddresses)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage %v, want ServerAuth, ClientAuth", c.ExtKeyUsage)
	}
	if c.KeyUsage != x509.KeyUsageDigitalSignature || c.IsCA {
		t.Errorf("KeyUsage %v IsCA %v", c.KeyUsage, c.IsCA)
	}
	if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if err := c.CheckSignatureFrom(parseCertPEM(t, ca.cert)); err != nil {
		t.Errorf("not signed by the CA: %v", err)
	}
	if block, _ := pem.Decode(keyPEM); block == nil || block.Type != "PRIVATE KEY" {
		t.Error("key is not a PKCS#8 PRIVATE KEY block")
	}

	// A node certificate asked to outlive its CA stops with the CA.
	long, _, err := IssueNodeCert(ca.cert, ca.key, "mx2", nil, 10*testValidity)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := parseCertPEM(t, long).NotAfter, parseCertPEM(t, ca.cert).NotAfter; !got.Equal(want) {
		t.Errorf("NotAfter %v, want the CA's %v", got, want)
	}

	other := newTestCA(t)
	for name, args := range map[string]struct {
		caCert, caKey []byte
		node          string
		hosts         []string
	}{
		"empty node":     {ca.cert, ca.key, "", nil},
		"empty host":     {ca.cert, ca.key, "mx1", []string{""}},
		"key of another": {ca.cert, other.key, "mx1", nil},
		"node as CA":     {certPEM, keyPEM, "mx3", nil},
		"garbage CA":     {[]byte("garbage"), ca.key, "mx1", nil},
	} {
		if _, _, err := IssueNodeCert(args.caCert, args.caKey, args.node, args.hosts, testValidity); err == nil {
			t.Errorf("%s: IssueNodeCert succeeded", name)
		}
	}
}

// signLeaf signs tmpl with the CA, for certificates IssueNodeCert would
// never make.
func signLeaf(t *testing.T, ca testCA, tmpl *x509.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	caCert, caKey, err := parseCA(ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(1)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM
}

func TestLoadTLSErrorsNameTheFile(t *testing.T) {
	ca := newTestCA(t)
	cert, key, err := IssueNodeCert(ca.cert, ca.key, "mx1", nil, testValidity)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := IssueNodeCert(ca.cert, ca.key, "mx2", nil, testValidity)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := newTestCA(t)
	foreignCert, foreignKey, err := IssueNodeCert(otherCA.cert, otherCA.key, "mx1", nil, testValidity)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	expiredCert, expiredKey, err := issueNodeCert(ca.cert, ca.key, "mx1", nil, now.Add(-48*time.Hour), now.Add(-24*time.Hour), false)
	if err != nil {
		t.Fatal(err)
	}
	futureCert, futureKey, err := issueNodeCert(ca.cert, ca.key, "mx1", nil, now.Add(time.Hour), now.Add(2*time.Hour), false)
	if err != nil {
		t.Fatal(err)
	}
	noSANCert, noSANKey := signLeaf(t, ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "mx1"},
		DNSNames:    []string{"mx1"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	serverOnlyCert, serverOnlyKey := signLeaf(t, ca, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "mx1"},
		DNSNames:    []string{ServerName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	garbage := []byte("this is not a certificate\n")

	type which int
	const (
		caFile which = iota
		certFile
		keyFile
	)
	for _, tc := range []struct {
		name      string
		ca        []byte
		cert, key []byte
		remove    which // -1: none
		bad       which
		reason    string
	}{
		{"mismatched key", ca.cert, cert, otherKey, -1, keyFile, "does not match"},
		{"cert from another CA", ca.cert, foreignCert, foreignKey, -1, certFile, "not signed by the cluster CA"},
		{"expired cert", ca.cert, expiredCert, expiredKey, -1, certFile, "expired"},
		{"cert not yet valid", ca.cert, futureCert, futureKey, -1, certFile, "not yet valid"},
		{"cert lacks ServerName", ca.cert, noSANCert, noSANKey, -1, certFile, ServerName},
		{"cert lacks ClientAuth", ca.cert, serverOnlyCert, serverOnlyKey, -1, certFile, "ClientAuth"},
		{"garbage CA", garbage, cert, key, -1, caFile, "not PEM"},
		{"garbage cert", ca.cert, garbage, key, -1, certFile, "not PEM"},
		{"garbage key", ca.cert, cert, garbage, -1, keyFile, "not PEM"},
		{"key as cert", ca.cert, key, key, -1, certFile, "no CERTIFICATE"},
		{"cert as key", ca.cert, cert, cert, -1, keyFile, "no PRIVATE KEY"},
		{"node cert as CA", cert, cert, key, -1, caFile, "not a CA"},
		{"missing CA", ca.cert, cert, key, caFile, caFile, "missing"},
		{"missing cert", ca.cert, cert, key, certFile, certFile, "missing"},
		{"missing key", ca.cert, cert, key, keyFile, keyFile, "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeNodeFiles(t, testCA{cert: tc.ca}, "mx1", tc.cert, tc.key)
			paths := map[which]string{caFile: f.CA, certFile: f.Cert, keyFile: f.Key}
			keys := map[which]string{caFile: "cluster.tls.ca", certFile: "cluster.tls.cert", keyFile: "cluster.tls.key"}
			if tc.remove >= 0 {
				if err := os.Remove(paths[tc.remove]); err != nil {
					t.Fatal(err)
				}
			}
			nt, err := LoadTLS(f)
			if err == nil {
				t.Fatalf("LoadTLS succeeded: %v", nt)
			}
			msg := err.Error()
			wantPrefix := keys[tc.bad] + " " + paths[tc.bad] + ": "
			if !strings.HasPrefix(msg, wantPrefix) {
				t.Errorf("error %q does not start with %q", msg, wantPrefix)
			}
			if !strings.Contains(msg, tc.reason) {
				t.Errorf("error %q does not say %q", msg, tc.reason)
			}
			if tc.remove >= 0 && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("error %q is not os.ErrNotExist", msg)
			}
		})
	}

	if _, err := LoadTLS(TLSFiles{}); err == nil || !strings.Contains(err.Error(), "cluster.tls.ca") {
		t.Errorf("LoadTLS with no files: %v", err)
	}
}

// TestLoadTLSAcceptsCABundle covers CA rotation: a node whose CA file holds
// the old and the new CA accepts certificates from both.
func TestLoadTLSAcceptsCABundle(t *testing.T) {
	oldCA, newCA := newTestCA(t), newTestCA(t)
	bundle := testCA{cert: append(append([]byte{}, oldCA.cert...), newCA.cert...)}
	for _, ca := range []testCA{oldCA, newCA} {
		cert, key, err := IssueNodeCert(ca.cert, ca.key, "mx1", nil, testValidity)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := LoadTLS(writeNodeFiles(t, bundle, "mx1", cert, key)); err != nil {
			t.Error(err)
		}
	}
}
