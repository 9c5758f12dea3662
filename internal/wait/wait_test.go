package wait

import (
	"strings"
	"testing"
	"time"
)

func TestUntilHolds(t *testing.T) {
	n := 0
	if err := Until(5*time.Second, func() bool { n++; return n == 3 }); err != nil {
		t.Fatalf("Until: %v", err)
	}
	if n != 3 {
		t.Fatalf("condition checked %d times, want 3 (it held the third time)", n)
	}
}

func TestUntilTimesOutSayingWhatItSaw(t *testing.T) {
	start := time.Now()
	err := Until(30*time.Millisecond, func() (bool, string) { return false, "still 7" })
	if err == nil || !strings.Contains(err.Error(), "last seen: still 7") {
		t.Fatalf("Until = %v, want a timeout naming what it saw", err)
	}
	if took := time.Since(start); took < 30*time.Millisecond || took > 2*time.Second {
		t.Fatalf("gave up after %v, want about 30ms", took)
	}
}
