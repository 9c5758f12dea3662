package main

import (
	"context"
	"math"
	"math/rand/v2"

	"github.com/mxgate/mxgate/filter"
	"github.com/mxgate/mxgate/filter/bayes"
)

// lrCheck is the discriminative model tried against the counting one:
// logistic regression over the same hashed features (words, header
// tokens, OSB pairs), trained by SGD with AdaGrad steps for a few epochs,
// its probability mapped to the same symbols. Evaluation only: its weights
// do not fit the count stores.
type lrCheck struct {
	features bayes.Features
	bits     uint
	w, g     []float64
	bias     float64
}

func newLR(f bayes.Features) *lrCheck {
	const bits = 22
	return &lrCheck{features: f, bits: bits, w: make([]float64, 1<<bits), g: make([]float64, 1<<bits)}
}

func (c *lrCheck) Name() string { return "bayes" }

func (c *lrCheck) idx(feats []uint64) []int {
	out := make([]int, len(feats))
	for i, f := range feats {
		out[i] = int(f >> (64 - c.bits))
	}
	return out
}

func (c *lrCheck) margin(ix []int) float64 {
	z := c.bias
	// Features are binary; scale by 1/sqrt(n) so long messages do not
	// dominate.
	scale := 1 / math.Sqrt(float64(max(len(ix), 1)))
	for _, i := range ix {
		z += c.w[i] * scale
	}
	return z
}

// train runs epochs of SGD over docs in an order shuffled with seed.
func (c *lrCheck) train(docs []*bayes.Doc, spam []bool, epochs int, seed uint64) {
	ix := make([][]int, len(docs))
	for i, d := range docs {
		ix[i] = c.idx(bayes.Tokenize(d, c.features))
	}
	order := make([]int, len(docs))
	for i := range order {
		order[i] = i
	}
	var nspam int
	for _, s := range spam {
		if s {
			nspam++
		}
	}
	// Balance the classes: a spam counts as much as nham/nspam ham.
	wSpam := float64(len(docs)-nspam) / float64(max(nspam, 1))
	rng := rand.New(rand.NewPCG(seed, 7))
	const eta, l2 = 0.5, 1e-6
	for e := 0; e < epochs; e++ {
		rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		for _, n := range order {
			y, cw := 0.0, 1.0
			if spam[n] {
				y, cw = 1, wSpam
			}
			p := 1 / (1 + math.Exp(-c.margin(ix[n])))
			grad := cw * (p - y)
			scale := 1 / math.Sqrt(float64(max(len(ix[n]), 1)))
			for _, i := range ix[n] {
				gi := grad*scale + l2*c.w[i]
				c.g[i] += gi * gi
				c.w[i] -= eta * gi / (math.Sqrt(c.g[i]) + 1e-8)
			}
			c.bias -= 0.01 * grad
		}
	}
}

func (c *lrCheck) CheckBody(ctx context.Context, b *filter.Body) filter.Result {
	doc := bayes.DocFromView(b.Msg.View())
	p := 1 / (1 + math.Exp(-c.margin(c.idx(bayes.Tokenize(doc, c.features)))))
	return filter.Result{Symbols: []filter.Symbol{bayes.SymbolFor(p)}}
}
