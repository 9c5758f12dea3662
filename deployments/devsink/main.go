// Command devsink is the stand-in backend mailbox server of `make run`: it
// accepts every message on loopback, prints one line per message and keeps
// the last messages in a directory so that you can read what mxgate
// delivered. It is a development aid, not a mailbox server: the recording
// SMTP server of the tests (internal/smtptest) with a directory behind it.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"log"
	"net/textproto"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/smtptest"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:2626", "address to listen on")
	dir := flag.String("dir", "", "directory to store delivered messages in (empty: do not store)")
	flag.Parse()
	if *dir != "" {
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			log.Fatal(err)
		}
	}
	var n atomic.Int64
	srv, err := smtptest.New(smtptest.Config{
		Addr:            *addr,
		Domain:          "devsink.localhost",
		MaxMessageBytes: 64 << 20,
		Timeout:         5 * time.Minute,
		Forget:          true,
		ErrorLog:        log.Default(),
		OnMessage:       func(d smtptest.Delivery) error { return store(*dir, n.Add(1), d) },
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("devsink: backend mailbox stand-in listening on %s\n", *addr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	srv.Close()
}

// store prints a line for message number n and writes it to dir.
func store(dir string, n int64, d smtptest.Delivery) error {
	subject := ""
	if h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(d.Data))).ReadMIMEHeader(); err == nil {
		subject = h.Get("Subject")
	}
	fmt.Printf("devsink: #%d from=<%s> to=%v size=%d subject=%q\n", n, d.From, d.Rcpts, len(d.Data), subject)
	if dir != "" {
		name := filepath.Join(dir, fmt.Sprintf("%06d.eml", n))
		if err := os.WriteFile(name, d.Data, 0o644); err != nil {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "devsink cannot store the message"}
		}
	}
	return nil
}
