// Command spameval measures the spam filter on the SpamAssassin corpus in
// testdata/spamassassin (`make spam-eval`): stratified k-fold
// cross-validation with a fixed seed. For each fold and model, a fresh
// Bayes store learns the other folds; each held-out message is then spooled
// to a file and scored through a filter pipeline of body checks, as the
// gateway scores it. Nothing learns while scoring, so no state passes from
// one scored message to the next, and nothing uses DNS.
//
// It prints, per model, at the thresholds tag 5, quarantine 8 and reject
// 15: ham flagged (score >= tag), ham quarantined, ham rejected, spam
// caught (>= tag), F1 of spam at the tag threshold, and messages scored
// per second.
//
//	go run ./e2e/spameval [-k 5] [-seed 1] [-models unigram+headers,osb] [-heuristics] [-v]
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/bayes"
	"github.com/mxgate/mxgate/filter/heuristics"
)

var (
	flagData   = flag.String("data", "testdata/spamassassin", "directory holding ham.tar.gz and spam.tar.gz")
	flagK      = flag.Int("k", 5, "folds")
	flagSeed   = flag.Uint64("seed", 1, "seed of the fold assignment")
	flagModels = flag.String("models", "", "comma-separated models to run (empty: all); see -list")
	flagList   = flag.Bool("list", false, "list the models and exit")
	flagTag    = flag.Float64("tag", 5, "tag threshold")
	flagQuar   = flag.Float64("quarantine", 8, "quarantine threshold")
	flagReject = flag.Float64("reject", 15, "reject threshold")
	flagHeur   = flag.Bool("heuristics", false, "add filter/heuristics' checks to the score")
	flagV      = flag.Bool("v", false, "print each model's Bayes score histogram and the misjudged messages")
)

// model is one configuration of the Bayes check under test.
type model struct {
	name, about string
	features    bayes.Features
	classifier  bayes.Classifier
	lr          bool // logistic regression (lr.go) instead of counts
}

var models = []model{
	{"unigram", "single tokens (text words, subject words, URL hosts), chi-square of the 150 strongest", bayes.Features{}, bayes.Classifier{MaxClues: 150}, false},
	{"unigram+headers/150", "and header-specific tokens", bayes.Features{Headers: true}, bayes.Classifier{MaxClues: 150}, false},
	{"unigram+headers", "the same, 300 clues combined (the default)", bayes.DefaultFeatures, bayes.Classifier{}, false},
	{"osb", "single tokens and OSB pairs (window 5), 150 clues", bayes.Features{Pairs: true}, bayes.Classifier{MaxClues: 150}, false},
	{"osb+headers", "single tokens, header tokens, OSB pairs, 300 clues", bayes.Features{Headers: true, Pairs: true}, bayes.Classifier{}, false},
	{"lr:unigram+headers", "logistic regression on hashed single and header tokens", bayes.Features{Headers: true}, bayes.Classifier{}, true},
	{"lr:osb+headers", "logistic regression on hashed single, header and OSB features", bayes.Features{Headers: true, Pairs: true}, bayes.Classifier{}, true},
}

// extraChecks are the body checks scored with Bayes: with -heuristics,
// filter/heuristics' check.
func extraChecks() []filter.BodyCheck {
	if *flagHeur {
		return []filter.BodyCheck{heuristics.Check{}, heuristics.GTUBECheck{}}
	}
	return nil
}

type sample struct {
	name string
	spam bool
	path string // spooled copy: CRLF lines, no mbox From_ line
	doc  *bayes.Doc
	fold int
}

func main() {
	flag.Parse()
	if *flagList {
		for _, m := range models {
			fmt.Printf("%-20s %s\n", m.name, m.about)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "spameval:", err)
		os.Exit(1)
	}
}

func run() error {
	run := models
	if *flagModels != "" {
		run = nil
		for _, name := range strings.Split(*flagModels, ",") {
			found := false
			for _, m := range models {
				if m.name == name {
					run, found = append(run, m), true
				}
			}
			if !found {
				return fmt.Errorf("unknown model %q (see -list)", name)
			}
		}
	}
	dir, err := os.MkdirTemp("", "spameval")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var samples []*sample
	for _, class := range []string{"ham", "spam"} {
		s, err := load(filepath.Join(*flagData, class+".tar.gz"), class == "spam", dir)
		if err != nil {
			return err
		}
		samples = append(samples, s...)
	}
	assignFolds(samples, *flagK, *flagSeed)
	var nham, nspam int
	for _, s := range samples {
		if s.spam {
			nspam++
		} else {
			nham++
		}
	}
	fmt.Printf("spam-eval: %d ham, %d spam, %d-fold stratified cross-validation (seed %d); thresholds tag %.1f, quarantine %.1f, reject %.1f\n\n",
		nham, nspam, *flagK, *flagSeed, *flagTag, *flagQuar, *flagReject)
	fmt.Printf("%-20s %11s %11s %11s %11s %7s %9s %8s\n", "model", "ham flagged", "ham quar.", "ham reject", "spam caught", "F1", "unsure", "msg/s")
	for _, m := range run {
		r, err := evaluate(m, samples)
		if err != nil {
			return fmt.Errorf("model %s: %w", m.name, err)
		}
		r.print(m.name, nham, nspam)
	}
	return nil
}

// load reads one tarball of the corpus, spools each message to dir as the
// gateway stores it, and parses it once for training.
func load(path string, spam bool, dir string) ([]*sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open corpus: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	tr := tar.NewReader(gz)
	var out []*sample
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		if h.Typeflag != tar.TypeReg || strings.HasPrefix(filepath.Base(h.Name), "cmds") {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, 8<<20))
		if err != nil {
			return nil, fmt.Errorf("read %s in %s: %w", h.Name, path, err)
		}
		b = spoolForm(b)
		p := filepath.Join(dir, fmt.Sprintf("%s-%05d.eml", map[bool]string{false: "ham", true: "spam"}[spam], len(out)))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return nil, err
		}
		doc, err := bayes.ParseMessage(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", h.Name, err)
		}
		out = append(out, &sample{name: h.Name, spam: spam, path: p, doc: doc})
	}
	// Tar order is the archive's; sort for a stable fold assignment.
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// spoolForm drops the mbox From_ line and makes every line end in CRLF, as
// the spool stores a message.
func spoolForm(b []byte) []byte {
	if bytes.HasPrefix(b, []byte("From ")) {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// assignFolds deals each class, shuffled with the seed, round-robin into k
// folds.
func assignFolds(samples []*sample, k int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for _, spam := range []bool{false, true} {
		var idx []int
		for i, s := range samples {
			if s.spam == spam {
				idx = append(idx, i)
			}
		}
		rng.Shuffle(len(idx), func(a, b int) { idx[a], idx[b] = idx[b], idx[a] })
		for n, i := range idx {
			samples[i].fold = n % k
		}
	}
}

type scored struct {
	name   string
	spam   bool
	score  float64
	bayes  float64 // the Bayes symbol's score
	p      float64 // the Bayes probability
	unsure bool
}

type result struct {
	scores  []scored
	elapsed time.Duration
}

func evaluate(m model, samples []*sample) (*result, error) {
	ctx := context.Background()
	r := &result{}
	for fold := 0; fold < *flagK; fold++ {
		store := bayes.NewMemStore()
		var check filter.BodyCheck
		if m.lr {
			lr := newLR(m.features)
			var docs []*bayes.Doc
			var spam []bool
			for _, s := range samples {
				if s.fold != fold {
					docs, spam = append(docs, s.doc), append(spam, s.spam)
				}
			}
			lr.train(docs, spam, 5, *flagSeed)
			check = lr
		} else {
			bc := &bayes.Check{Store: store, Features: m.features, Classifier: m.classifier}
			for _, s := range samples {
				if s.fold != fold {
					if err := bc.Learn(ctx, s.doc, s.spam); err != nil {
						return nil, err
					}
				}
			}
			check = bc
		}
		p := filter.New(filter.Config{
			Body:       append([]filter.BodyCheck{check}, extraChecks()...),
			Thresholds: filter.Thresholds{Tag: *flagTag, Quarantine: *flagQuar, Reject: *flagReject},
		})
		var held []*sample
		for _, s := range samples {
			if s.fold == fold {
				held = append(held, s)
			}
		}
		out := make([]scored, len(held))
		errs := make([]error, len(held))
		start := time.Now()
		var wg sync.WaitGroup
		next := make(chan int)
		for w := 0; w < runtime.GOMAXPROCS(0); w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					out[i], errs[i] = score(ctx, p, held[i])
				}
			}()
		}
		for i := range held {
			next <- i
		}
		close(next)
		wg.Wait()
		r.elapsed += time.Since(start)
		for i, err := range errs {
			if err != nil {
				return nil, fmt.Errorf("score %s: %w", held[i].name, err)
			}
		}
		r.scores = append(r.scores, out...)
		store.Close()
	}
	return r, nil
}

// score runs the pipeline's body stage on one spooled message.
func score(ctx context.Context, p *filter.Pipeline, s *sample) (scored, error) {
	msg, err := filter.OpenMessage(filepath.Base(s.path), s.path)
	if err != nil {
		return scored{}, err
	}
	d := p.Body(ctx, &filter.Body{Conn: &filter.Conn{ID: "spameval"}, From: "sender@example.org", Rcpts: []string{"user@example.test"}, Msg: msg}, nil)
	if len(d.Errors) > 0 {
		return scored{}, fmt.Errorf("check %s: %w", d.Errors[0].Check, d.Errors[0].Err)
	}
	sc := scored{name: s.name, spam: s.spam, score: d.Score}
	for _, sym := range d.Symbols {
		switch sym.Name {
		case bayes.SymbolUnsure:
			sc.unsure = true
		case bayes.SymbolSpam, bayes.SymbolHam:
			sc.bayes = sym.Score
		}
		if strings.HasPrefix(sym.Detail, "p=") {
			fmt.Sscanf(sym.Detail, "p=%g", &sc.p)
		}
	}
	return sc, nil
}

func (r *result) print(name string, nham, nspam int) {
	var hamFlag, hamQuar, hamRej, spamCaught, unsure int
	for _, s := range r.scores {
		if s.unsure {
			unsure++
		}
		if s.spam {
			if s.score >= *flagTag {
				spamCaught++
			}
			continue
		}
		if s.score >= *flagTag {
			hamFlag++
		}
		if s.score >= *flagQuar {
			hamQuar++
		}
		if s.score >= *flagReject {
			hamRej++
		}
	}
	prec := float64(spamCaught) / float64(max(spamCaught+hamFlag, 1))
	rec := float64(spamCaught) / float64(max(nspam, 1))
	f1 := 0.0
	if prec+rec > 0 {
		f1 = 2 * prec * rec / (prec + rec)
	}
	pct := func(n, of int) string { return fmt.Sprintf("%d %5.2f%%", n, 100*float64(n)/float64(max(of, 1))) }
	fmt.Printf("%-20s %11s %11s %11s %11s %7.4f %9s %8.0f\n", name,
		pct(hamFlag, nham), pct(hamQuar, nham), pct(hamRej, nham), pct(spamCaught, nspam), f1,
		pct(unsure, nham+nspam), float64(len(r.scores))/r.elapsed.Seconds())
	if *flagV {
		r.histogram()
	}
}

// histogram prints the Bayes probabilities of each class in bands, and
// the messages scored on the wrong side of the tag threshold.
func (r *result) histogram() {
	bands := []float64{0.01, 0.1, 0.5, 0.9, 0.95, 0.99}
	names := []string{"<0.01", "<0.1", "<0.5", "<0.9", "<0.95", "<0.99", ">=0.99"}
	for _, spam := range []bool{false, true} {
		counts := make([]int, len(bands)+1)
		for _, s := range r.scores {
			if s.spam == spam {
				counts[sort.Search(len(bands), func(i int) bool { return s.p < bands[i] })]++
			}
		}
		fmt.Printf("    %-4s p:", map[bool]string{false: "ham", true: "spam"}[spam])
		for i, n := range counts {
			fmt.Printf(" %s:%d", names[i], n)
		}
		fmt.Println()
	}
	fmt.Printf("    if BAYES_SPAM reached the tag threshold at p >= cut:")
	for _, cut := range []float64{0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99} {
		var h, sp int
		for _, s := range r.scores {
			if s.p >= cut {
				if s.spam {
					sp++
				} else {
					h++
				}
			}
		}
		fmt.Printf(" %.2f: spam %d ham %d;", cut, sp, h)
	}
	fmt.Println()
	for _, s := range r.scores {
		if s.spam != (s.score >= *flagTag) {
			fmt.Printf("    misjudged: %s (score %.2f, p %.4f)\n", s.name, s.score, s.p)
		}
	}
}
