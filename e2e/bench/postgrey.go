package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// postgrey is the greylisting policy daemon of Postfix-based gateways
// (Debian package postgrey), run in the foreground on a free loopback
// port with its database in a temp dir, as its own user.
type postgrey struct {
	dir, addr string
	proc      *child
}

// postgreyBin returns postgrey's path, or why it cannot run here.
func postgreyBin() (string, error) {
	bin, err := exec.LookPath("postgrey")
	if err != nil {
		bin = "/usr/sbin/postgrey"
		if _, err := os.Stat(bin); err != nil {
			return "", errors.New("postgrey is not installed (apt-get install -y postgrey)")
		}
	}
	if _, err := exec.LookPath("postfix"); err != nil {
		return "", errors.New("postfix is not installed (apt-get install -y postfix)")
	}
	if _, err := user.Lookup("postgrey"); err != nil {
		return "", errors.New("no postgrey user (the Debian package creates it)")
	}
	return bin, nil
}

func startPostgrey(bin string) (_ *postgrey, err error) {
	u, err := user.Lookup("postgrey")
	if err != nil {
		return nil, err
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mxgate-bench-postgrey-")
	if err != nil {
		return nil, err
	}
	p := &postgrey{dir: dir, addr: addr}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\npostgrey output:\n%s", err, p.logTail())
			p.stop()
		}
	}()
	// It drops privileges to the postgrey user before opening its
	// database: that user must reach it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o700); err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(db, uid, gid); err != nil {
		return nil, err
	}
	// Empty allow lists instead of the system's /etc/postgrey ones, so
	// that every triplet is greylisted whatever the host's configuration.
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "postgrey.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	// The same policy as mxgate's: /24 networks, a delay far longer than
	// the run, no auto-allowing of clients.
	cmd := exec.Command(bin, "--inet="+addr, "--dbdir="+db, "--user="+u.Username, "--group="+g.Name,
		"--delay=3600", "--ipv4cidr=24", "--auto-whitelist-clients=0",
		"--whitelist-clients="+empty, "--whitelist-recipients="+empty)
	cmd.Stdout, cmd.Stderr = logf, logf
	if p.proc, err = startChild(cmd); err != nil {
		return nil, err
	}
	err = p.proc.waitReady(30*time.Second, 50*time.Millisecond, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgrey %w", err)
	}
	return p, nil
}

func (p *postgrey) pids() []int { return processTree(p.proc.pid()) }

func (p *postgrey) logTail() string { return tail(filepath.Join(p.dir, "postgrey.log"), 20) }

func (p *postgrey) stop() {
	p.proc.stop(10 * time.Second)
	os.RemoveAll(p.dir)
}

// postgreyMainCF turns the bench's Postfix into a greylisting gateway in
// front of postgrey at addr, the way Postfix + postgrey gateways are set
// up (smtpd_recipient_restrictions, check_policy_service).
func postgreyMainCF(addr string, clients int) string {
	return fmt.Sprintf(`
# The load comes from 127.0.0.1: out of mynetworks, or permit_mynetworks
# would let it past the policy service.
mynetworks = 10.255.255.0/24
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, check_policy_service inet:%s
# Postfix counts each 4xx as an error of the session: after 10 it sleeps
# 1s before each reply, after 20 it hangs up, and it counts each RSET past
# 100 as junk. Real senders make one connection per message; the bench's
# clients keep theirs, so lift them (mxgate's limits are lifted alike).
smtpd_soft_error_limit = 1000000
smtpd_hard_error_limit = 1000000
smtpd_error_sleep_time = 0s
smtpd_junk_command_limit = 1000000
smtpd_client_connection_count_limit = 0
default_process_limit = %d
`, addr, max(100, clients+10))
}
