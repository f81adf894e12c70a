package bench

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

// svgDoc is what the tests read back from a chart: elements by class, and
// every text.
type svgDoc struct {
	root    string
	byClass map[string]int
	texts   []string
}

// decode parses out as XML (failing the test when it is not well formed)
// and collects its elements and texts.
func decode(t *testing.T, out []byte) svgDoc {
	t.Helper()
	d := svgDoc{byClass: map[string]int{}}
	dec := xml.NewDecoder(bytes.NewReader(out))
	inText := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, out)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if d.root == "" {
				d.root = el.Name.Local
			}
			inText = el.Name.Local == "text"
			for _, a := range el.Attr {
				if a.Name.Local == "class" {
					d.byClass[a.Value]++
				}
			}
		case xml.CharData:
			if inText {
				d.texts = append(d.texts, string(el))
			}
		case xml.EndElement:
			inText = false
		}
	}
	return d
}

func (d svgDoc) hasText(s string) bool {
	for _, t := range d.texts {
		if t == s {
			return true
		}
	}
	return false
}

func render(t *testing.T, c Chart) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := c.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	if s := b.String(); strings.Contains(s, "NaN") || strings.Contains(s, "Inf") {
		t.Fatalf("a coordinate is not a number:\n%s", s)
	}
	return b.Bytes()
}

func TestChartBothSeriesAndAxes(t *testing.T) {
	c := Chart{ID: "x", Title: "pods <Running> & time", XLabel: "seconds", YLabel: "pods", Series: []Series{
		{Name: "baseline r1", Color: "#1f77b4", Points: []Point{{0, 0}, {0.5, 10}, {1.2, 100}}},
		{Name: "vk-titus r1", Color: "#ff7f0e", Dash: "6 3", Points: []Point{{0, 0}, {0.9, 40}, {2.1, 100}}},
	}}
	d := decode(t, render(t, c))
	if d.root != "svg" {
		t.Fatalf("root element %q, want svg", d.root)
	}
	if d.byClass["series"] != 2 {
		t.Errorf("%d series drawn, want 2", d.byClass["series"])
	}
	if d.byClass["axis"] != 2 {
		t.Errorf("%d axes, want 2", d.byClass["axis"])
	}
	if d.byClass["xtick"] < 2 || d.byClass["ytick"] < 2 {
		t.Errorf("ticks: %d on x, %d on y; want at least 2 each", d.byClass["xtick"], d.byClass["ytick"])
	}
	for _, want := range []string{"pods <Running> & time", "seconds", "pods", "baseline r1", "vk-titus r1", "0", "100"} {
		if !d.hasText(want) {
			t.Errorf("no text %q in %q", want, d.texts)
		}
	}
	if d.byClass["nodata"] != 0 {
		t.Error(`"no data" drawn on a chart with data`)
	}
}

func TestChartEmptyAndOnePoint(t *testing.T) {
	for _, tc := range []struct {
		name        string
		series      []Series
		drawn       int
		nodata      bool
		legendEntry string
	}{
		{"no series", nil, 0, true, ""},
		{"empty series", []Series{{Name: "a", Color: "red"}}, 0, true, "a (no data)"},
		{"one point", []Series{{Name: "a", Color: "red", Points: []Point{{3, 3}}}}, 1, false, "a"},
		{"one point and an empty series", []Series{{Name: "a", Color: "red", Points: []Point{{3, 3}}}, {Name: "b", Color: "blue"}}, 1, false, "b (no data)"},
		{"only non-finite points", []Series{{Name: "a", Color: "red", Points: []Point{{math.NaN(), 1}, {1, math.Inf(1)}}}}, 0, true, "a (no data)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decode(t, render(t, Chart{ID: "c", Title: "t", XLabel: "x", YLabel: "y", Series: tc.series}))
			if d.byClass["series"] != tc.drawn {
				t.Errorf("%d series drawn, want %d", d.byClass["series"], tc.drawn)
			}
			if (d.byClass["nodata"] == 1) != tc.nodata {
				t.Errorf(`"no data" shown: %v, want %v`, d.byClass["nodata"] == 1, tc.nodata)
			}
			if d.byClass["axis"] != 2 || d.byClass["xtick"] < 2 || d.byClass["ytick"] < 2 {
				t.Errorf("axes %d, ticks %d/%d: want both axes with ticks", d.byClass["axis"], d.byClass["xtick"], d.byClass["ytick"])
			}
			if tc.legendEntry != "" && !d.hasText(tc.legendEntry) {
				t.Errorf("no legend entry %q in %q", tc.legendEntry, d.texts)
			}
		})
	}
}

func TestChartDeterministic(t *testing.T) {
	c := Chart{ID: "c", Title: "t", Series: []Series{{Name: "a", Color: "red", Points: []Point{{1, 2}, {3, 5}}}}}
	if a, b := render(t, c), render(t, c); !bytes.Equal(a, b) {
		t.Error("two renderings of one chart differ")
	}
}

func TestNewAxis(t *testing.T) {
	for _, tc := range []struct {
		lo, hi         float64
		wantLo, wantHi float64
	}{
		{0.3, 9.7, 0, 10},                 // from 0, round top
		{5, 5, 0, 5},                      // one value: from 0
		{0, 0, 0, 1},                      // one value at 0: a unit
		{-3, 7, -4, 8},                    // negative data keeps its low end
		{math.Inf(1), math.Inf(-1), 0, 1}, // no data
		{0, 1234, 0, 1500},                // step 500
	} {
		a := newAxis(tc.lo, tc.hi)
		if a.lo != tc.wantLo || a.hi != tc.wantHi {
			t.Errorf("newAxis(%g, %g) = [%g, %g], want [%g, %g]", tc.lo, tc.hi, a.lo, a.hi, tc.wantLo, tc.wantHi)
		}
		if n := len(a.ticks); n < 2 || a.ticks[0] != a.lo || a.ticks[n-1] != a.hi {
			t.Errorf("newAxis(%g, %g) ticks %v: want from %g to %g", tc.lo, tc.hi, a.ticks, a.lo, a.hi)
		}
	}
}
