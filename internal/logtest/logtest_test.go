package logtest

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
)

func TestFindInConcurrentLog(t *testing.T) {
	var b Buffer
	log := slog.New(slog.NewJSONHandler(&b, nil))
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log.Info("x", "event", "deliver", "queue_id", fmt.Sprint(i), "n", i)
		}()
	}
	wg.Wait()
	b.Write([]byte("panic: not JSON\n{\"cut\n"))
	evs := Parse(b.Bytes())
	if len(evs) != 20 {
		t.Fatalf("%d events, want 20", len(evs))
	}
	if got := Find(evs, "event", "deliver", "queue_id", "7", "n", "7"); len(got) != 1 {
		t.Errorf("Find queue_id 7: %v, want one event", got)
	}
	if got := Find(evs, "event", "bounce"); len(got) != 0 {
		t.Errorf("Find bounce: %v, want none", got)
	}
}
