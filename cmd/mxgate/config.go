package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"sort"

	"gopkg.in/yaml.v3"
)

// Config is the node's YAML configuration file. The keys and their meaning
// are documented in the README (Configuration); unknown keys are an error.
// Each section's defaults, checks and conversion to its package's
// configuration are in its own file (config_*.go); decode.go reads the file.
type Config struct {
	Node        NodeSection       `yaml:"node"`
	Listen      ListenSection     `yaml:"listen"`
	MailSection `yaml:",inline"`  // hostname, domains, backends, mynetworks, transports
	TLS         TLSSection        `yaml:"tls"`
	Limits      LimitsSection     `yaml:"limits"`
	Queue       QueueSection      `yaml:"queue"`
	ClamAV      ClamAVSection     `yaml:"clamav"`
	Greylist    GreylistSection   `yaml:"greylist"`
	Spam        SpamSection       `yaml:"spam"`
	DNSBL       DNSBLSection      `yaml:"dnsbl"`
	Bayes       BayesSection      `yaml:"bayes"`
	Redis       RedisSection      `yaml:"redis"`
	Rspamd      RspamdSection     `yaml:"rspamd"`
	DNS         DNSSection        `yaml:"dns"`
	Outbound    OutboundSection   `yaml:"outbound"`
	Quarantine  QuarantineSection `yaml:"quarantine"`
	Cluster     ClusterSection    `yaml:"cluster"`
	Admin       AdminSection      `yaml:"admin"`
	Log         LogSection        `yaml:"log"`

	// clustered: the file has a cluster section, so the node runs Raft
	// and gossip and keeps greylist state in the replicated store.
	clustered bool
	// connLimitExempt is limits.connection_limit_exempt, or mynetworks
	// when it is not set.
	connLimitExempt []netip.Prefix
}

// section is one part of the file: its defaults, and the problems of its
// keys (validate may also parse values into the section's unexported
// fields). A section's problems name its keys only.
type section interface {
	setDefaults()
	validate(failed failedKeys) ConfigErrors
}

// sections lists every section of the file.
func (c *Config) sections() []section {
	return []section{&c.Node, &c.Listen, &c.MailSection, &c.TLS, &c.Limits, &c.Queue, &c.ClamAV,
		&c.Greylist, &c.Spam, &c.DNSBL, &c.Bayes, &c.Redis, &c.Rspamd, &c.DNS, &c.Outbound, &c.Quarantine, &c.Cluster, &c.Admin, &c.Log}
}

func defaultConfig() *Config {
	c := &Config{}
	for _, s := range c.sections() {
		s.setDefaults()
	}
	return c
}

// maxConfigBytes bounds the config file: it is read whole.
const maxConfigBytes = 4 << 20

// LoadConfig reads, decodes strictly and validates the file. The error,
// when not nil, is a ConfigErrors naming every problem found.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, ConfigErrors{{File: path, Why: err.Error()}}
	}
	if len(data) > maxConfigBytes {
		return nil, ConfigErrors{{File: path, Why: fmt.Sprintf("file is %d bytes, more than the %d allowed", len(data), maxConfigBytes)}}
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes and validates config file contents; path names the
// file in errors.
func ParseConfig(path string, data []byte) (*Config, error) {
	cfg := defaultConfig()
	var errs ConfigErrors
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, ConfigErrors{{File: path, Why: "not valid YAML: " + err.Error()}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		errs = append(errs, ConfigError{File: path, Line: extra.Line, Why: "more than one YAML document; put the whole configuration in one"})
	}
	d := decoder{file: path, lines: map[string]int{}}
	if len(doc.Content) == 1 {
		d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
		errs = append(errs, d.errs...)
	}
	_, cfg.clustered = d.lines["cluster"]
	// Validate even after decoding errors, so that one run names every
	// problem; a key that failed to decode kept its default and is not
	// reported twice.
	failed := failedKeys{}
	for _, e := range errs {
		failed[e.Key] = true
	}
	for _, e := range cfg.validate(failed) {
		if failed[e.Key] {
			continue
		}
		e.File, e.Line = path, d.lineOf(e.Key)
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// validate checks every section, then the rules between sections; the
// problems come sorted by key.
func (c *Config) validate(failed failedKeys) ConfigErrors {
	var errs ConfigErrors
	for _, s := range c.sections() {
		if s == section(&c.Cluster) && !c.clustered {
			continue // no cluster section: the node runs alone
		}
		errs = append(errs, s.validate(failed)...)
	}
	// The backends send all their outgoing mail from a few addresses:
	// mynetworks is exempt from per_ip_connections unless the file says
	// otherwise (README, "Per-client limits").
	c.connLimitExempt = c.Limits.exempt
	if c.Limits.ConnLimitExempt == nil {
		c.connLimitExempt = c.myNetworks
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Key < errs[j].Key })
	return errs
}
