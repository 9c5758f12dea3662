package filter

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// spamVerdict explains a body decision: the X-Spam headers on accepted mail,
// the score, action and symbols in its mail-log line, and the metrics.
func (p *Pipeline) spamVerdict(d *Decision) {
	metricScore.Observe(d.Score)
	metricVerdicts.WithLabelValues(d.Action.String()).Inc()
	for _, s := range d.Symbols {
		metricSymbolHits.WithLabelValues(s.Name).Inc()
	}
	syms := SymbolList(d.Symbols)
	d.LogAttrs = append(d.LogAttrs, "score", roundScore(d.Score), "action", d.Action.String(), "symbols", syms)
	if d.Refused() {
		return
	}
	flag := "No"
	if d.Action >= Tag {
		flag = "Yes"
	}
	required := p.cfg.Thresholds.Tag
	status := fmt.Sprintf("%s, score=%s required=%s tests=%s", flag, formatScore(d.Score), formatScore(required), strings.Join(syms, ","))
	if d.Action >= Tag {
		d.Headers = append(d.Headers, Header{Name: "X-Spam-Flag", Value: "YES"})
	}
	d.Headers = append(d.Headers,
		Header{Name: "X-Spam-Score", Value: formatScore(d.Score)},
		Header{Name: "X-Spam-Status", Value: foldList(status)})
}

// SymbolList is the symbols as NAME=score, the strongest first, then by
// name: the form of X-Spam-Status and of the mail log.
func SymbolList(syms []Symbol) []string {
	s := slices.Clone(syms)
	slices.SortStableFunc(s, func(a, b Symbol) int {
		if c := cmp.Compare(abs(b.Score), abs(a.Score)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.Name + "=" + formatScore(x.Score)
	}
	return out
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func roundScore(f float64) float64 {
	v, _ := strconv.ParseFloat(formatScore(f), 64)
	return v
}

// formatScore writes a score with at most two decimals, as 5, 4.5 or -0.25.
func formatScore(f float64) string {
	return strconv.FormatFloat(float64(int64(f*100+copySign(0.5, f)))/100, 'f', -1, 64)
}

func copySign(v, sign float64) float64 {
	if sign < 0 {
		return -v
	}
	return v
}

// foldList folds a long header value at its commas, so that no line of the
// header goes over 78 characters where it can be helped (RFC 5322 §2.1.1).
func foldList(v string) string {
	var b strings.Builder
	line := len("X-Spam-Status: ")
	for i, part := range strings.SplitAfter(v, ",") {
		if i > 0 && line+len(part) > 78 {
			b.WriteString("\r\n\t")
			line = 1
		}
		b.WriteString(part)
		line += len(part)
	}
	return b.String()
}
