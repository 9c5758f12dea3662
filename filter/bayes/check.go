package bayes

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/mxgate/mxgate/filter"
)

// CheckName is the check's name in the pipeline's metrics and symbols.
const CheckName = "bayes"

// DefaultMinLearns is how many messages of each class must be learnt
// before the check scores (bayes.min_learns).
const DefaultMinLearns = 200

// The check's symbols.
const (
	SymbolSpam   = "BAYES_SPAM"
	SymbolHam    = "BAYES_HAM"
	SymbolUnsure = "BAYES_UNSURE"
)

// Probability to score (the README's "Spam filtering" section, Bayes). Chi-square combining
// puts most messages near 0 or 1; between 0.4 and 0.6 the message has no
// clues or clues both ways. `make spam-eval` found that on the SpamAssassin
// corpus a message at p >= 0.6 is spam but for about 1 ham in 1,000, so the
// spam band starts at the tag threshold (5) there:
//
//	p >= 0.99          BAYES_SPAM   +6
//	0.60 <= p < 0.99   BAYES_SPAM   +5 to +6, linear in p
//	0.40 <  p < 0.60   BAYES_UNSURE  0
//	0.01 <  p <= 0.40  BAYES_HAM    -1 to -3, linear in p
//	p <= 0.01          BAYES_HAM    -3
//
// Alone, Bayes tags a message but never quarantines (8) nor rejects (15).
const (
	MinSpamScore = 5.0
	MaxSpamScore = 6.0
	MinHamScore  = -1.0
	MaxHamScore  = -3.0
	SpamFrom     = 0.60
	SpamFull     = 0.99
	HamFrom      = 0.40
	HamFull      = 0.01
)

// SymbolFor is the symbol of a spam probability.
func SymbolFor(p float64) filter.Symbol {
	detail := fmt.Sprintf("p=%.4f", p)
	switch {
	case p >= SpamFull:
		return filter.Symbol{Name: SymbolSpam, Score: MaxSpamScore, Detail: detail}
	case p >= SpamFrom:
		return filter.Symbol{Name: SymbolSpam, Score: MinSpamScore + (MaxSpamScore-MinSpamScore)*(p-SpamFrom)/(SpamFull-SpamFrom), Detail: detail}
	case p <= HamFull:
		return filter.Symbol{Name: SymbolHam, Score: MaxHamScore, Detail: detail}
	case p <= HamFrom:
		return filter.Symbol{Name: SymbolHam, Score: MinHamScore + (MaxHamScore-MinHamScore)*(HamFrom-p)/(HamFrom-HamFull), Detail: detail}
	}
	return filter.Symbol{Name: SymbolUnsure, Score: 0, Detail: detail}
}

// Check is the Bayes classifier as a body check.
type Check struct {
	Store      Store
	Features   Features   // DefaultFeatures is what mxgate runs
	Classifier Classifier // zero: SpamBayes' defaults
	// MinLearns of each class must be learnt before the check scores;
	// DefaultMinLearns when zero.
	MinLearns int64
	// Timeout bounds one store operation; 5 s when zero.
	Timeout time.Duration
	// Parse turns the spooled message into a Doc; DocFromView of the
	// message's shared view when nil.
	Parse  func(*filter.Message) (*Doc, error)
	Logger *slog.Logger
}

// Name is the check's name.
func (c *Check) Name() string { return CheckName }

func (c *Check) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c *Check) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	t := c.Timeout
	if t <= 0 {
		t = 5 * time.Second
	}
	return context.WithTimeout(ctx, t)
}

// Doc reads a spooled message into a Doc.
func (c *Check) Doc(m *filter.Message) (*Doc, error) {
	if c.Parse != nil {
		return c.Parse(m)
	}
	v := m.View()
	if len(v.Texts) == 0 && v.Header.Len() == 0 && len(v.Errors) > 0 {
		// Nothing read at all (the file could not be opened).
		return nil, fmt.Errorf("read message: %s", v.Errors[0])
	}
	return DocFromView(v), nil
}

// CheckBody scores the message.
func (c *Check) CheckBody(ctx context.Context, b *filter.Body) filter.Result {
	doc, err := c.Doc(b.Msg)
	if err != nil {
		return c.failed(b, "parse", err)
	}
	p, active, err := c.Prob(ctx, doc)
	if err != nil {
		return c.failed(b, "lookup", err)
	}
	if !active {
		metricResults.WithLabelValues("inactive").Inc()
		return filter.Result{LogAttrs: []any{"bayes", "inactive"}}
	}
	sym := SymbolFor(p)
	switch sym.Name {
	case SymbolSpam:
		metricResults.WithLabelValues("spam").Inc()
	case SymbolHam:
		metricResults.WithLabelValues("ham").Inc()
	default:
		metricResults.WithLabelValues("unsure").Inc()
	}
	return filter.Result{Symbols: []filter.Symbol{sym}, LogAttrs: []any{"bayes", sym.Detail}}
}

// Prob is the spam probability of doc, with active false (and p 0.5) while
// fewer than MinLearns messages of either class are learnt.
func (c *Check) Prob(ctx context.Context, doc *Doc) (p float64, active bool, err error) {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	feats := Tokenize(doc, c.Features)
	nham, nspam, counts, err := c.Store.Lookup(ctx, feats)
	if err != nil {
		return 0.5, false, err
	}
	metricLearned.WithLabelValues("ham").Set(float64(nham))
	metricLearned.WithLabelValues("spam").Set(float64(nspam))
	need := c.MinLearns
	if need <= 0 {
		need = DefaultMinLearns
	}
	if nham < need || nspam < need {
		metricActive.Set(0)
		return 0.5, false, nil
	}
	metricActive.Set(1)
	return c.Classifier.Prob(nham, nspam, counts), true, nil
}

// failed is the result of a check that could not judge: an error, never
// a verdict.
func (c *Check) failed(b *filter.Body, op string, err error) filter.Result {
	metricErrors.WithLabelValues(op).Inc()
	c.logger().Warn("bayes check failed", "event", "bayes", "session", b.Conn.ID, "queue_id", b.Msg.QueueID,
		"op", op, "error", err.Error())
	return filter.Result{Err: fmt.Errorf("bayes %s: %w", op, err)}
}

// Learn learns doc as spam or ham (for training and autolearn).
func (c *Check) Learn(ctx context.Context, doc *Doc, spam bool) error {
	return c.learn(ctx, doc, spam, 1)
}

// Unlearn takes back a Learn of the same doc and class (a message learnt
// in the wrong class is unlearnt, then learnt in the right one).
func (c *Check) Unlearn(ctx context.Context, doc *Doc, spam bool) error {
	return c.learn(ctx, doc, spam, -1)
}

func (c *Check) learn(ctx context.Context, doc *Doc, spam bool, delta int64) error {
	ctx, cancel := c.timeout(ctx)
	defer cancel()
	if err := c.Store.Learn(ctx, Tokenize(doc, c.Features), spam, delta); err != nil {
		metricErrors.WithLabelValues("learn").Inc()
		return fmt.Errorf("bayes learn: %w", err)
	}
	return nil
}
