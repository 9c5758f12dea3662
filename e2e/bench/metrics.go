package main

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/internal/promscrape"
)

// metrics is one scrape of a node's /metrics: the value of each series,
// keyed by its name and labels as the text format writes them, e.g.
// `mxgate_greylist_decisions_total{result="new"}`.
type metrics map[string]float64

// scrape reads http://httpAddr/metrics.
func scrape(httpAddr string) (metrics, error) {
	m, err := promscrape.Get(httpAddr)
	return metrics(m), err
}

// histogram is an unlabelled Prometheus histogram: its cumulative buckets,
// sorted by upper bound, the last one +Inf.
type histogram []bucket

type bucket struct{ le, count float64 }

// histogram returns the buckets of the unlabelled histogram name (nil if
// the scrape has none).
func (m metrics) histogram(name string) histogram {
	prefix := name + `_bucket{le="`
	var h histogram
	for series, count := range m {
		rest, ok := strings.CutPrefix(series, prefix)
		if !ok {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(rest, `"}`), 64)
		if err != nil {
			continue
		}
		h = append(h, bucket{le, count})
	}
	slices.SortFunc(h, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	return h
}

// count is the number of observations.
func (h histogram) count() float64 {
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].count
}

// combine returns h + sign*o, bucket by bucket: the merge of two nodes'
// histograms (sign 1) or the observations made between two scrapes of one
// node (o the earlier, sign -1). Both must have the same buckets (the same
// metric from the same binary); an empty one counts as zeros.
func (h histogram) combine(o histogram, sign float64) histogram {
	if len(o) == 0 {
		return h
	}
	if len(h) == 0 {
		h = make(histogram, len(o))
		for i, b := range o {
			h[i].le = b.le
		}
	}
	out := make(histogram, len(h))
	for i, b := range h {
		out[i] = b
		if i < len(o) && o[i].le == b.le {
			out[i].count += sign * o[i].count
		}
	}
	return out
}

// quantile estimates the p-quantile (0 < p < 1) as Prometheus'
// histogram_quantile does: linear interpolation within the bucket that
// holds the rank. An observation in the +Inf bucket reports the largest
// finite bound. 0 when there are no observations.
func (h histogram) quantile(p float64) time.Duration {
	total := h.count()
	if total == 0 {
		return 0
	}
	rank := p * total
	lower, below := 0.0, 0.0
	for _, b := range h {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return seconds(lower)
			}
			frac := 0.0
			if b.count > below {
				frac = (rank - below) / (b.count - below)
			}
			return seconds(lower + (b.le-lower)*frac)
		}
		lower, below = b.le, b.count
	}
	return seconds(lower)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
