package main

import (
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// child is a long-running process the bench started (mxgate, clamd,
// postgrey), reaped in the background.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once it has exited and been reaped
}

func startChild(cmd *exec.Cmd) (*child, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(c.exited) }()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// waitReady calls ready every interval until it returns nil; it fails as
// soon as the process exits, or once d has passed.
func (c *child) waitReady(d, interval time.Duration, ready func() error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for deadline := time.Now().Add(d); ; {
		select {
		case <-c.exited:
			return fmt.Errorf("exited during startup: %v", c.cmd.ProcessState)
		default:
		}
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", d, err)
		}
		<-tick.C // poll interval
	}
}

// stop sends SIGTERM and, if the process is still there after d,
// SIGKILL; it reports whether it had to kill. A nil child is a no-op.
func (c *child) stop(d time.Duration) (killed bool) {
	if c == nil {
		return false
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		return false
	case <-time.After(d):
		c.cmd.Process.Kill()
		<-c.exited
		return true
	}
}
