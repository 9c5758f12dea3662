// Package testport hands out loopback TCP ports for tests that start
// servers, real processes among them, on ports chosen in advance.
//
// The usual trick, listening on port 0 and closing, returns a port from
// the kernel's ephemeral range; between the close and the server's bind,
// the kernel may give that same port to any outgoing connection or to
// another "port 0" listener, and the server fails with "address already
// in use". Ports handed out here come from below the ephemeral range
// (which starts at 32768 on Linux by default), where the kernel never
// picks on its own, and a port is never handed out twice by one process.
// Processes of one test run pick at random, so they rarely meet.
package testport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

const (
	lowest  = 20000
	highest = 32000 // exclusive; below the default ephemeral range
)

var given struct {
	sync.Mutex
	m map[int]bool
}

// Addr returns "127.0.0.1:PORT" for a port that was free for TCP (and, with
// udp, for UDP too) when it was checked and that this process has not
// handed out before.
func Addr(udp bool) (string, error) {
	lo, hi := bounds()
	given.Lock()
	defer given.Unlock()
	if given.m == nil {
		given.m = map[int]bool{}
	}
	for range 1000 {
		port := lo + rand.N(hi-lo)
		if given.m[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if !free(addr, udp) {
			continue
		}
		given.m[port] = true
		return addr, nil
	}
	return "", fmt.Errorf("testport: no free loopback port in %d-%d", lo, hi-1)
}

// Port is Addr(false)'s port number.
func Port() (int, error) {
	addr, err := Addr(false)
	if err != nil {
		return 0, err
	}
	_, p, _ := net.SplitHostPort(addr)
	return strconv.Atoi(p)
}

func free(addr string, udp bool) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	ln.Close()
	if udp {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		pc.Close()
	}
	return true
}

// bounds keeps the range below the machine's ephemeral range when that
// was lowered.
func bounds() (lo, hi int) {
	lo, hi = lowest, highest
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) == 2 {
		if start, err := strconv.Atoi(f[0]); err == nil && start < hi && start > lo+1000 {
			hi = start
		}
	}
	return lo, hi
}
