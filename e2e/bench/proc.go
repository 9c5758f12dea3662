package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mxgate/mxgate/internal/testport"
)

// rssSampler tracks the peak, over its samples, of the summed VmHWM of a
// set of processes. For a single long-lived process (mxgate) the final
// sample is exact; for Postfix, whose daemons come and go, it is the
// largest sum seen among the processes alive at one sample.
type rssSampler struct {
	pids     func() []int
	quit     chan struct{}
	done     chan struct{}
	peak     int64
	stopOnce sync.Once
}

func sampleRSS(pids func() []int, every time.Duration) *rssSampler {
	s := &rssSampler{pids: pids, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.quit:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	var sum int64
	for _, pid := range s.pids() {
		sum += procStatusKB(pid, "VmHWM")
	}
	s.peak = max(s.peak, sum)
}

// stop takes a last sample and returns the peak in KiB.
func (s *rssSampler) stop() int64 {
	s.stopOnce.Do(func() { close(s.quit) })
	<-s.done
	s.sample()
	return s.peak
}

// procStatusKB returns a "kB" field of /proc/PID/status, 0 if absent.
func procStatusKB(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// processTree returns root and its descendants (one scan of /proc).
func processTree(root int) []int {
	children := map[int][]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		if ppid := procPPid(pid); ppid > 0 {
			children[ppid] = append(children[ppid], pid)
		}
	}
	tree := []int{root}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

func procPPid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...; comm may contain spaces and parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// alive reports whether pid exists and is not a zombie. (Postfix's master
// daemonizes; in a container whose PID 1 does not reap, it stays a zombie.)
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// waitGone waits up to d for every pid to exit, then SIGKILLs the rest.
func waitGone(pids []int, d time.Duration) (killed int) {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			<-tick.C // poll interval
		}
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			killed++
		}
	}
	return killed
}

// freePort returns a loopback address with a port that was free just now.
func freePort() (string, error) { return testport.Addr(false) }

// waitBanner waits until addr answers with an SMTP 220 greeting.
func waitBanner(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			code, text, rerr := readReply(bufio.NewReader(c))
			c.Write([]byte("QUIT\r\n"))
			c.Close()
			if rerr == nil && code == 220 {
				return nil
			}
			err = fmt.Errorf("banner %q (%v)", text, rerr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w", addr, d, err)
		}
		<-tick.C // poll interval
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// cpuTime returns the CPU time (user and system) the processes have used,
// with that of their exited and reaped children (Postfix's master reaps
// its smtpd processes).
func cpuTime(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// After "(comm)": state ppid ... utime(11) stime(12) cutime(13) cstime(14).
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 15 {
			continue
		}
		for _, s := range f[11:15] {
			n, _ := strconv.ParseInt(s, 10, 64)
			ticks += n
		}
	}
	// USER_HZ, the unit of these fields, is 100 on every Linux port.
	return time.Duration(ticks) * 10 * time.Millisecond
}
