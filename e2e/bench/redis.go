package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/dnstest"
)

// redisServer is a private redis-server on a free loopback port, nothing
// saved to disk, its files in a temp dir: the Bayes store of both mxgate
// (database 0) and rspamd (database 1).
type redisServer struct {
	dir, addr string
	proc      *child
}

func startRedis() (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not installed: run `make deps`")
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	dir, err := os.MkdirTemp("", "mxgate-bench-redis-")
	if err != nil {
		return nil, err
	}
	r := &redisServer{dir: dir, addr: addr}
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--dir", dir, "--save", "",
		"--appendonly", "no", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"))
	if r.proc, err = startChild(cmd); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := r.proc.waitReady(20*time.Second, 20*time.Millisecond, func() error { return redisPing(addr) }); err != nil {
		log := tail(filepath.Join(dir, "redis.log"), 10)
		r.stop()
		return nil, fmt.Errorf("redis-server %w; log:\n%s", err, log)
	}
	return r, nil
}

func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING: %q", line)
	}
	return nil
}

func (r *redisServer) stop() {
	r.proc.stop(10 * time.Second)
	os.RemoveAll(r.dir)
}

// benchZone is what the bench's DNS server knows: the load's sender
// domain publishes SPF allowing loopback and the corpus client, and DMARC
// p=none; every other name (the DNS block list's zone, the corpus's
// domains, rspamd's lists and maps hosts) is NXDOMAIN, answered at once,
// as from a local resolver on a machine whose lists list nothing.
var benchZone = dnstest.Zone{
	"example.org.":        {TXT: []string{"v=spf1 ip4:127.0.0.0/8 ip4:" + corpusClientIP + " -all"}},
	"_dmarc.example.org.": {TXT: []string{"v=DMARC1; p=none"}},
}

// corpusClientIP is the client address both filters are told the corpus
// came from (TEST-NET-1: public to the checks, so the DNS block list is
// asked).
const corpusClientIP = "192.0.2.25"

// dnsblZone is the one DNS block list of the full scenario.
const dnsblZone = "bl.bench.test"
