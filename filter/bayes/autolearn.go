package bayes

import (
	"context"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/heuristics"
)

// Autolearn bounds (bayes.autolearn_spam, bayes.autolearn_ham), on the
// score of the message without Bayes' own symbols, so that Bayes never
// learns from its own verdict (as SpamAssassin's bayes_auto_learn). The
// spam bound is SpamAssassin's 12: well over the quarantine level, where
// only mail several other checks agree on lands. The ham bound, -0.5, is
// what a message gets with DMARC passing and nothing against it (SPF_PASS
// -0.1, DKIM_VALID -0.2 and DMARC_PASS -0.5 make -0.8).
const (
	DefaultAutolearnSpam = 12.0
	DefaultAutolearnHam  = -0.5
)

var metricAutolearn = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "mxgate_bayes_autolearn_total",
	Help: "Messages Bayes learnt from the verdict of the other checks (bayes.autolearn), by class: ham, spam.",
}, []string{"class"})

func init() {
	for _, c := range []string{"ham", "spam"} {
		metricAutolearn.WithLabelValues(c)
	}
}

// Autolearn learns from the body decisions of the pipeline (its AfterBody
// hook): spam when the score without Bayes reaches Spam and the score
// decided the action, ham when it is at or under Ham and the message is
// accepted untagged. It learns nothing from a decision some check failed
// in (the score lacks a part), nor forced by a check (a virus is not
// spam), nor left to a retry (greylisted), nor of GTUBE (a test message).
type Autolearn struct {
	Check     *Check
	Spam, Ham float64
}

// Class is what the decision teaches: "spam", "ham", or "" for nothing.
func (a *Autolearn) Class(d filter.Decision) string {
	if len(d.Errors) > 0 {
		return ""
	}
	score := d.Score
	for _, s := range d.Symbols {
		switch {
		case s.Name == heuristics.GTUBE:
			return ""
		case strings.HasPrefix(s.Name, "BAYES_"):
			score -= s.Score
		}
	}
	switch {
	case d.Check == filter.SpamReason && d.Action >= filter.Tag && score >= a.Spam:
		return "spam"
	case d.Action == filter.Accept && score <= a.Ham:
		return "ham"
	}
	return ""
}

// AfterBody learns the message when its decision says what it is. A
// failure is counted and logged by the check (op learn), never the
// message's.
func (a *Autolearn) AfterBody(ctx context.Context, b *filter.Body, d filter.Decision) {
	class := a.Class(d)
	if class == "" {
		return
	}
	doc, err := a.Check.Doc(b.Msg)
	if err != nil {
		return // the check logged it when it read the message
	}
	if err := a.Check.Learn(ctx, doc, class == "spam"); err != nil {
		a.Check.logger().Warn("bayes autolearn failed", "event", "bayes", "session", b.Conn.ID, "queue_id", b.Msg.QueueID,
			"op", "learn", "class", class, "error", err.Error())
		return
	}
	metricAutolearn.WithLabelValues(class).Inc()
	a.Check.logger().Info("bayes autolearn", "event", "bayes_autolearn", "session", b.Conn.ID, "queue_id", b.Msg.QueueID,
		"class", class, "score", d.Score)
}
