package promscrape

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	m, err := Parse(strings.NewReader(`# HELP x y
# TYPE a counter
a_total 3
b{l="v w"} 1.5e+06
c{le="+Inf"} 7
broken
d NaN-ish
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"a_total": 3, `b{l="v w"}`: 1.5e6, `c{le="+Inf"}`: 7}
	if len(m) != len(want) {
		t.Fatalf("parsed %v", m)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
}
