package main

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mxgate/mxgate/cluster"
	"github.com/mxgate/mxgate/filter/clamav"
	"github.com/mxgate/mxgate/internal/safefile"
)

// Config is the node's YAML configuration file. The keys and their meaning
// are documented in the README (Configuration); unknown keys are an error.
type Config struct {
	Node       NodeConfig        `yaml:"node"`
	Listen     ListenConfig      `yaml:"listen"`
	Hostname   string            `yaml:"hostname"`
	Domains    []string          `yaml:"domains"`
	Backends   []string          `yaml:"backends"`
	MyNetworks []string          `yaml:"mynetworks"`
	TLS        TLSConfig         `yaml:"tls"`
	Limits     LimitsConfig      `yaml:"limits"`
	Queue      QueueConfig       `yaml:"queue"`
	ClamAV     ClamAVConfig      `yaml:"clamav"`
	Greylist   GreylistConfig    `yaml:"greylist"`
	DNS        DNSConfig         `yaml:"dns"`
	Transports map[string]string `yaml:"transports"`
	Outbound   OutboundConfig    `yaml:"outbound"`
	Cluster    ClusterConfig     `yaml:"cluster"`
	Admin      AdminConfig       `yaml:"admin"`
	Log        LogConfig         `yaml:"log"`

	// clustered: the file has a cluster section, so the node runs Raft
	// and gossip and keeps greylist state in the replicated store.
	clustered bool
	// Parsed forms, filled by validate.
	myNetworks      []netip.Prefix
	greyAllowNets   []netip.Prefix
	connLimitExempt []netip.Prefix
}

// NodeConfig names this node and where it keeps its state.
type NodeConfig struct {
	Name    string `yaml:"name"`
	DataDir string `yaml:"data_dir"`
}

// ListenConfig holds the listener addresses; an empty address disables the
// listener (except http, which is always on).
type ListenConfig struct {
	Inbound    string `yaml:"inbound"`
	Relay      string `yaml:"relay"`
	Submission string `yaml:"submission"`
	HTTP       string `yaml:"http"`
}

// TLSConfig is the certificate for STARTTLS on every SMTP listener.
type TLSConfig struct {
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	MinVersion string `yaml:"min_version"`
}

// LimitsConfig bounds what one client and all clients together may use.
type LimitsConfig struct {
	MaxMessageBytes   int64    `yaml:"max_message_bytes"`
	MaxRecipients     int      `yaml:"max_recipients"`
	MaxConnections    int      `yaml:"max_connections"`
	PerIPConnections  int      `yaml:"per_ip_connections"`
	CommandTimeout    Duration `yaml:"command_timeout"`
	DataTimeout       Duration `yaml:"data_timeout"`
	ShutdownGraceTime Duration `yaml:"shutdown_grace"`
	HardErrorLimit    int      `yaml:"hard_error_limit"`
	JunkCommandLimit  int      `yaml:"junk_command_limit"`
	// ConnLimitExempt: nil (not set) means mynetworks; an empty list
	// exempts nobody.
	ConnLimitExempt []string `yaml:"connection_limit_exempt"`
	// HTTPConnections caps the HTTP listener's open connections.
	HTTPConnections int `yaml:"http_connections"`
}

// QueueConfig is the delivery queue's retry policy.
type QueueConfig struct {
	Lifetime Duration `yaml:"lifetime"`
	RetryMin Duration `yaml:"retry_min"`
	RetryMax Duration `yaml:"retry_max"`
	Workers  int      `yaml:"workers"`
}

// ClamAVConfig is the virus scanner every message goes through.
type ClamAVConfig struct {
	Enabled        bool     `yaml:"enabled"`
	Address        string   `yaml:"address"`
	Timeout        Duration `yaml:"timeout"`
	OnError        string   `yaml:"on_error"`
	MaxConnections int      `yaml:"max_connections"`
}

// GreylistConfig is the triplet policy applied at RCPT on the inbound
// listener.
type GreylistConfig struct {
	Enabled         bool     `yaml:"enabled"`
	Delay           Duration `yaml:"delay"`
	RetryWindow     Duration `yaml:"retry_window"`
	Lifetime        Duration `yaml:"lifetime"`
	NetmaskV4       int      `yaml:"netmask_v4"`
	NetmaskV6       int      `yaml:"netmask_v6"`
	AutoAllowAfter  int      `yaml:"auto_allow_after"`
	AllowNetworks   []string `yaml:"allow_networks"`
	AllowSenders    []string `yaml:"allow_senders"`
	AllowRecipients []string `yaml:"allow_recipients"`
}

// DNSConfig selects the resolver used for MX lookups.
type DNSConfig struct {
	Resolver string `yaml:"resolver"`
}

// OutboundConfig is how remote MX hosts are reached.
type OutboundConfig struct {
	Port int `yaml:"port"`
}

// ClusterConfig makes the node a member of a cluster (see package
// cluster). Without a cluster section the node runs alone and keeps its
// greylist state in data_dir/greylist.json.
type ClusterConfig struct {
	Gossip          string           `yaml:"gossip"`
	Raft            string           `yaml:"raft"`
	Advertise       string           `yaml:"advertise"`
	Join            []string         `yaml:"join"`
	BootstrapExpect int              `yaml:"bootstrap_expect"`
	SecretFile      string           `yaml:"secret_file"`
	RemoveDeadAfter Duration         `yaml:"remove_dead_after"`
	TLS             ClusterTLSConfig `yaml:"tls"`

	secretKey []byte
	tls       *cluster.TLS
}

// ClusterTLSConfig names the PEM files of the node-to-node TLS (mxgate
// cluster tls-init makes them).
type ClusterTLSConfig struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// AdminConfig protects the HTTP API's changing operations.
type AdminConfig struct {
	TokenFile string `yaml:"token_file"`

	token string
}

// LogConfig sets the mail log's verbosity.
type LogConfig struct {
	Level string `yaml:"level"`
}

// Duration is a time.Duration that also accepts days ("36d") and weeks
// ("2w"), the units mail operators write lifetimes in.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML parses "90s", "5m", "48h", "7d", "1d12h", "2w".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a duration such as 30s, 5m, 48h or 7d")
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// maxDuration is the longest duration that fits time.Duration (int64
// nanoseconds), about 106751 days.
const maxDuration = time.Duration(math.MaxInt64)

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if len(s) > 64 {
		return 0, fmt.Errorf("invalid duration %.64q...: too long", s)
	}
	outOfRange := fmt.Errorf("duration %q is out of range (at most %s)", s, formatDuration(maxDuration.Truncate(24*time.Hour)))
	var total time.Duration
	rest := s
	// Leading day/week components; the remainder goes to time.ParseDuration.
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) || (rest[i] != 'd' && rest[i] != 'w') {
			break
		}
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil {
			return 0, outOfRange
		}
		unit := 24 * time.Hour
		if rest[i] == 'w' {
			unit *= 7
		}
		if n > int64(maxDuration/unit) {
			return 0, outOfRange
		}
		v := time.Duration(n) * unit
		if total > maxDuration-v {
			return 0, outOfRange
		}
		total += v
		rest = rest[i+1:]
	}
	if strings.HasPrefix(rest, "-") || strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	if rest != "" {
		v, err := time.ParseDuration(rest)
		if err != nil {
			if syntaxOK(rest) {
				// time.ParseDuration's only other failure: the value
				// does not fit in int64 nanoseconds.
				return 0, outOfRange
			}
			return 0, fmt.Errorf("invalid duration %q (use units s, m, h, d, w: 30s, 5m, 48h, 7d)", s)
		}
		if v < 0 {
			return 0, fmt.Errorf("negative duration %q", s)
		}
		if total > maxDuration-v {
			return 0, outOfRange
		}
		total += v
	}
	return total, nil
}

// syntaxOK reports whether s is a sequence of decimal numbers, each with a
// unit time.ParseDuration knows: then a parse error means overflow.
func syntaxOK(s string) bool {
	units := []string{"ns", "us", "µs", "μs", "ms", "s", "m", "h"}
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		if i == 0 {
			return false
		}
		s = s[i:]
		found := false
		for _, u := range units {
			if strings.HasPrefix(s, u) {
				s, found = s[len(u):], true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// formatDuration writes a duration the way the configuration does: 30d,
// 1h, 90s, 1d12h.
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if days := d / (24 * time.Hour); days > 0 {
		fmt.Fprintf(&b, "%dd", days)
		d -= days * 24 * time.Hour
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.unit
		}
	}
	if d > 0 {
		b.WriteString(d.String())
	}
	return b.String()
}

// ConfigError is one problem in a config file, located by key and line.
type ConfigError struct {
	File string
	Line int
	Key  string
	Why  string
}

func (e ConfigError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", loc, e.Why)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Why)
}

// ConfigErrors is every problem found in a config file.
type ConfigErrors []ConfigError

func (es ConfigErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
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
	failed := map[string]bool{}
	for _, e := range errs {
		failed[e.Key] = true
	}
	for _, e := range cfg.validate(path, failed) {
		if failed[e.Key] {
			continue
		}
		e.Line = d.lineOf(e.Key)
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// decoder walks the YAML tree alongside the Config struct so that every
// problem is reported with its full key path (limits.max_recipients) and
// line, and every problem is reported, not just the first.
type decoder struct {
	file  string
	errs  ConfigErrors
	lines map[string]int // key path -> line of its value
}

// lineOf finds the line of a key path such as "mynetworks[1]" or
// "tls.cert", falling back to its parent keys.
func (d *decoder) lineOf(key string) int {
	for key != "" {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func (d *decoder) fail(n *yaml.Node, key, why string) {
	d.errs = append(d.errs, ConfigError{File: d.file, Line: n.Line, Key: key, Why: why})
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	isStruct := v.Kind() == reflect.Struct && !reflect.PointerTo(v.Type()).Implements(unmarshalerType)
	if !isStruct {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return // "key:" with no value keeps the default
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(n, path, cleanYAMLError(err))
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of keys")
		return
	}
	fields := map[string]int{}
	var known []string
	for i := 0; i < v.NumField(); i++ {
		tag := v.Type().Field(i).Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = i
		known = append(known, tag)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		full := key
		if path != "" {
			full = path + "." + key
		}
		if seen[key] {
			d.fail(k, full, "key given twice")
			continue
		}
		seen[key] = true
		d.lines[full] = val.Line
		if val.Kind == yaml.SequenceNode {
			for j, item := range val.Content {
				d.lines[fmt.Sprintf("%s[%d]", full, j)] = item.Line
			}
		}
		idx, ok := fields[key]
		if !ok {
			sort.Strings(known)
			d.fail(k, full, "unknown key (known keys here: "+strings.Join(known, ", ")+")")
			continue
		}
		d.decode(val, v.Field(idx), full)
	}
}

// cleanYAMLError strips yaml.v3's Go type names, which mean nothing to an
// operator, keeping the value that did not fit.
func cleanYAMLError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "line ") {
			msg = msg[i+2:]
		}
		msg = strings.Replace(msg, "cannot unmarshal !!str", "cannot use the string", 1)
		msg = strings.Replace(msg, "cannot unmarshal !!seq", "cannot use a list", 1)
		msg = strings.Replace(msg, "cannot unmarshal !!map", "cannot use a mapping", 1)
		msg = strings.Replace(msg, "cannot unmarshal !!int", "cannot use the number", 1)
		for _, t := range []string{"into int64", "into int", "into string", "into []string", "into map[string]string", "into float64", "into bool"} {
			if strings.HasSuffix(msg, t) {
				msg = strings.TrimSuffix(msg, t) + "here: want " + strings.NewReplacer("into int64", "a whole number", "into int", "a whole number", "into string", "a string", "into []string", "a list of strings", "into map[string]string", "a mapping of strings", "into float64", "a number", "into bool", "true or false").Replace(t)
			}
		}
		return msg
	}
	return err.Error()
}

func defaultConfig() *Config {
	return &Config{
		Node:   NodeConfig{DataDir: "/var/lib/mxgate"},
		Listen: ListenConfig{Inbound: ":25", Relay: ":26", HTTP: ":8025"},
		TLS:    TLSConfig{MinVersion: "1.2"},
		Limits: LimitsConfig{
			MaxMessageBytes:   36700160,
			MaxRecipients:     100,
			MaxConnections:    1000,
			PerIPConnections:  20,
			CommandTimeout:    Duration(5 * time.Minute),  // RFC 5321 §4.5.3.2.7
			DataTimeout:       Duration(10 * time.Minute), // RFC 5321 §4.5.3.2.6
			ShutdownGraceTime: Duration(30 * time.Second),
			HardErrorLimit:    20,  // Postfix smtpd_hard_error_limit
			JunkCommandLimit:  100, // Postfix smtpd_junk_command_limit
			HTTPConnections:   256,
		},
		Queue: QueueConfig{
			Lifetime: Duration(5 * 24 * time.Hour),
			RetryMin: Duration(5 * time.Minute),
			RetryMax: Duration(time.Hour),
			Workers:  32,
		},
		ClamAV: ClamAVConfig{
			Enabled:        true,
			Address:        "tcp:127.0.0.1:3310",
			Timeout:        Duration(30 * time.Second),
			OnError:        "tempfail",
			MaxConnections: 8,
		},
		Greylist: GreylistConfig{
			Enabled:        true,
			Delay:          Duration(3 * time.Minute),
			RetryWindow:    Duration(48 * time.Hour),
			Lifetime:       Duration(36 * 24 * time.Hour),
			NetmaskV4:      24,
			NetmaskV6:      64,
			AutoAllowAfter: 5,
		},
		Outbound: OutboundConfig{Port: 25},
		Cluster: ClusterConfig{
			Gossip:          ":7946",
			Raft:            ":7947",
			RemoveDeadAfter: Duration(24 * time.Hour),
		},
		Log: LogConfig{Level: "info"},
	}
}

// validate checks values and their relations. failed names the keys that
// did not decode: they hold defaults, so checks that compare them with
// other keys would report problems the operator did not write.
func (c *Config) validate(file string, failed map[string]bool) ConfigErrors {
	var errs ConfigErrors
	decoded := func(keys ...string) bool {
		for _, k := range keys {
			if failed[k] {
				return false
			}
		}
		return true
	}
	bad := func(key, format string, args ...any) {
		errs = append(errs, ConfigError{File: file, Key: key, Why: fmt.Sprintf(format, args...)})
	}
	if c.Node.Name == "" {
		bad("node.name", "required: this node's name in the cluster and the logs")
	}
	if c.Node.DataDir == "" {
		bad("node.data_dir", "required: where the spool and state live")
	} else if err := checkDataDir(c.Node.DataDir); err != nil {
		bad("node.data_dir", "%v", err)
	}
	if c.Hostname == "" {
		bad("hostname", "required: the name used in the banner, EHLO and Received headers")
	} else if !validDomain(c.Hostname) {
		bad("hostname", "%q is not a valid host name", c.Hostname)
	}
	for name, addr := range map[string]string{"listen.inbound": c.Listen.Inbound, "listen.relay": c.Listen.Relay, "listen.submission": c.Listen.Submission} {
		if addr != "" {
			if err := checkListenAddr(addr); err != nil {
				bad(name, "%v", err)
			}
		}
	}
	if c.Listen.Submission != "" {
		bad("listen.submission", "the submission listener (SMTP AUTH) is not available in this version; leave it empty")
	}
	if c.Listen.HTTP == "" {
		bad("listen.http", "required: /metrics, /healthz and /readyz are served here")
	} else if err := checkListenAddr(c.Listen.HTTP); err != nil {
		bad("listen.http", "%v", err)
	}
	if c.Listen.Inbound == "" && c.Listen.Relay == "" {
		bad("listen", "no SMTP listener: set listen.inbound or listen.relay")
	}
	seen := map[string]bool{}
	for i, d := range c.Domains {
		key := fmt.Sprintf("domains[%d]", i)
		ld := strings.ToLower(strings.TrimSuffix(d, "."))
		if !validDomain(ld) {
			bad(key, "%q is not a valid domain name", d)
		} else if seen[ld] {
			bad(key, "%q is listed twice", d)
		}
		seen[ld] = true
		c.Domains[i] = ld
	}
	if len(c.Domains) > 0 && len(c.Backends) == 0 {
		bad("backends", "required when domains are set: the mailbox servers that receive the domains' mail")
	}
	for i, b := range c.Backends {
		if err := checkHostPort(b); err != nil {
			bad(fmt.Sprintf("backends[%d]", i), "%v", err)
		}
	}
	for i, n := range c.MyNetworks {
		p, err := parsePrefix(n)
		if err != nil {
			bad(fmt.Sprintf("mynetworks[%d]", i), "%v", err)
			continue
		}
		c.myNetworks = append(c.myNetworks, p)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		bad("tls", "cert and key go together: set both, or neither for a self-signed certificate")
	}
	if c.TLS.Cert != "" && c.TLS.Key != "" {
		key, err := checkTLSPair(c.TLS.Cert, c.TLS.Key)
		if err != nil {
			bad(key, "%v", err)
		}
	}
	if c.TLS.MinVersion != "1.2" && c.TLS.MinVersion != "1.3" {
		bad("tls.min_version", "%q: want \"1.2\" or \"1.3\" (older versions are not offered)", c.TLS.MinVersion)
	}
	if c.Limits.MaxMessageBytes < 1024 {
		bad("limits.max_message_bytes", "%d is too small (at least 1024)", c.Limits.MaxMessageBytes)
	}
	if c.Limits.MaxRecipients < 1 {
		bad("limits.max_recipients", "must be at least 1 (RFC 5321 §4.5.3.1.8 asks for 100)")
	}
	if c.Limits.MaxConnections < 1 {
		bad("limits.max_connections", "must be at least 1")
	}
	if c.Limits.PerIPConnections < 1 {
		bad("limits.per_ip_connections", "must be at least 1")
	}
	if c.Limits.PerIPConnections > c.Limits.MaxConnections && decoded("limits.per_ip_connections", "limits.max_connections") {
		bad("limits.per_ip_connections", "%d is more than limits.max_connections (%d)", c.Limits.PerIPConnections, c.Limits.MaxConnections)
	}
	if c.Limits.HardErrorLimit < 1 || c.Limits.HardErrorLimit > 1000000 {
		bad("limits.hard_error_limit", "%d: want 1 to 1000000 (4xx and 5xx replies before the session is closed)", c.Limits.HardErrorLimit)
	}
	if c.Limits.JunkCommandLimit < 1 || c.Limits.JunkCommandLimit > 1000000 {
		bad("limits.junk_command_limit", "%d: want 1 to 1000000 (NOOP, RSET, VRFY, HELP and ETRN commands before the session is closed)", c.Limits.JunkCommandLimit)
	}
	if c.Limits.HTTPConnections < 4 || c.Limits.HTTPConnections > 10000 {
		bad("limits.http_connections", "%d: want 4 to 10000 (open connections to listen.http; each is a file descriptor)", c.Limits.HTTPConnections)
	}
	if c.Limits.ConnLimitExempt == nil {
		c.connLimitExempt = c.myNetworks
	} else {
		c.connLimitExempt = []netip.Prefix{}
		for i, n := range c.Limits.ConnLimitExempt {
			p, err := parsePrefix(n)
			if err != nil {
				bad(fmt.Sprintf("limits.connection_limit_exempt[%d]", i), "%v", err)
				continue
			}
			c.connLimitExempt = append(c.connLimitExempt, p)
		}
	}
	// Every duration key has a range: a typo of a unit (5d for 5m) or a
	// value past what the code expects is caught here, not at 3 a.m.
	for _, r := range durationRanges(c) {
		if v := r.v.D(); v < r.min || v > r.max {
			bad(r.key, "%s: want %s to %s%s", formatDuration(v), formatDuration(r.min), formatDuration(r.max), r.why)
		}
	}
	if c.Queue.RetryMax.D() < c.Queue.RetryMin.D() && decoded("queue.retry_min", "queue.retry_max") {
		bad("queue.retry_max", "%v is less than queue.retry_min (%v)", c.Queue.RetryMax.D(), c.Queue.RetryMin.D())
	}
	if c.Queue.Lifetime.D() < c.Queue.RetryMin.D() && decoded("queue.retry_min", "queue.lifetime") {
		bad("queue.lifetime", "%v is less than queue.retry_min (%v)", c.Queue.Lifetime.D(), c.Queue.RetryMin.D())
	}
	if c.Queue.Workers < 1 || c.Queue.Workers > 1000 {
		bad("queue.workers", "%d: want 1 to 1000", c.Queue.Workers)
	}
	if c.ClamAV.Enabled {
		if _, _, err := clamav.ParseAddress(c.ClamAV.Address); err != nil {
			bad("clamav.address", "%v", err)
		}
	}
	if c.ClamAV.OnError != "tempfail" && c.ClamAV.OnError != "accept" {
		bad("clamav.on_error", "%q: want tempfail (answer 451 when a message cannot be scanned) or accept (deliver it with a header saying it was not scanned)", c.ClamAV.OnError)
	}
	if c.ClamAV.MaxConnections < 1 || c.ClamAV.MaxConnections > 1000 {
		bad("clamav.max_connections", "%d: want 1 to 1000 (at most clamd's MaxThreads)", c.ClamAV.MaxConnections)
	}
	if c.Greylist.RetryWindow.D() <= c.Greylist.Delay.D() && decoded("greylist.delay", "greylist.retry_window") {
		bad("greylist.retry_window", "%v must be longer than greylist.delay (%v)", c.Greylist.RetryWindow.D(), c.Greylist.Delay.D())
	}
	if c.Greylist.NetmaskV4 < 8 || c.Greylist.NetmaskV4 > 32 {
		bad("greylist.netmask_v4", "%d: want 8 to 32", c.Greylist.NetmaskV4)
	}
	if c.Greylist.NetmaskV6 < 16 || c.Greylist.NetmaskV6 > 128 {
		bad("greylist.netmask_v6", "%d: want 16 to 128", c.Greylist.NetmaskV6)
	}
	if c.Greylist.AutoAllowAfter < 0 {
		bad("greylist.auto_allow_after", "must be 0 (off) or more")
	}
	for i, n := range c.Greylist.AllowNetworks {
		p, err := parsePrefix(n)
		if err != nil {
			bad(fmt.Sprintf("greylist.allow_networks[%d]", i), "%v", err)
			continue
		}
		c.greyAllowNets = append(c.greyAllowNets, p)
	}
	for key, list := range map[string][]string{"greylist.allow_senders": c.Greylist.AllowSenders, "greylist.allow_recipients": c.Greylist.AllowRecipients} {
		for i, a := range list {
			dom := a
			if at := strings.LastIndexByte(a, '@'); at >= 0 {
				dom = a[at+1:]
				if at == 0 {
					bad(fmt.Sprintf("%s[%d]", key, i), "%q: want user@domain or domain", a)
					continue
				}
			}
			if !validDomain(dom) {
				bad(fmt.Sprintf("%s[%d]", key, i), "%q: want user@domain or domain", a)
			}
		}
	}
	if c.DNS.Resolver != "" {
		if err := checkHostPort(c.DNS.Resolver); err != nil {
			bad("dns.resolver", "%v", err)
		}
	}
	for dom, hop := range c.Transports {
		key := "transports." + dom
		if !validDomain(strings.ToLower(dom)) {
			bad(key, "%q is not a valid domain name", dom)
		}
		if err := checkNextHop(hop); err != nil {
			bad(key, "%v", err)
		}
	}
	if c.Outbound.Port < 1 || c.Outbound.Port > 65535 {
		bad("outbound.port", "%d is not a TCP port", c.Outbound.Port)
	}
	if c.clustered {
		errs = append(errs, c.Cluster.validate(file, decoded)...)
	}
	if c.Admin.TokenFile != "" {
		b, err := safefile.ReadPrivate(c.Admin.TokenFile, "admin token", 4096)
		tok := strings.TrimSpace(string(b))
		if err != nil {
			bad("admin.token_file", "%v", err)
		} else if len(tok) < 16 {
			bad("admin.token_file", "%s: the token is %d characters; use at least 16", c.Admin.TokenFile, len(tok))
		}
		c.Admin.token = tok
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Key < errs[j].Key })
	return errs
}

// durationRange is the accepted range of one duration key.
type durationRange struct {
	key      string
	v        Duration
	min, max time.Duration
	why      string
}

const oneDay = 24 * time.Hour

// durationRanges lists every duration key of the file with its bounds
// (the README's table of durations says the same).
func durationRanges(c *Config) []durationRange {
	r := []durationRange{
		{"limits.command_timeout", c.Limits.CommandTimeout, time.Second, time.Hour, " (RFC 5321 asks for 5m)"},
		{"limits.data_timeout", c.Limits.DataTimeout, time.Second, time.Hour, " (RFC 5321 asks for 10m per read)"},
		{"limits.shutdown_grace", c.Limits.ShutdownGraceTime, 0, time.Hour, ""},
		{"queue.retry_min", c.Queue.RetryMin, time.Second, oneDay, ""},
		{"queue.retry_max", c.Queue.RetryMax, time.Second, oneDay, ""},
		{"queue.lifetime", c.Queue.Lifetime, time.Minute, 30 * oneDay, " (RFC 5321 asks for 4d to 5d)"},
		{"clamav.timeout", c.ClamAV.Timeout, time.Second, time.Hour, ""},
		{"greylist.delay", c.Greylist.Delay, time.Second, oneDay, ""},
		{"greylist.retry_window", c.Greylist.RetryWindow, time.Second, 30 * oneDay, ""},
		{"greylist.lifetime", c.Greylist.Lifetime, time.Hour, 365 * oneDay, ""},
	}
	if c.clustered {
		r = append(r, durationRange{"cluster.remove_dead_after", c.Cluster.RemoveDeadAfter, time.Second, 365 * oneDay,
			" (how long a voter may be dead before the leader removes it)"})
	}
	return r
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

// checkDataDir checks that the data directory is a directory this process
// may write in, or can be created: serve makes it if it is missing.
func checkDataDir(dir string) error {
	p := filepath.Clean(dir)
	for {
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			// Walk up to what exists: a file there is the problem.
			parent := filepath.Dir(p)
			if parent == p {
				return fmt.Errorf("%s: cannot be created", dir)
			}
			p = parent
			continue
		}
		if err != nil {
			return err
		}
		if !st.IsDir() {
			if p == filepath.Clean(dir) {
				return fmt.Errorf("%s is a file, not a directory", dir)
			}
			return fmt.Errorf("%s cannot be created: %s is a file, not a directory", dir, p)
		}
		const wOK, xOK = 2, 1 // access(2)
		if err := syscall.Access(p, wOK|xOK); err != nil {
			if p == filepath.Clean(dir) {
				return fmt.Errorf("%s is not writable: %w", dir, err)
			}
			return fmt.Errorf("%s cannot be created in %s: %w", dir, p, err)
		}
		return nil
	}
}

func checkListenAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. \":25\" or \"192.0.2.1:25\")", addr)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !validDomain(host) {
			return fmt.Errorf("%q: %q is not an IP address or host name", addr, host)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: %q is not a port number", addr, port)
	}
	return nil
}

func checkHostPort(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	return checkListenAddr(addr)
}

// checkNextHop accepts "[10.1.1.1]:25", "[mail.example.org]", "host:port"
// and "host": brackets mean "this host, no MX lookup" as in Postfix.
func checkNextHop(hop string) error {
	h := hop
	if strings.HasPrefix(h, "[") {
		end := strings.Index(h, "]")
		if end < 0 {
			return fmt.Errorf("%q: missing ]", hop)
		}
		host, rest := h[1:end], h[end+1:]
		if _, err := netip.ParseAddr(host); err != nil && !validDomain(host) {
			return fmt.Errorf("%q: %q is not an IP address or host name", hop, host)
		}
		if rest == "" {
			return nil
		}
		if !strings.HasPrefix(rest, ":") {
			return fmt.Errorf("%q: want [host] or [host]:port", hop)
		}
		if n, err := strconv.Atoi(rest[1:]); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: %q is not a port number", hop, rest[1:])
		}
		return nil
	}
	if strings.Contains(h, ":") {
		return checkHostPort(h)
	}
	if !validDomain(h) {
		return fmt.Errorf("%q is not a host name", hop)
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a network in CIDR form (e.g. 10.0.0.0/24)", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR network", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// validDomain checks RFC 1035 §2.3.1 host name syntax (letters, digits,
// hyphens; labels up to 63 octets, names up to 253), allowing
// underscores for operators' internal names.
func validDomain(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}

func (c *ClusterConfig) validate(file string, decoded func(...string) bool) ConfigErrors {
	var errs ConfigErrors
	bad := func(key, format string, args ...any) {
		errs = append(errs, ConfigError{File: file, Key: key, Why: fmt.Sprintf(format, args...)})
	}
	for key, addr := range map[string]string{"cluster.gossip": c.Gossip, "cluster.raft": c.Raft} {
		if err := checkListenAddr(addr); err != nil {
			bad(key, "%v", err)
		} else if _, port, _ := net.SplitHostPort(addr); port == "0" {
			bad(key, "%q: the port must be fixed, other nodes are configured with it", addr)
		}
	}
	if decoded("cluster.gossip", "cluster.raft") && c.Gossip == c.Raft {
		bad("cluster.raft", "%q is also cluster.gossip; they need different ports", c.Raft)
	}
	if c.Advertise != "" {
		if _, err := netip.ParseAddr(c.Advertise); err != nil {
			bad("cluster.advertise", "%q is not an IP address", c.Advertise)
		}
	}
	for i, j := range c.Join {
		if err := checkHostPort(j); err != nil {
			bad(fmt.Sprintf("cluster.join[%d]", i), "%v (a node's cluster.gossip address)", err)
		}
	}
	switch {
	case c.BootstrapExpect < 0:
		bad("cluster.bootstrap_expect", "%d: want the number of nodes that form the cluster", c.BootstrapExpect)
	case c.BootstrapExpect == 0 && len(c.Join) > 0 && decoded("cluster.join"):
		bad("cluster.bootstrap_expect", "required with cluster.join: the number of nodes that form the cluster at first (e.g. 3); without it every node would start a cluster of its own")
	case c.BootstrapExpect == 0:
		c.BootstrapExpect = 1
	}
	if c.BootstrapExpect == 1 && len(c.Join) > 0 && decoded("cluster.join") {
		bad("cluster.bootstrap_expect", "1 with cluster.join: this node would start a cluster of its own before hearing from the others; give the number of nodes of the cluster (e.g. 3), or drop join for a one-node cluster")
	}
	if c.BootstrapExpect > 1 && len(c.Join) == 0 && decoded("cluster.join") {
		bad("cluster.join", "required with bootstrap_expect %d: the gossip addresses of the other nodes", c.BootstrapExpect)
	}
	if c.SecretFile == "" {
		bad("cluster.secret_file", "required: the gossip encryption key (mxgate cluster tls-init writes one)")
	} else if key, err := cluster.LoadSecretKey(c.SecretFile); err != nil {
		bad("cluster.secret_file", "%v", err)
	} else {
		c.secretKey = key
	}
	files := cluster.TLSFiles{CA: c.TLS.CA, Cert: c.TLS.Cert, Key: c.TLS.Key}
	missing := false
	for key, v := range map[string]string{"cluster.tls.ca": files.CA, "cluster.tls.cert": files.Cert, "cluster.tls.key": files.Key} {
		if v == "" {
			missing = true
			bad(key, "required: Raft and write forwarding between nodes run over TLS with the cluster CA (mxgate cluster tls-init makes the files)")
		}
	}
	if !missing && decoded("cluster.tls.ca", "cluster.tls.cert", "cluster.tls.key") {
		t, err := cluster.LoadTLS(files)
		if err != nil {
			// LoadTLS names the key and file ("cluster.tls.cert PATH: why").
			key, why, ok := strings.Cut(err.Error(), " ")
			if !ok || !strings.HasPrefix(key, "cluster.tls.") {
				key, why = "cluster.tls", err.Error()
			}
			bad(key, "%s", why)
		} else {
			c.tls = t
		}
	}
	return errs
}
