package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
)

// Chart is a line chart: series on one pair of linear axes. WriteSVG draws
// it as a self-contained SVG (no script, no font or file it must fetch), and
// the same chart always gives the same bytes.
type Chart struct {
	// ID names the file: <ID>.svg.
	ID     string   `json:"id"`
	Title  string   `json:"title"`
	XLabel string   `json:"xLabel"`
	YLabel string   `json:"yLabel"`
	Series []Series `json:"series"`
}

// Series is one line, drawn through its points in order.
type Series struct {
	Name string `json:"name"`
	// Color is a CSS color; Dash a stroke-dasharray ("" draws solid).
	Color  string  `json:"color"`
	Dash   string  `json:"dash,omitempty"`
	Points []Point `json:"points"`
}

// Point is one (x, y) of a series.
type Point struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// The drawing's geometry, in SVG user units.
const (
	svgW, svgH                         = 760, 440
	plotLeft, plotRight                = 80, 740
	plotTop, plotBottom                = 40, 380
	tickLen, legendRow, maxLegendChars = 5, 16, 40
)

// WriteSVG draws c. Axes start at 0 when the data has no negative value, so
// that counts and latencies are not magnified; a range of a single value is
// widened to a unit. Points that are not finite are skipped. A series of
// one point is drawn as a dot; a chart with no point at all says so.
func (c Chart) WriteSVG(w io.Writer) error {
	xs, ys := c.ranges()
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgW, svgH, svgW, svgH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", svgW, svgH)
	text(&b, svgW/2, 22, "middle", `font-size="15"`, c.Title)
	// Grid and tick labels.
	for _, v := range xs.ticks {
		x := xs.pos(v, plotLeft, plotRight)
		fmt.Fprintf(&b, `<line class="grid" x1="%s" y1="%d" x2="%s" y2="%d" stroke="#e5e5e5"/>`+"\n", f1(x), plotTop, f1(x), plotBottom)
		fmt.Fprintf(&b, `<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="black"/>`+"\n", f1(x), plotBottom, f1(x), plotBottom+tickLen)
		text(&b, x, plotBottom+18, "middle", `class="xtick"`, xs.label(v))
	}
	for _, v := range ys.ticks {
		y := ys.pos(v, plotBottom, plotTop)
		fmt.Fprintf(&b, `<line class="grid" x1="%d" y1="%s" x2="%d" y2="%s" stroke="#e5e5e5"/>`+"\n", plotLeft, f1(y), plotRight, f1(y))
		fmt.Fprintf(&b, `<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="black"/>`+"\n", plotLeft-tickLen, f1(y), plotLeft, f1(y))
		text(&b, plotLeft-8, y+4, "end", `class="ytick"`, ys.label(v))
	}
	// Axes and their labels.
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", plotLeft, plotBottom, plotRight, plotBottom)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", plotLeft, plotTop, plotLeft, plotBottom)
	text(&b, (plotLeft+plotRight)/2, svgH-22, "middle", `class="xlabel"`, c.XLabel)
	fmt.Fprintf(&b, `<text class="ylabel" transform="translate(22 %d) rotate(-90)" text-anchor="middle">%s</text>`+"\n",
		(plotTop+plotBottom)/2, escape(c.YLabel))
	// Series, then the legend over them (bottom right: every chart here
	// rises from left to right).
	empty := true
	for _, s := range c.Series {
		pts := finite(s.Points)
		if len(pts) > 0 {
			empty = false
		}
		switch len(pts) {
		case 0:
		case 1:
			fmt.Fprintf(&b, `<circle class="series" cx="%s" cy="%s" r="3" fill="%s"/>`+"\n",
				f1(xs.pos(pts[0].X, plotLeft, plotRight)), f1(ys.pos(pts[0].Y, plotBottom, plotTop)), escape(s.Color))
		default:
			fmt.Fprintf(&b, `<polyline class="series" fill="none" stroke="%s" stroke-width="1.5"%s points="`, escape(s.Color), dashAttr(s.Dash))
			for i, p := range pts {
				if i > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(f1(xs.pos(p.X, plotLeft, plotRight)) + "," + f1(ys.pos(p.Y, plotBottom, plotTop)))
			}
			b.WriteString(`"/>` + "\n")
		}
	}
	if empty {
		text(&b, (plotLeft+plotRight)/2, (plotTop+plotBottom)/2, "middle", `class="nodata" fill="#888"`, "no data")
	}
	legendX := plotRight - 10 - 8*maxLegendChars
	if n := len(c.Series); n > 0 {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="white" fill-opacity="0.85"/>`+"\n",
			legendX-6, plotBottom-10-n*legendRow, plotRight-legendX, n*legendRow+6)
	}
	for i, s := range c.Series {
		y := plotBottom - 10 - (len(c.Series)-1-i)*legendRow
		x := legendX
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n",
			x, y-4, x+24, y-4, escape(s.Color), dashAttr(s.Dash))
		name := s.Name
		if len(finite(s.Points)) == 0 {
			name += " (no data)"
		}
		text(&b, float64(x+30), float64(y), "start", `class="legend"`, name)
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// axis is one axis's range and its tick values.
type axis struct {
	lo, hi float64
	ticks  []float64
	digits int // decimals of the tick labels
}

// ranges computes both axes over every finite point of the chart.
func (c Chart) ranges() (x, y axis) {
	lox, hix, loy, hiy := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range finite(s.Points) {
			lox, hix = min(lox, p.X), max(hix, p.X)
			loy, hiy = min(loy, p.Y), max(hiy, p.Y)
		}
	}
	return newAxis(lox, hix), newAxis(loy, hiy)
}

// newAxis spans [lo, hi] with about five round ticks, from 0 when lo ≥ 0;
// no data ([+Inf, -Inf]) gives [0, 1].
func newAxis(lo, hi float64) axis {
	if lo > hi {
		lo, hi = 0, 1
	}
	if lo >= 0 {
		lo = 0
	}
	if hi == lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / 5)
	a := axis{lo: math.Floor(lo/step) * step, hi: math.Ceil(hi/step) * step}
	for i := 0; ; i++ {
		v := a.lo + float64(i)*step
		if v > a.hi+step/2 {
			break
		}
		a.ticks = append(a.ticks, v)
	}
	a.digits = max(0, int(-math.Floor(math.Log10(step))))
	return a
}

// niceStep rounds raw up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// pos maps v from the axis range onto [from, to] (to may be below from).
func (a axis) pos(v, from, to float64) float64 {
	return from + (v-a.lo)/(a.hi-a.lo)*(to-from)
}

func (a axis) label(v float64) string {
	if v == 0 {
		return "0" // not "-0"
	}
	return strconv.FormatFloat(v, 'f', a.digits, 64)
}

// finite is pts without NaN or infinite coordinates.
func finite(pts []Point) []Point {
	out := pts[:0:0]
	for _, p := range pts {
		if !math.IsNaN(p.X) && !math.IsInf(p.X, 0) && !math.IsNaN(p.Y) && !math.IsInf(p.Y, 0) {
			out = append(out, p)
		}
	}
	return out
}

// dashAttr is the stroke-dasharray attribute of a dash pattern ("" for solid).
func dashAttr(dash string) string {
	if dash == "" {
		return ""
	}
	return ` stroke-dasharray="` + escape(dash) + `"`
}

func text(b *bytes.Buffer, x, y float64, anchor, attrs, s string) {
	fmt.Fprintf(b, `<text x="%s" y="%s" text-anchor="%s" %s>%s</text>`+"\n", f1(x), f1(y), anchor, attrs, escape(s))
}

func escape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s)) // writes to memory: cannot fail
	return b.String()
}

// f1 formats a coordinate with one decimal: enough for a drawing, and the
// same every time.
func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
