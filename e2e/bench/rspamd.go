package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rspamd is a private rspamd instance, the filter of the mailcow-like
// stack: Debian's stock configuration (/etc/rspamd) with $LOCAL_CONFDIR,
// $DBDIR, $RUNDIR and $LOGDIR in a temp dir, so that the system's
// service (if any) is neither read from nor touched. Its workers listen on
// free loopback ports: the proxy in milter mode scanning itself (the
// Postfix smtpd's milter), the normal worker (/checkv2) and the
// controller (learning). Its Bayes classifier is in the bench's Redis
// (database 1), its antivirus module asks the bench's clamd without a
// verdict cache, and its DNS resolver is the bench's DNS server.
type rspamd struct {
	dir                       string
	proxy, normal, controller string
	proc                      *child
	workers                   int // processes that scan (normal and proxy)
}

// rspamdWorkers is the count of both scanning workers: the machine's two
// cores each.
const rspamdWorkers = 2

// rspamdFiles are the files of $LOCAL_CONFDIR; {{...}} are replaced.
var rspamdFiles = map[string]string{
	"local.d/options.inc": `dns { nameserver = ["{{dns}}"]; }
`,
	"local.d/logging.inc": `level = "info";
`,
	"local.d/redis.conf": `servers = "{{redis}}";
db = "1";
`,
	"local.d/classifier-bayes.conf": `backend = "redis";
autolearn = false;
`,
	// The whole message to clamd (as mxgate sends it), not only
	// attachments; no verdict cache (mxgate's clamav.cache_ttl: 0s).
	"local.d/antivirus.conf": `clamav {
  type = "clamav";
  servers = "{{clamd}}";
  scan_mime_parts = false;
  symbol = "CLAM_VIRUS";
  action = "reject";
  no_cache = true;
  timeout = 10s;
}
`,
	// mxgate's node does not greylist in this scenario either; fuzzy
	// checks ask rspamd.com's servers, which a loopback bench cannot.
	"local.d/greylist.conf":    "enabled = false;\n",
	"local.d/fuzzy_check.conf": "enabled = false;\n",
	"override.d/worker-normal.inc": `bind_socket = "{{normal}}";
count = {{workers}};
`,
	"override.d/worker-controller.inc": `bind_socket = "{{controller}}";
count = 1;
`,
	"override.d/worker-proxy.inc": `bind_socket = "{{proxy}}";
milter = yes;
timeout = 120s;
count = {{workers}};
upstream "local" { default = yes; self_scan = yes; }
`,
}

func startRspamd(redisAddr, clamdAddr, dnsAddr string) (_ *rspamd, err error) {
	bin, err := exec.LookPath("rspamd")
	if err != nil {
		return nil, fmt.Errorf("rspamd not installed: run `scripts/install-deps.sh --bench` (Debian package rspamd)")
	}
	ru, err := user.Lookup("_rspamd")
	if err != nil {
		return nil, fmt.Errorf("rspamd: %w", err)
	}
	uid, _ := strconv.Atoi(ru.Uid)
	gid, _ := strconv.Atoi(ru.Gid)
	dir, err := os.MkdirTemp("", "mxgate-bench-rspamd-")
	if err != nil {
		return nil, err
	}
	r := &rspamd{dir: dir, workers: rspamdWorkers}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\nrspamd log:\n%s", err, r.logTail())
			r.stop()
		}
	}()
	var addrs [3]string
	for i := range addrs {
		if addrs[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	r.proxy, r.normal, r.controller = addrs[0], addrs[1], addrs[2]
	rep := strings.NewReplacer("{{dns}}", dnsAddr, "{{redis}}", redisAddr, "{{clamd}}", clamdAddr,
		"{{normal}}", r.normal, "{{controller}}", r.controller, "{{proxy}}", r.proxy,
		"{{workers}}", strconv.Itoa(r.workers))
	for _, d := range []string{"local.d", "override.d", "db", "run", "log"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	for name, text := range rspamdFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(rep.Replace(text)), 0o644); err != nil {
			return nil, err
		}
	}
	// The workers run as _rspamd: they write the db, run and log dirs.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	for _, d := range []string{"db", "run", "log"} {
		if err := os.Chown(filepath.Join(dir, d), uid, gid); err != nil {
			return nil, err
		}
	}
	out, err := os.Create(filepath.Join(dir, "rspamd.out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(bin, "-f", "-u", ru.Username, "-g", ru.Username, "-c", "/etc/rspamd/rspamd.conf",
		"--var=LOCAL_CONFDIR="+dir, "--var=DBDIR="+filepath.Join(dir, "db"),
		"--var=RUNDIR="+filepath.Join(dir, "run"), "--var=LOGDIR="+filepath.Join(dir, "log"))
	cmd.Stdout, cmd.Stderr = out, out
	if r.proc, err = startChild(cmd); err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: time.Second}
	err = r.proc.waitReady(60*time.Second, 200*time.Millisecond, func() error {
		for _, a := range []string{r.normal, r.controller} {
			resp, err := client.Get("http://" + a + "/ping")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s/ping: %s", a, resp.Status)
			}
		}
		c, err := net.DialTimeout("tcp", r.proxy, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("rspamd %w", err)
	}
	return r, nil
}

// waitHyperscan waits until every scanning worker has loaded the
// hyperscan database that rspamd's hs_helper compiles after the start
// (until then the workers match regular expressions one by one, slower
// than a long-running rspamd). It reports what it saw, never fails.
func (r *rspamd) waitHyperscan(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(filepath.Join(r.dir, "log", "rspamd.log"))
		n := bytes.Count(b, []byte("hyperscan database of"))
		if n >= 2*r.workers {
			return fmt.Sprintf("hyperscan loaded by %d workers", n)
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("WARNING: hyperscan loaded by %d of %d workers after %v", n, 2*r.workers, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// learn teaches rspamd's Bayes the corpus through the controller
// (/learnham, /learnspam), a few messages at a time.
func (r *rspamd) learn(ctx context.Context, c *corpus) (int, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	var (
		next    atomic.Int64
		learnt  atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(c.msgs) || ctx.Err() != nil {
					return
				}
				m := c.msgs[i]
				path := map[bool]string{false: "/learnham", true: "/learnspam"}[m.spam]
				body, err := os.ReadFile(m.path)
				if err == nil {
					err = r.post(ctx, client, "http://"+r.controller+path, body, nil)
				}
				// A message rspamd finds too short to learn (or already
				// learnt) is not an error of the bench.
				if err != nil && !strings.Contains(err.Error(), "208") && !strings.Contains(strings.ToLower(err.Error()), "learn") {
					errOnce.Do(func() { first = fmt.Errorf("rspamd learn %s: %w", m.path, err) })
					return
				}
				if err == nil {
					learnt.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(learnt.Load()), first
}

// post sends body and returns an error for a status other than 200,
// with rspamd's answer.
func (r *rspamd) post(ctx context.Context, client *http.Client, url string, body []byte, hdr http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(reply[:min(len(reply), 200)]))
	}
	return nil
}

func (r *rspamd) pids() []int { return processTree(r.proc.pid()) }

func (r *rspamd) logTail() string {
	return tail(filepath.Join(r.dir, "rspamd.out"), 10) + "\n" + tail(filepath.Join(r.dir, "log", "rspamd.log"), 30)
}

// stop sends SIGTERM to the main process, waits for its workers (or kills
// them) and removes the temp dir.
func (r *rspamd) stop() {
	if r.proc != nil {
		pids := r.pids()
		r.proc.stop(10 * time.Second)
		waitGone(pids, 5*time.Second)
	}
	os.RemoveAll(r.dir)
}

// proxyTasks counts the messages the proxy worker logged (rspamd logs
// each scanned message at the info level), and those of them with a
// Bayes symbol.
func (r *rspamd) proxyTasks() (tasks, withBayes int) {
	b, _ := os.ReadFile(filepath.Join(r.dir, "log", "rspamd.log"))
	for _, line := range bytes.Split(b, []byte("\n")) {
		if bytes.Contains(line, []byte("(rspamd_proxy)")) && bytes.Contains(line, []byte("rspamd_task_write_log")) {
			tasks++
			if bytes.Contains(line, []byte("BAYES_")) {
				withBayes++
			}
		}
	}
	return tasks, withBayes
}
