// Package wait is the one way tests wait for something to happen: poll a
// condition until it holds or a deadline passes, instead of sleeping.
package wait

import (
	"fmt"
	"testing"
	"time"
)

// Cond is a condition to wait for: either a plain func() bool, or a
// func() (bool, string) whose string says what it saw, for the failure
// message.
type Cond interface {
	func() bool | func() (bool, string)
}

// For polls cond until it holds, and fails the test if it does not
// within timeout: "waiting for WHAT: not after TIMEOUT; last seen: ...".
// The first polls come quickly and the interval grows to 50 ms, so that a
// unit test waits no longer than it must and an end-to-end test does not
// hammer the process it watches.
func For[C Cond](t testing.TB, timeout time.Duration, what string, cond C) {
	t.Helper()
	if err := Until(timeout, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// Until is For for goroutines that must not call t.Fatal: it
// returns an error when cond does not hold within timeout.
func Until[C Cond](timeout time.Duration, cond C) error {
	check := func() (bool, string) { return false, "" }
	switch c := any(cond).(type) {
	case func() bool:
		check = func() (bool, string) { return c(), "" }
	case func() (bool, string):
		check = c
	}
	deadline := time.Now().Add(timeout)
	interval := time.Millisecond
	for {
		ok, seen := check()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if seen == "" {
				return fmt.Errorf("not after %v", timeout)
			}
			return fmt.Errorf("not after %v; last seen: %s", timeout, seen)
		}
		time.Sleep(min(interval, time.Until(deadline)+time.Millisecond))
		interval = min(2*interval, 50*time.Millisecond)
	}
}
