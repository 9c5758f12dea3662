package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mxgate/mxgate/cluster"
	"github.com/mxgate/mxgate/internal/safefile"
)

const tlsInitUsage = `Usage: mxgate cluster tls-init -dir DIR -nodes mx1,mx2,mx3 [-hosts 'mx1=10.0.0.1,mx1.example.net;mx2=10.0.0.2'] [-days 3650]

Creates the cluster CA, a certificate and key for each node, and the gossip
encryption key in DIR. Files that exist are kept: run again with -nodes mx4
to add a node with the same CA.

`

// Names of the files in DIR. A node's files are NODE.pem and NODE-key.pem,
// which is why node names "ca" and "*-key" are refused: they would collide
// with the CA's files or another node's key.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
	gossipFile = "gossip.key"
	keySuffix  = "-key"
)

// gossipKeyLen is the memberlist key size: 32 bytes selects AES-256.
// memberlist also accepts 16 and 24, so an existing file with those is kept.
const gossipKeyLen = 32

const maxDays = 36500 // keeps days*24h far from time.Duration overflow

type tlsInitOptions struct {
	dir      string
	nodes    []string
	hosts    map[string][]string
	validity time.Duration
}

// runClusterTLSInit implements `mxgate cluster tls-init -dir DIR -nodes
// mx1,mx2,mx3 [-hosts mx1=10.0.0.1,mx1.example.net;mx2=...] [-days 3650]`.
func runClusterTLSInit(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("cluster tls-init", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() {
		fmt.Fprint(stderr, tlsInitUsage)
		fset.PrintDefaults()
	}
	dir := fset.String("dir", "", "directory to write the files into (created 0700)")
	nodes := fset.String("nodes", "", "comma-separated node names, as in each node's node.name")
	hosts := fset.String("hosts", "", "extra names and addresses per node: 'NODE=host,host;NODE=host'")
	days := fset.Int("days", 3650, "validity in days of a new CA and of new node certificates (which never outlive the CA)")
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2 // the flag package has printed the error and the usage
	}
	opts, err := tlsInitOptionsFrom(*dir, *nodes, *hosts, *days, fset.Args())
	if err != nil {
		fmt.Fprintf(stderr, "mxgate cluster tls-init: %v (see -h)\n", err)
		return 2
	}
	if err := tlsInit(opts, stdout); err != nil {
		fmt.Fprintf(stderr, "mxgate cluster tls-init: %v\n", err)
		return 1
	}
	return 0
}

// tlsInitOptionsFrom checks the flags; every error it returns is a usage
// error.
func tlsInitOptionsFrom(dir, nodes, hosts string, days int, rest []string) (tlsInitOptions, error) {
	var o tlsInitOptions
	if len(rest) > 0 {
		return o, fmt.Errorf("unexpected argument %q", rest[0])
	}
	if dir == "" {
		return o, fmt.Errorf("-dir is required")
	}
	if nodes == "" {
		return o, fmt.Errorf("-nodes is required")
	}
	if days < 1 || days > maxDays {
		return o, fmt.Errorf("-days %d: want 1 to %d", days, maxDays)
	}
	o.dir = dir
	o.validity = time.Duration(days) * 24 * time.Hour

	for _, n := range strings.Split(nodes, ",") {
		n = strings.TrimSpace(n)
		if err := checkNodeName(n); err != nil {
			return o, fmt.Errorf("-nodes: %v", err)
		}
		for _, prev := range o.nodes {
			// Case-insensitively, since on a case-insensitive file system
			// MX1.pem and mx1.pem are the same file.
			if strings.EqualFold(prev, n) {
				return o, fmt.Errorf("-nodes: node %q listed twice", n)
			}
		}
		o.nodes = append(o.nodes, n)
	}

	o.hosts = make(map[string][]string)
	for _, entry := range strings.Split(hosts, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue // tolerate "a=x;" and an empty -hosts
		}
		node, list, ok := strings.Cut(entry, "=")
		node = strings.TrimSpace(node)
		if !ok {
			return o, fmt.Errorf("-hosts: entry %q: want NODE=host1,host2", entry)
		}
		if !slices.Contains(o.nodes, node) {
			return o, fmt.Errorf("-hosts: node %q is not in -nodes", node)
		}
		if _, dup := o.hosts[node]; dup {
			return o, fmt.Errorf("-hosts: node %q has two entries; list all its hosts in one", node)
		}
		var hs []string
		for _, h := range strings.Split(list, ",") {
			h = strings.TrimSpace(h)
			if err := checkHost(h); err != nil {
				return o, fmt.Errorf("-hosts: node %s: %v", node, err)
			}
			hs = append(hs, h)
		}
		o.hosts[node] = hs
	}
	return o, nil
}

// checkNodeName accepts what can be both a file name in DIR and a DNS name
// in the certificate.
func checkNodeName(n string) error {
	if n == "" || len(n) > 64 {
		return fmt.Errorf("node name %q: want 1 to 64 characters", n)
	}
	for _, r := range n {
		if !isAlnum(r) && r != '-' && r != '_' && r != '.' {
			return fmt.Errorf("node name %q: %q is not allowed; use letters, digits, '-', '_' and '.'", n, r)
		}
	}
	switch {
	case n[0] == '.':
		return fmt.Errorf("node name %q: must not start with '.' (its files would be hidden)", n)
	case strings.EqualFold(n, "ca"):
		return fmt.Errorf("node name %q is reserved: its files would be the CA's", n)
	case len(n) >= len(keySuffix) && strings.EqualFold(n[len(n)-len(keySuffix):], keySuffix):
		return fmt.Errorf("node name %q: must not end in %q (its certificate file would be another node's key file)", n, keySuffix)
	}
	return nil
}

// checkHost accepts an IP literal or a DNS host name (RFC 1123 labels, with
// '_' allowed as in node names).
func checkHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if net.ParseIP(h) != nil {
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("host %q: longer than 253 characters", h)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q: neither an IP address nor a DNS name", h)
		}
		for _, r := range label {
			if !isAlnum(r) && r != '-' && r != '_' {
				return fmt.Errorf("host %q: neither an IP address nor a DNS name", h)
			}
		}
	}
	return nil
}

func isAlnum(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
}

// tlsInitStep is one file of the result: written when data is set, kept
// otherwise.
type tlsInitStep struct {
	path string
	data []byte
	perm fs.FileMode
	note string
}

// tlsInit works in two phases: first it checks what exists and makes all
// new material in memory, then it writes. Anything wrong (a half pair, an
// existing certificate that does not load with the CA, a broken CA) stops
// the run before a single file is written, so DIR is never left worse than
// it was found.
func tlsInit(o tlsInitOptions, stdout io.Writer) error {
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return fmt.Errorf("-dir %s: %w", o.dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	var steps []tlsInitStep

	caCertPath, caKeyPath := path(caCertFile), path(caKeyFile)
	caExists, err := pairExists(caCertPath, caKeyPath)
	if err != nil {
		return err
	}
	var caCertPEM, caKeyPEM []byte
	if caExists {
		if caCertPEM, err = os.ReadFile(caCertPath); err != nil {
			return fmt.Errorf("read CA: %w", err)
		}
		if caKeyPEM, err = os.ReadFile(caKeyPath); err != nil {
			return fmt.Errorf("read CA key: %w", err)
		}
		notAfter, err := certNotAfter(caCertPEM)
		if err != nil {
			return fmt.Errorf("%s: %w", caCertPath, err)
		}
		if !time.Now().Before(notAfter) {
			return fmt.Errorf("%s: the CA expired on %s; move DIR aside and start over with a new CA", caCertPath, day(notAfter))
		}
		steps = append(steps,
			tlsInitStep{path: caCertPath, note: "existing CA, expires " + day(notAfter)},
			tlsInitStep{path: caKeyPath, note: "existing CA key"})
	} else {
		if caCertPEM, caKeyPEM, err = cluster.GenerateCA(o.validity); err != nil {
			return err
		}
		notAfter, err := certNotAfter(caCertPEM)
		if err != nil {
			return fmt.Errorf("new CA: %w", err)
		}
		// Key first: a crash in between leaves a key without a
		// certificate, which the next run reports rather than using.
		steps = append(steps,
			tlsInitStep{path: caKeyPath, data: caKeyPEM, perm: 0o600, note: "CA key: needed only to add nodes, keep it off the nodes"},
			tlsInitStep{path: caCertPath, data: caCertPEM, perm: 0o644, note: "new CA, expires " + day(notAfter)})
	}

	for _, node := range o.nodes {
		certPath, keyPath := path(node+".pem"), path(node+keySuffix+".pem")
		exists, err := pairExists(certPath, keyPath)
		if err != nil {
			return err
		}
		if exists {
			if !caExists {
				return fmt.Errorf("%s exists but there is no CA to check it against: restore %s and %s, or remove the node's files to reissue them",
					certPath, caCertFile, caKeyFile)
			}
			// A kept certificate must still work, or the hint printed
			// at the end would point at files the node refuses.
			if _, err := cluster.LoadTLS(cluster.TLSFiles{CA: caCertPath, Cert: certPath, Key: keyPath}); err != nil {
				return fmt.Errorf("node %s: existing files do not load: %w; remove %s and %s to reissue them",
					node, err, filepath.Base(certPath), filepath.Base(keyPath))
			}
			note := "exists, not overwritten"
			if len(o.hosts[node]) > 0 {
				note += "; -hosts not applied: remove it and its key to reissue"
			}
			steps = append(steps, tlsInitStep{path: certPath, note: note}, tlsInitStep{path: keyPath, note: "exists, not overwritten"})
			continue
		}
		certPEM, keyPEM, err := cluster.IssueNodeCert(caCertPEM, caKeyPEM, node, o.hosts[node], o.validity)
		if err != nil {
			return err
		}
		notAfter, err := certNotAfter(certPEM)
		if err != nil {
			return fmt.Errorf("node %s: %w", node, err)
		}
		names := append([]string{cluster.ServerName, node}, o.hosts[node]...)
		steps = append(steps,
			tlsInitStep{path: keyPath, data: keyPEM, perm: 0o600, note: "key of node " + node},
			tlsInitStep{path: certPath, data: certPEM, perm: 0o644,
				note: fmt.Sprintf("node %s: %s; expires %s", node, strings.Join(names, ", "), day(notAfter))})
	}

	gossipPath := path(gossipFile)
	if data, err := os.ReadFile(gossipPath); err == nil {
		if _, err := cluster.ParseSecretKey(data); err != nil {
			return fmt.Errorf("%s: %w; remove it to make a new one (and give it to every node)", gossipPath, err)
		}
		steps = append(steps, tlsInitStep{path: gossipPath, note: "exists, not overwritten"})
	} else if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, gossipKeyLen)
		if _, err := rand.Read(key); err != nil {
			return fmt.Errorf("gossip key: %w", err)
		}
		steps = append(steps, tlsInitStep{path: gossipPath, data: []byte(base64.StdEncoding.EncodeToString(key) + "\n"),
			perm: 0o600, note: "gossip encryption key for cluster.secret_file"})
	} else {
		return fmt.Errorf("read gossip key: %w", err)
	}

	for _, s := range steps {
		if s.data == nil {
			fmt.Fprintf(stdout, "kept  %s (%s)\n", s.path, s.note)
			continue
		}
		if err := safefile.Write(s.path, s.data, s.perm); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s (%s)\n", s.path, s.note)
	}

	fmt.Fprintf(stdout, "\nCopy %s, %s and the node's own NODE.pem and NODE-key.pem to each node; in its mxgate.yaml:\n", caCertFile, gossipFile)
	for _, node := range o.nodes {
		fmt.Fprintf(stdout, "# %s\ncluster: {secret_file: %s, tls: {ca: %s, cert: %s, key: %s}}\n", node,
			yamlScalar(gossipPath), yamlScalar(caCertPath), yamlScalar(path(node+".pem")), yamlScalar(path(node+keySuffix+".pem")))
	}
	return nil
}

// pairExists reports whether both files of a certificate and key pair
// exist. Exactly one of them is an error: making the missing half would
// need overwriting the other, which tls-init never does.
func pairExists(certPath, keyPath string) (bool, error) {
	certOK, err := fileExists(certPath)
	if err != nil {
		return false, err
	}
	keyOK, err := fileExists(keyPath)
	if err != nil {
		return false, err
	}
	if certOK != keyOK {
		have, missing := certPath, keyPath
		if keyOK {
			have, missing = keyPath, certPath
		}
		return false, fmt.Errorf("%s exists but %s does not: restore it, or remove %s to make a new pair",
			have, missing, filepath.Base(have))
	}
	return certOK, nil
}

func fileExists(p string) (bool, error) {
	_, err := os.Stat(p)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

func certNotAfter(certPEM []byte) (time.Time, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return time.Time{}, errors.New("no CERTIFICATE PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse certificate: %w", err)
	}
	return c.NotAfter, nil
}

func day(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// yamlScalar returns s as a YAML flow scalar, quoted when it holds
// characters that would end or change a plain scalar inside {...}.
func yamlScalar(s string) string {
	for _, r := range s {
		if !isAlnum(r) && !strings.ContainsRune("/._-+@", r) {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}
