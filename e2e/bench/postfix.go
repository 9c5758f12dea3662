package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// postfix is a private Postfix instance: its own config_directory and
// queue_directory in a temp dir, started with "postfix -c DIR start". As
// root, -c needs no alternate_config_directories entry in the system's
// main.cf, so the system instance (if any) is neither read nor touched.
// master.cf holds only the services this relay needs, with one inet
// service: smtpd on a free loopback port (nothing on port 25), no chroot,
// no local delivery, no pickup. Queue durability is Postfix's default
// (cleanup fsyncs the queue file before smtpd answers 250).
type postfix struct {
	dir, listen string
	master      int
}

const postfixMainCF = `compatibility_level = 3.6
queue_directory = {{dir}}/spool
data_directory = {{dir}}/data
maillog_file = {{dir}}/maillog
maillog_file_prefixes = {{dir}}
myhostname = postfix.bench.invalid
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = bench.test
relay_transport = smtp:[127.0.0.1]:{{sinkport}}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
biff = no
`

// Columns: service type private unpriv chroot wakeup maxproc command.
const postfixMasterCF = `{{listen}} inet n - n - - smtpd
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
showq     unix n - n - - showq
postlog   unix-dgram n - n - 1 postlogd
`

func startPostfix(sinkAddr string) (system, error) {
	p, err := startPostfixWith(sinkAddr, "")
	if err != nil {
		return nil, err
	}
	return p, nil
}

// startPostfixWith starts the instance with extraMainCF appended to its
// main.cf (a later line overrides an earlier one).
func startPostfixWith(sinkAddr, extraMainCF string) (_ *postfix, err error) {
	if _, err := exec.LookPath("postfix"); err != nil {
		return nil, fmt.Errorf("postfix not installed (DEBIAN_FRONTEND=noninteractive apt-get install -y postfix): %w", err)
	}
	pfUser, err := user.Lookup("postfix")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mxgate-bench-postfix-")
	if err != nil {
		return nil, err
	}
	p := &postfix{dir: dir}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\nmaillog:\n%s", err, p.logTail())
			p.stop()
		}
	}()
	// The daemons run as the postfix user: they must reach the data dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	for _, d := range []string{"etc", "spool", "data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	uid, _ := strconv.Atoi(pfUser.Uid)
	gid, _ := strconv.Atoi(pfUser.Gid)
	if err := os.Chown(filepath.Join(dir, "data"), uid, gid); err != nil {
		return nil, err
	}
	if p.listen, err = freePort(); err != nil {
		return nil, err
	}
	_, sinkPort, _ := strings.Cut(sinkAddr, ":")
	r := strings.NewReplacer("{{dir}}", dir, "{{sinkport}}", sinkPort, "{{listen}}", p.listen)
	if err := os.WriteFile(p.etc("main.cf"), []byte(r.Replace(postfixMainCF)+extraMainCF), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.etc("master.cf"), []byte(r.Replace(postfixMasterCF)), 0o644); err != nil {
		return nil, err
	}
	// Postfix reports errors on stderr only when it is a terminal; the
	// rest goes to maillog (see the deferred error wrapper).
	if out, err := exec.Command("postfix", "-c", p.etc(""), "start").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("postfix start: %v %s", err, out)
	}
	if p.master = p.masterPID(); p.master == 0 {
		return nil, fmt.Errorf("postfix started but wrote no master.pid")
	}
	return p, waitBanner(p.listen, 10*time.Second)
}

func (p *postfix) masterPID() int {
	b, _ := os.ReadFile(filepath.Join(p.dir, "spool/pid/master.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func (p *postfix) etc(name string) string { return filepath.Join(p.dir, "etc", name) }

func (p *postfix) addr() string { return p.listen }

func (p *postfix) pids() []int { return processTree(p.master) }

func (p *postfix) logTail() string { return tail(filepath.Join(p.dir, "maillog"), 30) }

// stop stops the instance, waits for (or kills) its processes, and removes
// its directories.
func (p *postfix) stop() error {
	var err error
	if p.master == 0 {
		p.master = p.masterPID()
	}
	if p.master > 0 && alive(p.master) {
		pids := p.pids() // the children are reparented once master exits
		if out, e := exec.Command("postfix", "-c", p.etc(""), "stop").CombinedOutput(); e != nil {
			err = fmt.Errorf("postfix stop: %v %s", e, out)
		}
		if n := waitGone(pids, 10*time.Second); n > 0 {
			err = fmt.Errorf("killed %d Postfix processes that did not stop", n)
		}
	}
	if e := os.RemoveAll(p.dir); e != nil && err == nil {
		err = e
	}
	return err
}
