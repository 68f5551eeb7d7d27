package report

import (
	"encoding/json"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchboard-io/switchboard/chaos/nemesis"
)

// HTMLFileName is the page written next to report.json.
const HTMLFileName = "report.html"

// WriteHTML writes report.html into dir: the verdict, the replay command, a
// timeline (fault windows as bands per node; operations per second, errors
// and latency as lines; session resumes as marks), the checkers with their
// violations and the operations around them, and the workload counts. The
// page is self-contained (inline SVG and CSS, no scripts).
func (r *Report) WriteHTML(dir string) (string, error) {
	var b strings.Builder
	if err := page.Execute(&b, pageData{R: r, Timeline: template.HTML(r.timelineSVG())}); err != nil {
		return "", fmt.Errorf("report: html: %w", err)
	}
	path := filepath.Join(dir, HTMLFileName)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	return path, nil
}

type pageData struct {
	R        *Report
	Timeline template.HTML
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"sec": func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) },
	"resumes": func(r *Report) []time.Duration {
		p50, p99, mx := r.ResumeQuantiles()
		return []time.Duration{p50.Round(time.Millisecond), p99.Round(time.Millisecond), mx.Round(time.Millisecond)}
	},
	"json": func(v any) string {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err.Error()
		}
		return string(b)
	},
	"verdict": func(pass bool) string {
		if pass {
			return "PASS"
		}
		return "FAIL"
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>chaos {{verdict .R.Pass}}: {{.R.Scenario}} seed {{.R.Seed}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1 .pass{color:#1a7f37} h1 .fail{color:#cf222e}
code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;padding:2px 4px}
pre{padding:8px;overflow-x:auto}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
.ok{color:#1a7f37} .bad{color:#cf222e;font-weight:600}
.legend span{display:inline-block;margin-right:1.5em}
.sw{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
</style></head><body>
<h1>Chaos run: <span class="{{if .R.Pass}}pass{{else}}fail{{end}}">{{verdict .R.Pass}}</span></h1>
<p>Scenario <b>{{.R.Scenario}}</b>, seed <b>{{.R.Seed}}</b>, {{.R.Nodes}} nodes, driver {{.R.Driver}}, {{sec .R.Duration}} of workload and
{{len .R.Faults}} faults, started {{.R.Started.Format "2006-01-02 15:04:05 MST"}}.
Node data and logs: <code>{{.R.Dir}}</code>.</p>
<p>Replay (same faults at the same times; leader and session targets are resolved again):</p>
<pre>{{.R.Replay}}</pre>

<h2>Checks</h2>
<table><tr><th>checker</th><th>verdict</th><th>checked</th></tr>
{{range .R.Checks}}<tr><td>{{.Name}}</td><td>{{if .OK}}<span class="ok">ok</span>{{else}}<span class="bad">{{len .Violations}} violations</span>{{end}}</td><td>{{.Checked}}</td></tr>
{{end}}</table>
{{range .R.Errors}}<p class="bad">error: {{.}}</p>{{end}}
{{range .R.Checks}}{{if not .OK}}<h3>{{.Name}}</h3>
{{range .Violations}}<p class="bad">{{.What}}{{if .File}} — <a href="{{.File}}">open {{.File}}</a>{{end}}</p>{{if .Context}}<pre>{{range .Context}}{{.}}
{{end}}</pre>{{end}}{{end}}{{end}}{{end}}

<h2>Timeline</h2>
<p class="legend"><span><i class="sw" style="background:#f4a3a3"></i>node killed</span><span><i class="sw" style="background:#f7d08a"></i>node paused</span><span><i class="sw" style="background:#9ec5fe"></i>node isolated</span><span><i class="sw" style="background:#c3b1e1"></i>node restarted (graceful)</span><span><i class="sw" style="background:#7fb3a6"></i>halves</span><span><i class="sw" style="background:#b5d99c"></i>ring (bridge)</span><span><i class="sw" style="background:#c9a27e"></i>disk full</span>
<span><i class="sw" style="background:#a8dadc"></i>delay</span><span><i class="sw" style="background:#e9c46a"></i>loss</span><span><i class="sw" style="background:#6c9bd2"></i>one-way partition</span>
<span><i class="sw" style="background:#2c7be5"></i>log operations/s that succeeded</span><span><i class="sw" style="background:#cf222e"></i>failed (read errors, unknown appends)/s</span>
<span><i class="sw" style="background:#8250df"></i>max latency (right axis)</span><span><i class="sw" style="background:#1a7f37"></i>session resumes</span>
<span><i class="sw" style="background:#1a7f37;opacity:.5"></i>lane <i>frames</i>: durable session frames delivered per second (red: none)</span></p>
{{.Timeline}}

{{if .R.Resumes}}{{$q := resumes .R}}<p>Session clients resumed {{len .R.Resumes}} times on another connection: p50 {{index $q 0}}, p99 {{index $q 1}}, max {{index $q 2}} from noticing the failure to the welcome of the resume.</p>{{end}}

<h2>Faults</h2>
<table><tr><th>#</th><th>fault</th><th>node</th><th>planned at</th><th>started</th><th>healed</th><th>all ready</th><th>note</th></tr>
{{range $i, $f := .R.Faults}}<tr><td>{{$i}}</td><td>{{$f.Kind}} {{$f.Target}}</td><td>{{$f.Node}}</td><td>{{sec $f.At}}</td><td>{{sec $f.Started}}</td><td>{{sec $f.Healed}}</td><td>{{if $f.Ready}}{{sec $f.Ready}}{{else}}—{{end}}</td><td>{{$f.Note}}</td></tr>
{{end}}</table>

<h2>Workload</h2>
<pre>{{json .R.Workload}}</pre>
<p>Details per second, the plan and every violation's context are in <code>report.json</code>.</p>
</body></html>
`))

// timelineSVG draws the run: one lane per node with its fault windows, then
// a chart of the log workload per second and the session resumes.
func (r *Report) timelineSVG() string {
	const (
		width, left, right = 1050, 60, 60
		laneH, chartH      = 22, 180
	)
	nodes := r.nodeNames()
	end := r.Duration
	if d := r.Finished.Sub(r.Started); d > end {
		end = d
	}
	for _, s := range r.Seconds {
		end = max(end, time.Duration(s.At+1)*time.Second)
	}
	if end <= 0 {
		end = time.Second
	}
	plotW := float64(width - left - right)
	x := func(d time.Duration) float64 { return left + plotW*float64(d)/float64(end) }
	lanesH := laneH * len(nodes)
	frames := false // a lane of session frames delivered per second
	for _, sec := range r.Seconds {
		frames = frames || sec.Frames > 0
	}
	if frames {
		lanesH += laneH
	}
	chartTop := lanesH + 20
	height := chartTop + chartH + 30

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-size="11" font-family="system-ui,sans-serif">`, width, height)
	for i, n := range nodes {
		y := i * laneH
		fmt.Fprintf(&b, `<text x="4" y="%d">%s</text><line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#ddd"/>`,
			y+15, template.HTMLEscapeString(n), left, width-right, y+laneH/2, y+laneH/2)
	}
	if frames {
		// Green by the share of the busiest second; red where none arrived.
		// Every second of the workload gets a cell: one without a record
		// delivered nothing.
		y, maxF, last := len(nodes)*laneH, 1, 0
		perSec := map[int]int{}
		for _, sec := range r.Seconds {
			maxF = max(maxF, sec.Frames)
			perSec[sec.At] = sec.Frames
			if sec.Frames > 0 {
				last = max(last, sec.At)
			}
		}
		last = max(last, int(r.Duration/time.Second)-1)
		fmt.Fprintf(&b, `<text x="4" y="%d">frames</text>`, y+15)
		for at := 0; at <= last; at++ {
			n := perSec[at]
			x0, x1 := x(time.Duration(at)*time.Second), x(time.Duration(at+1)*time.Second)
			fill := fmt.Sprintf(`fill="#1a7f37" opacity="%.2f"`, 0.15+0.85*float64(n)/float64(maxF))
			if n == 0 {
				fill = `fill="#cf222e" opacity="0.6"`
			}
			fmt.Fprintf(&b, `<rect class="frames" x="%.1f" y="%d" width="%.1f" height="%d" %s><title>%d s: %d durable frames delivered</title></rect>`,
				x0, y+4, max(x1-x0-0.5, 0.5), laneH-8, fill, at, n)
		}
	}
	for _, f := range r.Faults {
		hit := f.Nodes // a partition between nodes: a band on each
		if len(hit) == 0 {
			hit = []string{f.Node}
		}
		color := map[nemesis.Kind]string{nemesis.Kill: "#f4a3a3", nemesis.Pause: "#f7d08a", nemesis.Isolate: "#9ec5fe", nemesis.Restart: "#c3b1e1",
			nemesis.Delay: "#a8dadc", nemesis.Loss: "#e9c46a", nemesis.OneWay: "#6c9bd2", nemesis.Halves: "#7fb3a6", nemesis.Ring: "#b5d99c",
			nemesis.DiskFull: "#c9a27e"}[f.Kind]
		if color == "" {
			color = "#ccc"
		}
		x0, x1 := x(f.Started), x(max(f.Healed, f.Started+10*time.Millisecond))
		drawn := false
		for _, n := range hit {
			i := indexOf(nodes, n)
			if i < 0 {
				continue
			}
			drawn = true
			fmt.Fprintf(&b, `<rect class="fault" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s on %s, %.1f–%.1f s</title></rect>`,
				x0, i*laneH+2, x1-x0, laneH-4, color, f.Kind, f.Target, template.HTMLEscapeString(f.Node), f.Started.Seconds(), f.Healed.Seconds())
		}
		if !drawn {
			continue
		}
		// The band continues faintly over the chart, so effects line up.
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" opacity="0.25"/>`, x0, chartTop, x1-x0, chartH, color)
	}

	// Chart: ops/s (left axis), failed/s (same axis), max latency (right axis).
	maxOps, maxMs := 1, 1.0
	for _, s := range r.Seconds {
		maxOps = max(maxOps, s.OK+s.Conflict, s.Failed)
		maxMs = max(maxMs, s.MaxMs)
	}
	y := func(v, top float64) float64 { return float64(chartTop+chartH) - float64(chartH)*v/top }
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%d" fill="none" stroke="#bbb"/>`, left, chartTop, plotW, chartH)
	fmt.Fprintf(&b, `<text x="4" y="%d">%d/s</text><text x="4" y="%d">0</text>`, chartTop+10, maxOps, chartTop+chartH)
	fmt.Fprintf(&b, `<text x="%d" y="%d">%.0f ms</text>`, width-right+4, chartTop+10, maxMs)
	line := func(color string, v func(Second) float64, top float64) {
		if len(r.Seconds) == 0 {
			return
		}
		var pts []string
		for _, s := range r.Seconds {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(time.Duration(s.At)*time.Second+500*time.Millisecond), y(v(s), top)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, color, strings.Join(pts, " "))
	}
	line("#2c7be5", func(s Second) float64 { return float64(s.OK + s.Conflict) }, float64(maxOps))
	line("#cf222e", func(s Second) float64 { return float64(s.Failed) }, float64(maxOps))
	line("#8250df", func(s Second) float64 { return s.MaxMs }, maxMs)
	for _, rs := range r.Resumes {
		fmt.Fprintf(&b, `<line class="resume" x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#1a7f37" stroke-width="2"><title>session resume at %.1f s, took %v</title></line>`,
			x(rs.At), x(rs.At), chartTop+chartH, chartTop+chartH-12, rs.At.Seconds(), rs.Took.Round(time.Millisecond))
	}
	// Time axis.
	step := max(time.Second, (end / 10).Round(time.Second))
	for t := time.Duration(0); t <= end; t += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%ds</text>`, x(t), chartTop+chartH+15, int(t.Seconds()))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// nodeNames lists the nodes in the order n1, n2, … (from the faults and the
// node count).
func (r *Report) nodeNames() []string {
	var out []string
	for i := range r.Nodes {
		out = append(out, fmt.Sprintf("n%d", i+1))
	}
	for _, f := range r.Faults {
		if f.Node != "" && len(f.Nodes) == 0 && indexOf(out, f.Node) < 0 {
			out = append(out, f.Node)
		}
	}
	return out
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}
