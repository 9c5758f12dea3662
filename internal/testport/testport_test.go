package testport

import (
	"net"
	"strconv"
	"testing"
)

func TestAddrIsFreeUniqueAndBelowEphemeral(t *testing.T) {
	lo, hi := bounds()
	seen := map[string]bool{}
	for range 200 {
		addr, err := Addr(true)
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		if port < lo || port >= hi {
			t.Fatalf("port %d outside %d-%d", port, lo, hi)
		}
	}
	addr, _ := Addr(false)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the port handed out cannot be bound: %v", err)
	}
	ln.Close()
}
