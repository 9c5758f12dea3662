package bayes

import (
	"math"
	"sort"
)

// Counts are how many learnt ham and spam messages held one feature.
type Counts struct {
	Ham, Spam int64
}

// Classifier combines feature counts into a spam probability: Robinson's
// per-feature probability with a prior, and Fisher's chi-square combining
// of the strongest features, as SpamBayes does.
type Classifier struct {
	// S is the strength of the prior X for a feature seen in few
	// messages (SpamBayes' unknown_word_strength); 0.45 when zero.
	S float64
	// X is the probability of a feature never seen; 0.5 when zero.
	X float64
	// MinStrength drops features whose probability is within this of
	// 0.5; 0.1 when zero.
	MinStrength float64
	// MaxClues is how many of the strongest features are combined; 300
	// when zero (SpamBayes combines 150; 300 caught more spam with
	// header tokens in `make spam-eval`).
	MaxClues int
}

func (c Classifier) withDefaults() Classifier {
	if c.S == 0 {
		c.S = 0.45
	}
	if c.X == 0 {
		c.X = 0.5
	}
	if c.MinStrength == 0 {
		c.MinStrength = 0.1
	}
	if c.MaxClues == 0 {
		c.MaxClues = 300
	}
	return c
}

// Prob is the probability that a message with these feature counts is
// spam, given nham and nspam learnt messages: 0 is ham, 1 spam, 0.5 no
// evidence either way (or strong evidence both ways).
func (c Classifier) Prob(nham, nspam int64, counts []Counts) float64 {
	c = c.withDefaults()
	if nham <= 0 || nspam <= 0 {
		return 0.5
	}
	clues := make([]float64, 0, len(counts))
	for _, k := range counts {
		h, s := max(k.Ham, 0), max(k.Spam, 0)
		// A feature cannot be in more messages than were learnt
		// (counts and totals are read apart and may drift by a
		// concurrent learn).
		h, s = min(h, nham), min(s, nspam)
		n := float64(h + s)
		if n == 0 {
			continue
		}
		hr := float64(h) / float64(nham)
		sr := float64(s) / float64(nspam)
		p := sr / (hr + sr)
		f := (c.S*c.X + n*p) / (c.S + n)
		if math.Abs(f-0.5) >= c.MinStrength {
			clues = append(clues, f)
		}
	}
	if len(clues) == 0 {
		return 0.5
	}
	if len(clues) > c.MaxClues {
		sort.Slice(clues, func(i, j int) bool { return math.Abs(clues[i]-0.5) > math.Abs(clues[j]-0.5) })
		clues = clues[:c.MaxClues]
	}
	var lnH, lnS float64
	for _, f := range clues {
		lnH += math.Log(f)
		lnS += math.Log1p(-f)
	}
	n := len(clues)
	// Hamminess: near 1 when the clues are too close to 0 to be
	// chance; spamminess likewise for clues close to 1.
	ham := 1 - chi2Q(-2*lnH, 2*n)
	spam := 1 - chi2Q(-2*lnS, 2*n)
	return (spam - ham + 1) / 2
}

// chi2Q is the probability that a chi-square variable with v degrees of
// freedom (v even) is at least x2, computed in log space so that large
// arguments do not underflow.
func chi2Q(x2 float64, v int) float64 {
	m := x2 / 2
	if m <= 0 {
		return 1
	}
	// Q = e^-m * sum_{i<v/2} m^i / i!
	lnm := math.Log(m)
	best := math.Inf(-1)
	terms := make([]float64, v/2)
	for i := range terms {
		lg, _ := math.Lgamma(float64(i + 1))
		terms[i] = -m + float64(i)*lnm - lg
		best = max(best, terms[i])
	}
	var sum float64
	for _, t := range terms {
		sum += math.Exp(t - best)
	}
	return min(math.Exp(best+math.Log(sum)), 1)
}
