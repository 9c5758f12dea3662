package bayes

import (
	"math"
	"testing"
)

func TestChi2Q(t *testing.T) {
	// Reference values of the chi-square survival function for even
	// degrees of freedom (closed form: e^-m sum m^i/i!).
	for _, c := range []struct {
		x2   float64
		v    int
		want float64
	}{
		{2, 2, math.Exp(-1)},
		{4, 4, math.Exp(-2) * 3},
		{10, 10, 0.4404932851},
		{0, 6, 1},
		{5000, 20, 0}, // far in the tail: 0, not NaN
	} {
		if got := chi2Q(c.x2, c.v); math.Abs(got-c.want) > 1e-9 || math.IsNaN(got) {
			t.Errorf("chi2Q(%v, %d) = %v, want %v", c.x2, c.v, got, c.want)
		}
	}
	// Where exp(-m) alone underflows, the sum must not.
	if got := chi2Q(1600, 1600); got < 0.45 || got > 0.55 {
		t.Errorf("chi2Q(1600, 1600) = %v, want about 0.5", got)
	}
}

func TestProb(t *testing.T) {
	var c Classifier
	spammy := []Counts{{Spam: 50}, {Spam: 40, Ham: 1}, {Spam: 30}}
	hammy := []Counts{{Ham: 50}, {Ham: 40, Spam: 1}, {Ham: 30}}
	if p := c.Prob(100, 100, spammy); p < 0.99 {
		t.Errorf("spammy clues: p = %v, want >= 0.99", p)
	}
	if p := c.Prob(100, 100, hammy); p > 0.01 {
		t.Errorf("hammy clues: p = %v, want <= 0.01", p)
	}
	if p := c.Prob(100, 100, []Counts{{}, {Ham: 5, Spam: 5}}); p != 0.5 {
		t.Errorf("no clues: p = %v, want 0.5", p)
	}
	if p := c.Prob(100, 100, append(spammy, hammy...)); p < 0.3 || p > 0.7 {
		t.Errorf("clues both ways: p = %v, want near 0.5", p)
	}
	if p := c.Prob(0, 100, spammy); p != 0.5 {
		t.Errorf("no ham learnt: p = %v, want 0.5", p)
	}
	// Counts above the totals (a concurrent learn) are clamped, not NaN.
	if p := c.Prob(10, 10, []Counts{{Spam: 500}, {Ham: -3, Spam: 20}}); math.IsNaN(p) || p < 0.9 {
		t.Errorf("counts over the totals: p = %v", p)
	}
}

func TestSymbolFor(t *testing.T) {
	for _, c := range []struct {
		p     float64
		name  string
		score float64
	}{
		{0.999, SymbolSpam, 6},
		{0.99, SymbolSpam, 6},
		{0.6, SymbolSpam, 5},
		{0.795, SymbolSpam, 5.5},
		{0.5, SymbolUnsure, 0},
		{0.41, SymbolUnsure, 0},
		{0.4, SymbolHam, -1},
		{0.205, SymbolHam, -2},
		{0.01, SymbolHam, -3},
		{0, SymbolHam, -3},
	} {
		s := SymbolFor(c.p)
		if s.Name != c.name || math.Abs(s.Score-c.score) > 1e-9 {
			t.Errorf("SymbolFor(%v) = %s %v, want %s %v", c.p, s.Name, s.Score, c.name, c.score)
		}
	}
}
