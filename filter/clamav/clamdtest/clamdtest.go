// Package clamdtest starts a real clamd for tests: a plain foreground
// process with its own configuration, listening on a free loopback TCP port
// and on a unix socket, loading only the signature files it is given (the
// project's test signatures: no freshclam, no network, ready in a fraction
// of a second).
//
// It needs Debian's clamav-daemon (/usr/sbin/clamd); without it the test
// fails and says to run `make deps`. It is used by filter/clamav's own
// integration test and by the e2e tests.
package clamdtest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testport"
)

// ReadyTimeout bounds the wait for a started clamd to answer PING.
const ReadyTimeout = 30 * time.Second

// Options configure a clamd started with StartServer.
type Options struct {
	// SigDir holds the signature databases (e.g. SigDir(t): test.hdb and
	// test.ndb); its files are copied into clamd's own DatabaseDirectory.
	SigDir string
	// StreamMaxLength is clamd's INSTREAM limit in bytes; zero leaves
	// clamd's default (100 MiB).
	StreamMaxLength int64
	// Config holds extra clamd.conf lines, e.g. "MaxThreads 4".
	Config []string
}

// Server is a clamd process started for a test.
type Server struct {
	TCPAddr  string // "127.0.0.1:PORT"
	UnixPath string // the LocalSocket path
	Dir      string // clamd's config, database, log and socket directory
	LogFile  string
	// StartupTime is how long the last start took until PING answered.
	StartupTime time.Duration

	t        testing.TB
	bin      string
	confPath string
	cmd      *exec.Cmd
	exited   chan struct{}
}

// Start starts clamd with the signatures in sigDir and returns its
// addresses in net.Dial form ("127.0.0.1:PORT", "/path/clamd.sock") and a
// stop function (also run at the end of the test).
func Start(t testing.TB, sigDir string) (tcpAddr, unixPath string, stop func()) {
	t.Helper()
	s := StartServer(t, Options{SigDir: sigDir})
	return s.TCPAddr, s.UnixPath, s.Stop
}

// StartServer starts clamd as configured by opts, waits until it answers
// PING on both addresses, and stops it at the end of the test.
func StartServer(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Binary(t)
	if opts.SigDir == "" {
		t.Fatal("clamdtest: Options.SigDir is empty")
	}
	// Not t.TempDir: a unix socket path must fit in 108 bytes, and
	// t.TempDir's names grow with the test name.
	dir, err := os.MkdirTemp("", "clamd")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, Dir: dir, LogFile: filepath.Join(dir, "clamd.log"),
		UnixPath: filepath.Join(dir, "clamd.sock"), confPath: filepath.Join(dir, "clamd.conf")}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("clamdtest: clamd log:\n%s", s.logTail(4096))
		}
		os.RemoveAll(dir)
	})

	dbDir := filepath.Join(dir, "db")
	if err := copyDir(opts.SigDir, dbDir); err != nil {
		t.Fatalf("clamdtest: copying signatures: %v", err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s.TCPAddr = net.JoinHostPort("127.0.0.1", fmt.Sprint(port))

	conf := []string{
		"Foreground yes",
		"LocalSocket " + s.UnixPath,
		"TCPSocket " + fmt.Sprint(port),
		"TCPAddr 127.0.0.1",
		"DatabaseDirectory " + dbDir,
		"TemporaryDirectory " + dir,
		"LogFile " + s.LogFile,
		"LogTime yes",
		"PidFile " + filepath.Join(dir, "clamd.pid"),
		// No User line: clamd keeps the identity it was started with (root in
		// CI, or the developer), which owns every file above.
	}
	if opts.StreamMaxLength > 0 {
		conf = append(conf, fmt.Sprintf("StreamMaxLength %d", opts.StreamMaxLength))
	}
	conf = append(conf, opts.Config...)
	if err := os.WriteFile(s.confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()
	return s
}

// TCPAddress and UnixAddress give the addresses in the form of mxgate's
// clamav.address ("tcp:HOST:PORT", "unix:/path").
func (s *Server) TCPAddress() string  { return "tcp:" + s.TCPAddr }
func (s *Server) UnixAddress() string { return "unix:" + s.UnixPath }

// PID is the process id of the running clamd, or 0.
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *Server) start() {
	s.t.Helper()
	// A unix socket left by a killed clamd makes it refuse to start.
	os.Remove(s.UnixPath)
	out, err := os.OpenFile(filepath.Join(s.Dir, "clamd.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(s.bin, "--foreground", "--config-file="+s.confPath)
	cmd.Stdout, cmd.Stderr = out, out
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("clamdtest: starting %s: %v", s.bin, err)
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
		if ping("unix", s.UnixPath) == nil && ping("tcp", s.TCPAddr) == nil {
			s.StartupTime = time.Since(begin)
			s.t.Logf("clamdtest: clamd (pid %d) ready in %v on %s and %s", cmd.Process.Pid, s.StartupTime.Round(time.Millisecond), s.TCPAddr, s.UnixPath)
			return
		}
		select {
		case <-exited:
			s.t.Fatalf("clamdtest: clamd exited during startup (%v); output:\n%s\nlog:\n%s",
				cmd.ProcessState, readTail(filepath.Join(s.Dir, "clamd.out"), 2048), s.logTail(2048))
		case <-deadline.C:
			s.Stop()
			s.t.Fatalf("clamdtest: clamd did not answer PING within %v; log:\n%s", ReadyTimeout, s.logTail(2048))
		case <-tick.C:
		}
	}
}

// Kill kills clamd with SIGKILL (no cleanup, like a crash or the OOM
// killer) and waits until it is gone.
func (s *Server) Kill() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart starts clamd again after Kill or Stop, on the same addresses and
// with the same configuration, and waits until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Stop stops clamd (SIGTERM, then SIGKILL after 10 s) and waits until it is
// gone. It may be called more than once.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	grace := time.NewTimer(10 * time.Second)
	defer grace.Stop()
	select {
	case <-s.exited:
	case <-grace.C:
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

func (s *Server) logTail(n int) string { return readTail(s.LogFile, n) }

// Binary returns the path of clamd, or fails the test saying how to
// install it.
func Binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("clamd"); err == nil {
		return p
	}
	// /usr/sbin is not in every user's PATH.
	const debian = "/usr/sbin/clamd"
	if _, err := os.Stat(debian); err == nil {
		return debian
	}
	t.Fatalf("clamdtest: clamd not found in PATH nor at %s: run `make deps` (it installs Debian's clamav-daemon and clamav-testfiles)", debian)
	return ""
}

// TestFilesDir is where Debian's clamav-testfiles puts its samples.
const TestFilesDir = "/usr/share/clamav-testfiles"

// TestFiles returns the paths of the files of Debian's clamav-testfiles
// (each one carries a test signature), or fails the test saying how to
// install them.
func TestFiles(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(TestFilesDir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("clamdtest: no files in %s (%v): run `make deps` (it installs Debian's clamav-testfiles)", TestFilesDir, err)
	}
	var paths []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			paths = append(paths, filepath.Join(TestFilesDir, e.Name()))
		}
	}
	return paths
}

// SigDir returns the project's test signature directory, testdata/clamav
// in the repository (test.hdb and test.ndb: EICAR and clam.exe).
func SigDir(t testing.TB) string {
	t.Helper()
	return Testdata(t, "clamav")
}

// Testdata returns a path under the repository's testdata directory and
// fails the test if it does not exist. The repository root is the nearest
// directory above the working directory that holds go.mod, so this works
// from any package's tests and from a fresh clone.
func Testdata(t testing.TB, elem ...string) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("clamdtest: %v", err)
	}
	p := filepath.Join(append([]string{root, "testdata"}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("clamdtest: test data: %v", err)
	}
	return p
}

// SharedTestdata is Testdata under the name earlier tests use.
func SharedTestdata(t testing.TB, elem ...string) string {
	t.Helper()
	return Testdata(t, elem...)
}

// RepoRoot returns the nearest directory above the working directory (or
// the working directory itself) that holds go.mod.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repository root: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("repository root: no go.mod in %s or above", wd)
		}
		dir = parent
	}
}

// ping sends zPING and wants PONG.
func ping(network, addr string) error {
	conn, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return err
	}
	reply, err := io.ReadAll(io.LimitReader(conn, 64))
	if err != nil {
		return err
	}
	if string(reply) != "PONG\x00" {
		return fmt.Errorf("PING: reply %q", reply)
	}
	return nil
}

func freePort() (int, error) { return testport.Port() }

// copyDir copies the regular files of src into a new directory dst. clamd
// ignores files that are not databases (a README).
func copyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	n := 0
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o600); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no files in %s", src)
	}
	return nil
}

func readTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	if len(data) > n {
		data = data[len(data)-n:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return string(data)
}
