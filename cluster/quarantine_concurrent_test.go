package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/quarantine"
	"github.com/mxgate/mxgate/quarantine/quarantinetest"
)

// Many small and a few chunked quarantine writes through every node at
// once leave the same state on every node.
func TestQuarantineSameStateEverywhere(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.waitLeader()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		for j := 0; j < 40; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var msg []byte
				if j%20 == 0 {
					raw := make([]byte, 800<<10)
					_, _ = rand.Read(raw)
					msg = append([]byte("Subject: big\r\n\r\n"), base64.StdEncoding.EncodeToString(raw)...)
				} else {
					msg = []byte(fmt.Sprintf("Subject: small %d %d\r\n\r\nhello\r\n", i, j))
				}
				e := quarantinetest.Entry(fmt.Sprintf("n%dm%d", i, j), 0)
				if _, err := NewQuarantineStore(tc.nodes[i], 0).Put(ctx, e, bytes.NewReader(msg)); err != nil {
					t.Errorf("put %d/%d: %v", i, j, err)
				}
			}()
		}
	}
	wg.Wait()
	stats := func(i int) quarantine.Stats {
		s, err := NewQuarantineStore(tc.nodes[i], 0).Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	waitFor(t, 20*time.Second, "the same quarantine on every node", func() bool {
		s0 := stats(0)
		return s0 == stats(1) && s0 == stats(2) && s0.Entries == 120
	})
	t.Logf("stats %+v %+v %+v", stats(0), stats(1), stats(2))
}
