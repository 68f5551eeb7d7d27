package console

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/switchboard-io/switchboard/gateway/admin/adminpb"
)

// bar is one bar of a chart.
type bar struct {
	Label string
	Value float64
}

func bucketBars(bs []*adminpb.Bucket) []bar {
	out := make([]bar, len(bs))
	for i, b := range bs {
		out[i] = bar{Label: time.UnixMilli(b.StartUnixMs).UTC().Format("15:04"), Value: float64(b.Count)}
	}
	return out
}

// barChart renders bars as an accessible SVG (role img, a title, and every
// value in a <title> a screen reader or a hover shows). Labels are escaped.
func barChart(title, unit string, bars []bar) template.HTML {
	const w, h, left, bottom, top = 720.0, 200.0, 48.0, 28.0, 12.0
	maxV := 0.0
	for _, b := range bars {
		maxV = math.Max(maxV, b.Value)
	}
	scale := niceCeil(maxV)
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s"><title>%s</title>`, w, h,
		template.HTMLEscapeString(title), template.HTMLEscapeString(title))
	plotW, plotH := w-left-8, h-bottom-top
	// Axis and gridlines at 0, 1/2 and the top.
	for _, f := range []float64{0, 0.5, 1} {
		y := top + plotH*(1-f)
		fmt.Fprintf(&sb, `<line class="grid" x1="%g" y1="%.1f" x2="%g" y2="%.1f"/><text class="axis" x="%g" y="%.1f" text-anchor="end">%s</text>`,
			left, y, w-8, y, left-6, y+4, fmtNum(scale*f))
	}
	if len(bars) > 0 {
		slot := plotW / float64(len(bars))
		bw := math.Max(1, slot*0.8)
		every := int(math.Ceil(float64(len(bars)) / 8))
		for i, b := range bars {
			x := left + float64(i)*slot + (slot-bw)/2
			bh := 0.0
			if scale > 0 {
				bh = plotH * b.Value / scale
			}
			fmt.Fprintf(&sb, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %s %s</title></rect>`,
				x, top+plotH-bh, bw, bh, template.HTMLEscapeString(b.Label), fmtNum(b.Value), template.HTMLEscapeString(unit))
			if i%every == 0 {
				fmt.Fprintf(&sb, `<text class="axis" x="%.1f" y="%g" text-anchor="middle">%s</text>`, x+bw/2, h-8, template.HTMLEscapeString(b.Label))
			}
		}
	} else {
		fmt.Fprintf(&sb, `<text class="axis" x="%g" y="%g" text-anchor="middle">no data</text>`, w/2, h/2)
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String())
}

// niceCeil rounds v up to 1, 2 or 5 × a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
