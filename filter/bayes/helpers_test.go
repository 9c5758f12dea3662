package bayes

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/filter"
)

var (
	hamWords  = strings.Fields("meeting agenda review patch release kernel build server schedule minutes project branch merge compiler linux thanks regards attached report quarterly")
	spamWords = strings.Fields("viagra cheap pills casino winner lottery million unclaimed offer discount mortgage refinance guaranteed limited urgent click prize bonus pharmacy")
)

// genMessage is a small RFC 5322 message of one class; i varies it.
func genMessage(spam bool, i int) string {
	rng := rand.New(rand.NewPCG(uint64(i), map[bool]uint64{false: 1, true: 2}[spam]))
	words, from, host := hamWords, "alice@lists.example.org", "git.example.org"
	if spam {
		words, from, host = spamWords, "promo@deals.example.biz", "cheap-pills.example.biz"
	}
	pick := func(n int) string {
		var b []string
		for range n {
			b = append(b, words[rng.IntN(len(words))])
		}
		return strings.Join(b, " ")
	}
	return fmt.Sprintf("From: Sender %d <%s>\r\nTo: user@example.test\r\nSubject: %s\r\nMessage-ID: <%d@%s>\r\n\r\n%s\r\nhttp://%s/x/%d\r\n",
		i, from, pick(3), i, strings.Split(from, "@")[1], pick(60), host, i)
}

func genDoc(t testing.TB, spam bool, i int) *Doc {
	t.Helper()
	d, err := ParseMessage(strings.NewReader(genMessage(spam, i)))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// spoolMessage writes msg where the spool would and opens it as the body
// checks see it.
func spoolMessage(t testing.TB, msg string) *filter.Body {
	t.Helper()
	p := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(p, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := filter.OpenMessage("Q1", p)
	if err != nil {
		t.Fatal(err)
	}
	return &filter.Body{Conn: &filter.Conn{ID: "S1"}, Msg: m}
}
