package filter

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// bodyFunc is a body check made of a function.
type bodyFunc struct {
	name string
	fn   func(ctx context.Context, b *Body) Result
}

func (c bodyFunc) Name() string                                  { return c.name }
func (c bodyFunc) CheckBody(ctx context.Context, b *Body) Result { return c.fn(ctx, b) }

type rcptFunc struct {
	name string
	fn   func(ctx context.Context, r *Recipient) Result
}

func (c rcptFunc) Name() string                                       { return c.name }
func (c rcptFunc) CheckRcpt(ctx context.Context, r *Recipient) Result { return c.fn(ctx, r) }

func scored(name string, score float64) BodyCheck {
	return bodyFunc{name, func(context.Context, *Body) Result {
		return Result{Symbols: []Symbol{{Name: name, Score: score}}}
	}}
}

func testBody(t *testing.T) *Body {
	t.Helper()
	path := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(path, []byte("Subject: hi\r\nFrom: a@example.org\r\n\r\nbody\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := OpenMessage("Q1", path)
	if err != nil {
		t.Fatal(err)
	}
	return &Body{Conn: &Conn{IP: netip.MustParseAddr("192.0.2.1")}, From: "a@example.org", Rcpts: []string{"u@example.com"}, Msg: m}
}

// The checks of a stage run at the same time: each waits for the other
// to have started, which only concurrent checks can both see.
func TestRunnerConcurrent(t *testing.T) {
	var started sync.WaitGroup
	started.Add(2)
	both := make(chan struct{})
	go func() { started.Wait(); close(both) }()
	waitBoth := func(ctx context.Context, _ *Body) Result {
		started.Done()
		select {
		case <-both:
			return Result{Symbols: []Symbol{{Name: "SAW_BOTH", Score: 1}}}
		case <-ctx.Done():
			return Result{Err: ctx.Err()}
		}
	}
	p := New(Config{Body: []BodyCheck{bodyFunc{"a", waitBoth}, bodyFunc{"b", waitBoth}}, StageTimeout: 10 * time.Second})
	d := p.Body(context.Background(), testBody(t), nil)
	if len(d.Errors) != 0 || d.Score != 2 {
		t.Fatalf("decision %+v: want both checks to see each other (score 2, no errors)", d)
	}
}

// A check still running at the stage deadline is an error result, never a
// verdict; the others' results stand, and the stage ends at the deadline.
func TestRunnerDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	stuck := bodyFunc{"stuck", func(ctx context.Context, _ *Body) Result {
		<-release // ignores its context, as a broken check might
		return Result{Action: Reject, Reply: &Reply{Code: 554, Text: "late"}}
	}}
	before := testutil.ToFloat64(metricResults.WithLabelValues("body", "stuck", "timeout"))
	p := New(Config{Body: []BodyCheck{stuck, scored("FAST", 2)}, StageTimeout: 50 * time.Millisecond})
	d := p.Body(context.Background(), testBody(t), nil)
	if d.Action != Accept || d.Score != 2 {
		t.Errorf("decision %v score %v: want accept with the fast check's 2", d.Action, d.Score)
	}
	if len(d.Errors) != 1 || d.Errors[0].Check != "stuck" || !errors.Is(d.Errors[0].Err, context.DeadlineExceeded) {
		t.Errorf("errors %+v: want the stuck check's deadline", d.Errors)
	}
	if !slices.ContainsFunc(d.Symbols, func(s Symbol) bool { return s.Name == "STUCK_ERROR" && s.Score == 0 }) {
		t.Errorf("symbols %+v: want STUCK_ERROR scoring 0", d.Symbols)
	}
	if got := testutil.ToFloat64(metricResults.WithLabelValues("body", "stuck", "timeout")) - before; got != 1 {
		t.Errorf("timeouts counted: %v, want 1", got)
	}
}

// A panic in a check is contained, counted, and an error result.
func TestRunnerPanic(t *testing.T) {
	boom := bodyFunc{"boom", func(context.Context, *Body) Result { panic("bad input") }}
	before := testutil.ToFloat64(metricPanics.WithLabelValues("boom"))
	p := New(Config{Body: []BodyCheck{boom, scored("OK", 1)}})
	d := p.Body(context.Background(), testBody(t), nil)
	if d.Action != Accept || len(d.Errors) != 1 || d.Errors[0].Check != "boom" {
		t.Fatalf("decision %+v: want accept with one error from boom", d)
	}
	if got := testutil.ToFloat64(metricPanics.WithLabelValues("boom")) - before; got != 1 {
		t.Errorf("panics counted: %v, want 1", got)
	}
}

func TestMergeRules(t *testing.T) {
	virus := bodyFunc{"clamav", func(context.Context, *Body) Result {
		return Result{Action: Reject, Reason: "virus", Reply: &Reply{Code: 554, Enhanced: [3]int{5, 7, 1}, Text: "virus found"},
			LogAttrs: []any{"virus", "EICAR"}}
	}}
	tempfail := bodyFunc{"scanner", func(context.Context, *Body) Result {
		return Result{Action: Tempfail, Reply: &Reply{Code: 451, Enhanced: [3]int{4, 3, 0}, Text: "later"}, Err: errors.New("down")}
	}}
	ham := scored("VERY_HAMMY", -50)
	failing := bodyFunc{"dnsbl", func(context.Context, *Body) Result {
		return Result{Symbols: []Symbol{{Name: "LISTED", Score: 100}}, Err: errors.New("timeout")}
	}}
	header := func(name string) BodyCheck {
		return bodyFunc{name, func(context.Context, *Body) Result {
			return Result{Headers: []Header{{"X-" + name, "yes"}}, LogAttrs: []any{name, "ran"}}
		}}
	}
	th := Thresholds{Tag: 5, Quarantine: 8, Reject: 15}

	for _, tc := range []struct {
		name       string
		checks     []BodyCheck
		scores     map[string]float64
		action     Action
		reason     string
		score      float64
		headers    int
		firstReply int
	}{
		{"ForcedRejectBeatsHamScore", []BodyCheck{ham, virus}, nil, Reject, "virus", -50, 0, 554},
		{"RejectBeatsTempfail", []BodyCheck{tempfail, virus}, nil, Reject, "virus", 0, 0, 554},
		{"TempfailBeatsScore", []BodyCheck{tempfail, scored("SPAMMY", 9)}, nil, Tempfail, "scanner", 9, 0, 451},
		{"ErrorSymbolsNeverCount", []BodyCheck{failing, scored("A", 1)}, nil, Accept, "", 1, 0, 0},
		{"ScoreOverride", []BodyCheck{scored("GTUBE", 1000)}, map[string]float64{"GTUBE": 9}, Quarantine, "spam", 9, 0, 0},
		{"ScoreReject", []BodyCheck{scored("GTUBE", 1000)}, nil, Reject, "spam", 1000, 0, 550},
		{"HeadersWhenAccepted", []BodyCheck{header("one"), header("two")}, nil, Accept, "", 0, 2, 0},
		{"NoHeadersWhenRefused", []BodyCheck{header("one"), virus}, nil, Reject, "virus", 0, 0, 554},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(Config{Body: tc.checks, Thresholds: th, Scores: tc.scores})
			d := p.Body(context.Background(), testBody(t), nil)
			if d.Action != tc.action || d.Reason != tc.reason || d.Score != tc.score || len(d.Headers) != tc.headers {
				t.Fatalf("got action %v reason %q score %v headers %d; want %v %q %v %d",
					d.Action, d.Reason, d.Score, len(d.Headers), tc.action, tc.reason, tc.score, tc.headers)
			}
			if tc.firstReply != 0 && (d.Reply == nil || d.Reply.Code != tc.firstReply) {
				t.Fatalf("reply %+v, want code %d", d.Reply, tc.firstReply)
			}
			if tc.action == Reject && tc.reason == "virus" && !slices.Equal(d.LogAttrs, []any{"virus", "EICAR"}) {
				t.Errorf("log attrs %v: want the deciding check's", d.LogAttrs)
			}
		})
	}
}

func TestDecisionAtThresholds(t *testing.T) {
	th := Thresholds{Tag: 5, Quarantine: 8, Reject: 15}
	for _, tc := range []struct {
		score float64
		want  Action
	}{
		{-3, Accept}, {0, Accept}, {4.99, Accept}, {5, Tag}, {7.9, Tag}, {8, Quarantine}, {14.99, Quarantine}, {15, Reject}, {1000, Reject},
	} {
		p := New(Config{Body: []BodyCheck{scored("S", tc.score)}, Thresholds: th})
		d := p.Body(context.Background(), testBody(t), nil)
		if d.Action != tc.want {
			t.Errorf("score %v: %v, want %v", tc.score, d.Action, tc.want)
		}
		if tc.want == Reject && (d.Reply == nil || d.Reply.Code != 550 || d.Reply.Enhanced != [3]int{5, 7, 1}) {
			t.Errorf("score %v: reply %+v, want 550 5.7.1 with the score", tc.score, d.Reply)
		}
	}
	// A threshold of 0 is off.
	p := New(Config{Body: []BodyCheck{scored("S", 100)}, Thresholds: Thresholds{Tag: 5}})
	if d := p.Body(context.Background(), testBody(t), nil); d.Action != Tag {
		t.Errorf("with quarantine and reject off: %v, want tag", d.Action)
	}
}

// A recipient check that defers is asked again at the end of DATA, for each
// deferred recipient; a refusal there ends the stage before the body checks.
func TestDeferredRecipients(t *testing.T) {
	var mu sync.Mutex
	var atData []string
	grey := rcptFunc{"greylist", func(_ context.Context, r *Recipient) Result {
		if r.From == "" && !r.AtData {
			return Result{Defer: true}
		}
		mu.Lock()
		atData = append(atData, r.Rcpt)
		mu.Unlock()
		if r.Rcpt == "new@example.com" {
			return Result{Action: Tempfail, Reason: "greylisted", Reply: &Reply{Code: 451, Enhanced: [3]int{4, 7, 1}, Text: "greylisted"},
				LogAttrs: []any{"greylist", "new"}}
		}
		return Result{}
	}}
	bodyRan := false
	body := bodyFunc{"clamav", func(context.Context, *Body) Result { bodyRan = true; return Result{} }}
	p := New(Config{Rcpt: []RcptCheck{grey}, Body: []BodyCheck{body}})
	conn := &Conn{IP: netip.MustParseAddr("192.0.2.1")}
	deferred := map[string][]Deferral{}
	for _, rc := range []string{"known@example.com", "new@example.com"} {
		d := p.Rcpt(context.Background(), &Recipient{Conn: conn, From: "", Rcpt: rc})
		if d.Refused() || !slices.Equal(d.Deferred, []Deferral{{Check: "greylist"}}) {
			t.Fatalf("RCPT %s: %+v, want deferred to DATA", rc, d)
		}
		deferred[rc] = d.Deferred
	}
	b := testBody(t)
	b.From, b.Rcpts = "", []string{"known@example.com", "new@example.com"}
	d := p.Body(context.Background(), b, deferred)
	if d.Action != Tempfail || d.Reason != "greylisted" || bodyRan {
		t.Fatalf("end of DATA: %v %q (body ran: %v), want a greylisting tempfail before the body checks", d.Action, d.Reason, bodyRan)
	}
	if fmt.Sprint(d.LogAttrs) != fmt.Sprint([]any{"rcpts", []string{"new@example.com"}, "greylist", "new"}) {
		t.Errorf("log attrs %v", d.LogAttrs)
	}
	slices.Sort(atData)
	if !slices.Equal(atData, []string{"known@example.com", "new@example.com"}) {
		t.Errorf("asked at DATA for %v", atData)
	}
}

// A nil pipeline accepts everything.
func TestNilPipeline(t *testing.T) {
	var p *Pipeline
	if d := p.Body(context.Background(), testBody(t), nil); d.Action != Accept {
		t.Fatal(d)
	}
}

func TestOpenMessage(t *testing.T) {
	b := testBody(t)
	if got := b.Msg.Header.Get("Subject"); got != "hi" {
		t.Errorf("Subject %q", got)
	}
	r, err := b.Msg.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if b.Msg.Size != int64(len("Subject: hi\r\nFrom: a@example.org\r\n\r\nbody\r\n")) {
		t.Errorf("size %d", b.Msg.Size)
	}
}

func TestSpamVerdictHeaders(t *testing.T) {
	th := Thresholds{Tag: 5, Quarantine: 8, Reject: 15}
	for _, tc := range []struct {
		checks  []BodyCheck
		action  Action
		flag    bool
		status  string
		refused bool
	}{
		{[]BodyCheck{scored("A", 1), scored("B", -0.5)}, Accept, false, "No, score=0.5 required=5 tests=A=1,B=-0.5", false},
		{[]BodyCheck{scored("GTUBE", 6)}, Tag, true, "Yes, score=6 required=5 tests=GTUBE=6", false},
		{[]BodyCheck{scored("GTUBE", 9)}, Quarantine, true, "Yes, score=9 required=5 tests=GTUBE=9", false},
		{[]BodyCheck{scored("GTUBE", 1000)}, Reject, false, "", true},
	} {
		p := New(Config{Body: tc.checks, Thresholds: th, Spam: true})
		d := p.Body(context.Background(), testBody(t), nil)
		if d.Action != tc.action {
			t.Fatalf("%v: action %v, want %v", tc.checks, d.Action, tc.action)
		}
		h := map[string]string{}
		for _, x := range d.Headers {
			h[x.Name] = x.Value
		}
		if tc.refused {
			if len(d.Headers) != 0 || d.Reply == nil || d.Reply.Code != 550 {
				t.Errorf("reject: headers %v reply %+v", d.Headers, d.Reply)
			}
		} else {
			if got := h["X-Spam-Status"]; got != tc.status {
				t.Errorf("X-Spam-Status %q, want %q", got, tc.status)
			}
			if _, ok := h["X-Spam-Score"]; !ok {
				t.Errorf("no X-Spam-Score: %v", h)
			}
			if _, ok := h["X-Spam-Flag"]; ok != tc.flag {
				t.Errorf("X-Spam-Flag present %v, want %v", ok, tc.flag)
			}
		}
		attrs := fmt.Sprint(d.LogAttrs)
		if !strings.Contains(attrs, "score") || !strings.Contains(attrs, "action "+tc.action.String()) || !strings.Contains(attrs, "symbols") {
			t.Errorf("log attrs %s lack score, action or symbols", attrs)
		}
	}
	// Without Spam, no headers are added.
	p := New(Config{Body: []BodyCheck{scored("A", 1)}, Thresholds: th})
	if d := p.Body(context.Background(), testBody(t), nil); len(d.Headers) != 0 {
		t.Errorf("headers without spam scoring: %v", d.Headers)
	}
}

// A recipient decision deferred until the score is known sees the score,
// and is not asked when the body checks refuse the message.
func TestDeferredAfterScore(t *testing.T) {
	var asked []float64
	var mu sync.Mutex
	grey := rcptFunc{"greylist", func(_ context.Context, r *Recipient) Result {
		if !r.AtData {
			return Result{DeferAfterScore: true}
		}
		mu.Lock()
		asked = append(asked, r.Score)
		mu.Unlock()
		if r.Scored && r.Score >= 4 {
			return Result{Action: Tempfail, Reason: "greylisted", Reply: &Reply{Code: 451, Enhanced: [3]int{4, 7, 1}, Text: "greylisted"}}
		}
		return Result{}
	}}
	for _, tc := range []struct {
		score  float64
		action Action
		asked  bool
	}{{1, Accept, true}, {4.5, Tempfail, true}, {100, Reject, false}} {
		asked = nil
		p := New(Config{Rcpt: []RcptCheck{grey}, Body: []BodyCheck{scored("S", tc.score)}, Thresholds: Thresholds{Tag: 5, Reject: 15}, Spam: true})
		conn := &Conn{IP: netip.MustParseAddr("192.0.2.1")}
		rd := p.Rcpt(context.Background(), &Recipient{Conn: conn, From: "a@example.org", Rcpt: "u@example.com"})
		if !slices.Equal(rd.Deferred, []Deferral{{Check: "greylist", AfterScore: true}}) {
			t.Fatalf("deferred %v", rd.Deferred)
		}
		b := testBody(t)
		d := p.Body(context.Background(), b, map[string][]Deferral{"u@example.com": rd.Deferred})
		if d.Action != tc.action || (len(asked) == 1) != tc.asked || (tc.asked && asked[0] != tc.score) {
			t.Errorf("score %v: action %v, asked with %v; want %v, asked %v", tc.score, d.Action, asked, tc.action, tc.asked)
		}
		if tc.action == Tempfail && d.Score != tc.score {
			t.Errorf("score %v: the greylisting decision lost the score (%v)", tc.score, d.Score)
		}
	}
}

// An allowed message skips the score's action, not a forced one.
func TestAllowSkipsScoring(t *testing.T) {
	allow := bodyFunc{"lists", func(context.Context, *Body) Result { return Result{Allow: true} }}
	th := Thresholds{Tag: 5, Reject: 15}
	p := New(Config{Body: []BodyCheck{allow, scored("GTUBE", 1000)}, Thresholds: th})
	if d := p.Body(context.Background(), testBody(t), nil); d.Action != Accept || d.Score != 1000 {
		t.Errorf("allowed spam: %v score %v, want accept with the score shown", d.Action, d.Score)
	}
	virus := bodyFunc{"clamav", func(context.Context, *Body) Result {
		return Result{Action: Reject, Reply: &Reply{Code: 554, Text: "virus"}}
	}}
	p = New(Config{Body: []BodyCheck{allow, virus}, Thresholds: th})
	if d := p.Body(context.Background(), testBody(t), nil); d.Action != Reject {
		t.Errorf("allowed virus: %v, want reject", d.Action)
	}
}
