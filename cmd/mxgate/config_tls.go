package main

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mxgate/mxgate/gateway"
)

// TLSSection is the certificate for STARTTLS on every SMTP listener.
type TLSSection struct {
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	MinVersion string `yaml:"min_version"`
}

func (s *TLSSection) setDefaults() { *s = TLSSection{MinVersion: gateway.DefaultTLSMinVersion} }

func (s *TLSSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	if (s.Cert == "") != (s.Key == "") {
		errs.add("tls", "cert and key go together: set both, or neither for a self-signed certificate")
	}
	if s.Cert != "" && s.Key != "" {
		if key, err := checkTLSPair(s.Cert, s.Key); err != nil {
			errs.add(key, "%v", err)
		}
	}
	if s.MinVersion != "1.2" && s.MinVersion != "1.3" {
		errs.add("tls.min_version", "%q: want \"1.2\" or \"1.3\" (older versions are not offered)", s.MinVersion)
	}
	return errs
}

// tlsConfig is STARTTLS's configuration: the files of this section, or a
// self-signed certificate for hostname kept in dataDir/tls. Its errors
// name the files already.
func (s TLSSection) tlsConfig(dataDir, hostname string) (*tls.Config, error) {
	return gateway.TLSConfig(s.Cert, s.Key, dataDir, hostname, s.MinVersion)
}

// maxPEMBytes bounds a certificate chain or key file: they are read whole.
const maxPEMBytes = 1 << 20

// readPEMFile reads a PEM file of at most maxPEMBytes and checks that it
// holds a block of one of the wanted types.
func readPEMFile(path, what string, types ...string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPEMBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxPEMBytes {
		return nil, fmt.Errorf("%s: more than %d bytes, not a PEM %s", path, maxPEMBytes, what)
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("%s: no PEM %s in the file (want a block %s)", path, what, strings.Join(types, " or "))
		}
		for _, t := range types {
			if b.Type == t {
				return data, nil
			}
		}
	}
}

// checkTLSPair reads the STARTTLS certificate and key as serve will, and
// returns the key to blame with the problem.
func checkTLSPair(certFile, keyFile string) (string, error) {
	certPEM, err := readPEMFile(certFile, "certificate", "CERTIFICATE")
	if err != nil {
		return "tls.cert", err
	}
	keyPEM, err := readPEMFile(keyFile, "private key", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")
	if err != nil {
		return "tls.key", err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return "tls.key", fmt.Errorf("%s does not match the certificate in %s", keyFile, certFile)
		}
		return "tls", fmt.Errorf("%s and %s: %w", certFile, keyFile, err)
	}
	if leaf := pair.Leaf; leaf != nil && time.Now().After(leaf.NotAfter) {
		return "tls.cert", fmt.Errorf("%s expired on %s", certFile, leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	return "", nil
}
