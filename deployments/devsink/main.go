// Command devsink is the stand-in backend mailbox server of `make run`: it
// accepts every message on loopback, prints one line per message and keeps
// the last messages in a directory so that you can read what mxgate
// delivered. It is a development aid, not a mailbox server.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net/textproto"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
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
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{dir: *dir, n: &n}, nil
	}))
	srv.Addr = *addr
	srv.Domain = "devsink.localhost"
	srv.MaxMessageBytes = 64 << 20
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = 5 * time.Minute
	fmt.Printf("devsink: backend mailbox stand-in listening on %s\n", *addr)
	log.Fatal(srv.ListenAndServe())
}

type session struct {
	dir   string
	n     *atomic.Int64
	from  string
	rcpts []string
}

func (s *session) Reset()        { s.from, s.rcpts = "", nil }
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	n := s.n.Add(1)
	subject := ""
	if h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(data))).ReadMIMEHeader(); err == nil {
		subject = h.Get("Subject")
	}
	fmt.Printf("devsink: #%d from=<%s> to=%v size=%d subject=%q\n", n, s.from, s.rcpts, len(data), subject)
	if s.dir != "" {
		name := filepath.Join(s.dir, fmt.Sprintf("%06d.eml", n))
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "devsink cannot store the message"}
		}
	}
	return nil
}
