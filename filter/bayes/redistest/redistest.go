// Package redistest starts a real redis-server for tests: a foreground
// process on a free loopback port, its data in a temporary directory with
// the append-only file written at every command, so that a server killed
// with SIGKILL and started again on the same port has kept what it was
// told. Without redis-server (Debian package redis-server) the test fails
// and says to run `make deps`.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testport"
)

// ReadyTimeout bounds the wait for a started server to answer PING.
const ReadyTimeout = 20 * time.Second

// Server is a redis-server process started for a test.
type Server struct {
	Addr string // "127.0.0.1:PORT"
	Dir  string

	t      testing.TB
	bin    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// Binary returns redis-server's path, or fails the test.
func Binary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"redis-server", "/usr/bin/redis-server", "/usr/sbin/redis-server"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("redistest: redis-server not found; run `make deps` (Debian package redis-server)")
	return ""
}

// Start starts redis-server, waits until it answers PING and stops it at
// the end of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), Dir: t.TempDir()}
	addr, err := testport.Addr(false)
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = addr
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			if len(b) > 4096 {
				b = b[len(b)-4096:]
			}
			t.Logf("redistest: redis-server log:\n%s", b)
		}
	})
	s.start()
	return s
}

func (s *Server) start() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin,
		"--port", port, "--bind", "127.0.0.1", "--dir", s.Dir,
		"--daemonize", "no", "--save", "", "--appendonly", "yes", "--appendfsync", "always",
		"--logfile", filepath.Join(s.Dir, "redis.log"), "--protected-mode", "no")
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("redistest: starting %s: %v", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	deadline := time.NewTimer(ReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if Ping(s.Addr) == nil {
			return
		}
		select {
		case <-exited:
			s.cmd = nil
			s.t.Fatalf("redistest: redis-server exited during startup (%v); see %s", cmd.ProcessState, filepath.Join(s.Dir, "redis.log"))
		case <-deadline.C:
			s.Kill()
			s.t.Fatalf("redistest: redis-server did not answer PING on %s within %v", s.Addr, ReadyTimeout)
		case <-tick.C:
		}
	}
}

// Kill kills the server with SIGKILL, like a crash, and waits until it is
// gone.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart starts the server again on the same port with the same data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// Ping sends PING in RESP and expects +PONG.
func Ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("redis PING answered %q", strings.TrimSpace(line))
	}
	return nil
}
