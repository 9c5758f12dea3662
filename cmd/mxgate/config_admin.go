package main

import (
	"strings"

	"github.com/mxgate/mxgate/internal/safefile"
)

// AdminSection protects the HTTP API's changing operations (README,
// "Administration").
type AdminSection struct {
	TokenFile string `yaml:"token_file"`

	token string // read from TokenFile by validate; "" means loopback only
}

func (s *AdminSection) setDefaults() {}

// validate also reads the token.
func (s *AdminSection) validate(failedKeys) ConfigErrors {
	var errs ConfigErrors
	if s.TokenFile != "" {
		b, err := safefile.ReadPrivate(s.TokenFile, "admin token", 4096)
		tok := strings.TrimSpace(string(b))
		if err != nil {
			errs.add("admin.token_file", "%v", err)
		} else if len(tok) < 16 {
			errs.add("admin.token_file", "%s: the token is %d characters; use at least 16", s.TokenFile, len(tok))
		}
		s.token = tok
	}
	return errs
}
