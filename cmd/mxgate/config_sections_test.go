package main

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/cluster"
	"github.com/mxgate/mxgate/filter/clamav"
	"github.com/mxgate/mxgate/gateway"
	"github.com/mxgate/mxgate/greylist"
)

// TestDefaults: a file without the optional keys gets the defaults the
// README's Configuration section lists, now taken from the packages.
func TestDefaults(t *testing.T) {
	day := 24 * time.Hour
	want := &Config{
		Node:   NodeSection{DataDir: "/var/lib/mxgate"},
		Listen: ListenSection{Inbound: ":25", Relay: ":26", HTTP: ":8025"},
		TLS:    TLSSection{MinVersion: "1.2"},
		Limits: LimitsSection{MaxMessageBytes: 36700160, MaxRecipients: 100, MaxConnections: 1000, PerIPConnections: 20,
			CommandTimeout: Duration(5 * time.Minute), DataTimeout: Duration(10 * time.Minute), ShutdownGraceTime: Duration(30 * time.Second),
			HardErrorLimit: 20, JunkCommandLimit: 100, HTTPConnections: 256},
		Queue: QueueSection{Lifetime: Duration(5 * day), RetryMin: Duration(5 * time.Minute), RetryMax: Duration(time.Hour), Workers: 32},
		ClamAV: ClamAVSection{Enabled: true, Address: "tcp:127.0.0.1:3310", Timeout: Duration(30 * time.Second), OnError: "tempfail", MaxConnections: 8,
			CacheTTL: Duration(time.Hour)},
		Greylist: GreylistSection{Enabled: true, Mode: "rcpt", Delay: Duration(3 * time.Minute), RetryWindow: Duration(48 * time.Hour),
			Lifetime: Duration(36 * day), NetmaskV4: 24, NetmaskV6: 64, AutoAllowAfter: 5},
		Spam:     SpamSection{Enabled: true, Greylist: 4, Tag: 5, Quarantine: 8, Reject: 15, SenderAuth: true, DMARCReject: "reject", Heuristics: true},
		DNSBL:    DNSBLSection{SkipPrivate: true, Timeout: Duration(5 * time.Second)},
		Bayes:    BayesSection{Enabled: true, MinLearns: 200},
		Rspamd:   RspamdSection{Weight: 1, Timeout: Duration(10 * time.Second)},
		Outbound: OutboundSection{Port: 25},
		Quarantine: QuarantineSection{Enabled: true, Lifetime: Duration(7 * oneDay), RejectedLifetime: Duration(oneDay),
			MaxBytes: 10 << 30, OnFull: "tempfail"},
		Cluster: ClusterSection{Gossip: ":7946", Raft: ":7947", RemoveDeadAfter: Duration(day)},
		Log:     LogSection{Level: "info"},
	}
	if got := defaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("defaults\n%+v\nwant\n%+v", got, want)
	}
	if o := gateway.DefaultHTTPOptions(); o.MaxConns != want.Limits.HTTPConnections {
		t.Errorf("gateway.DefaultHTTPOptions().MaxConns = %d, want limits.http_connections' default %d", o.MaxConns, want.Limits.HTTPConnections)
	}
}

// TestSectionConversions: each section's values reach its package's
// configuration, and connection_limit_exempt defaults to mynetworks.
func TestSectionConversions(t *testing.T) {
	dir := clusterFiles(t)
	text := clusterConfig(dir, `  gossip: "10.0.0.1:7946"
  raft: "10.0.0.1:7947"
  advertise: "10.0.0.1"
  join: ["10.0.0.2:7946"]
  bootstrap_expect: 3
  remove_dead_after: 2d`) + `mynetworks: ["10.0.0.0/24"]
transports: {example.org: "[10.1.1.1]:25"}
listen: {inbound: ":2525", relay: "", http: "127.0.0.1:8025"}
limits: {max_message_bytes: 2048, max_recipients: 7, max_connections: 70, per_ip_connections: 6, command_timeout: 1m,
  data_timeout: 2m, hard_error_limit: 3, junk_command_limit: 4}
queue: {lifetime: 2d, retry_min: 1m, retry_max: 10m, workers: 3}
dns: {resolver: "127.0.0.1:53"}
outbound: {port: 2525}
clamav: {address: "unix:/run/clamd.ctl", timeout: 5s, on_error: accept, max_connections: 2}
greylist: {delay: 1m, retry_window: 1h, lifetime: 2d, netmask_v4: 32, netmask_v6: 128, auto_allow_after: 0,
  allow_networks: ["192.0.2.0/24"], allow_senders: [partner.example], allow_recipients: ["postmaster@example.com"]}
`
	cfg, err := ParseConfig("c.yaml", []byte(text))
	if err != nil {
		t.Fatalf("refused:\n%v", err)
	}
	logger := discardLogger()

	gc := cfg.gatewayConfig(nil, logger)
	nets := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	if gc.Hostname != "mx1.example.net" || !reflect.DeepEqual(gc.Domains, []string{"example.com"}) || !reflect.DeepEqual(gc.MyNetworks, nets) ||
		gc.MaxMessageBytes != 2048 || gc.MaxRecipients != 7 || gc.MaxConnections != 70 || gc.PerIPConnections != 6 ||
		gc.CommandTimeout != time.Minute || gc.DataTimeout != 2*time.Minute || gc.HardErrorLimit != 3 || gc.JunkCommandLimit != 4 ||
		!reflect.DeepEqual(gc.ConnLimitExempt, nets) || gc.Logger != logger {
		t.Errorf("gateway config %+v", gc)
	}

	sc := cfg.smarthostConfig(logger, nil)
	if sc.Dir != "/tmp/x/spool" || sc.Hostname != "mx1.example.net" || !reflect.DeepEqual(sc.LocalDomains, []string{"example.com"}) ||
		!reflect.DeepEqual(sc.Backends, []string{"127.0.0.1:2526"}) || sc.Transports["example.org"] != "[10.1.1.1]:25" ||
		sc.OutboundPort != 2525 || sc.Lifetime != 48*time.Hour || sc.RetryMin != time.Minute || sc.RetryMax != 10*time.Minute ||
		sc.Workers != 3 || sc.Logger != logger {
		t.Errorf("smarthost config %+v", sc)
	}
	if cfg.DNS.Resolver != "127.0.0.1:53" {
		t.Errorf("dns.resolver %q", cfg.DNS.Resolver)
	}

	if cc := cfg.ClamAV.clientConfig(); !reflect.DeepEqual(cc, clamav.Config{Address: "unix:/run/clamd.ctl", Timeout: 5 * time.Second, MaxConns: 2}) {
		t.Errorf("clamav config %+v", cc)
	}
	if ch := cfg.ClamAV.check(nil, cfg.Hostname, nil, logger); !ch.OnErrorAccept || ch.Hostname != "mx1.example.net" {
		t.Errorf("clamav check %+v", ch)
	}
	cfg.ClamAV.OnError = onErrorTempfail
	if cfg.ClamAV.check(nil, cfg.Hostname, nil, logger).OnErrorAccept {
		t.Error("on_error: tempfail accepts unscanned mail")
	}

	wantGrey := greylist.Config{Delay: time.Minute, RetryWindow: time.Hour, Lifetime: 48 * time.Hour, NetmaskV4: 32, NetmaskV6: 128,
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, AllowSenders: []string{"partner.example"},
		AllowRecipients: []string{"postmaster@example.com"}}
	if gr := cfg.Greylist.greylistConfig(); !reflect.DeepEqual(gr, wantGrey) {
		t.Errorf("greylist config\n%+v\nwant\n%+v", gr, wantGrey)
	}

	cl := cfg.clusterConfig(nil, logger)
	if cl.Name != "mx1" || cl.Dir != "/tmp/x/cluster" || cl.GossipBind != "10.0.0.1:7946" || cl.RaftBind != "10.0.0.1:7947" ||
		cl.Advertise != "10.0.0.1" || !reflect.DeepEqual(cl.Join, []string{"10.0.0.2:7946"}) || cl.BootstrapExpect != 3 ||
		len(cl.SecretKey) != 32 || cl.TLS == nil || cl.RemoveDeadAfter != 48*time.Hour ||
		cl.Meta != (cluster.Meta{Version: version, SMTP: ":2525", HTTP: "127.0.0.1:8025"}) {
		t.Errorf("cluster config %+v", cl)
	}
}

// TestConfigSectionsComplete: every key of the file belongs to one
// section that validate runs, so no key goes unchecked.
func TestConfigSectionsComplete(t *testing.T) {
	c := &Config{}
	listed := map[any]bool{}
	for _, s := range c.sections() {
		listed[s] = true
	}
	v := reflect.ValueOf(c).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if !f.IsExported() || f.Tag.Get("yaml") == "" {
			continue
		}
		s, ok := v.Field(i).Addr().Interface().(section)
		if !ok || !listed[s] {
			t.Errorf("%s (yaml %q) is not a section of Config.sections", f.Name, strings.TrimPrefix(f.Tag.Get("yaml"), ","))
		}
	}
}
