// Package report is the record of a chaos run: what was run (and the command
// that replays it), the faults as they happened, what the workloads did
// second by second, and each checker's verdict with its violations. It is
// written as report.json into the run's directory.
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-io/switchboard/chaos/check"
	"github.com/switchboard-io/switchboard/chaos/nemesis"
)

// FileName is the report's name inside the report directory.
const FileName = "report.json"

// Report of one run.
type Report struct {
	Scenario string        `json:"scenario"`
	Seed     uint64        `json:"seed"`
	Nodes    int           `json:"nodes"`
	Driver   string        `json:"driver"`
	Duration time.Duration `json:"duration_ns"`
	Started  time.Time     `json:"started"`
	Finished time.Time     `json:"finished"`
	Replay   string        `json:"replay"` // the command that runs it again
	Dir      string        `json:"dir"`    // node data and logs

	Plan   []nemesis.Fault `json:"plan"`
	Faults []FaultRecord   `json:"faults"`

	Workload any      `json:"workload"` // the workloads' counts
	Seconds  []Second `json:"seconds"`  // availability and latency per second
	Resumes  []Resume `json:"resumes"`  // session clients that resumed on another connection

	Checks []Check  `json:"checks"`
	Errors []string `json:"errors,omitempty"` // what went wrong outside the checkers (a node that would not restart, …)
	Pass   bool     `json:"pass"`

	mu     sync.Mutex
	start  time.Time
	bucket map[int]*Second
}

// FaultRecord is a fault as it happened.
type FaultRecord struct {
	nemesis.Fault
	Node    string        `json:"node"`            // the node it hit ("" if it hit none); a partition between nodes: its sides ("n1,n2 | n3,n4,n5", "ring n1-n2-n3-n4-n5-n1")
	Nodes   []string      `json:"nodes,omitempty"` // a partition between nodes: every node it cut off from another
	Started time.Duration `json:"started"`         // offsets from the start of the run
	Healed  time.Duration `json:"healed"`
	Ready   time.Duration `json:"ready"` // when every node was ready again (0: not within 30 s)
	Note    string        `json:"note,omitempty"`
}

// Check is one checker's verdict.
type Check struct {
	Name       string            `json:"name"`
	OK         bool              `json:"ok"`
	Checked    string            `json:"checked"` // what it looked at
	Violations []check.Violation `json:"violations,omitempty"`
}

// Second aggregates the operations that finished in one second of the run.
type Second struct {
	At       int     `json:"t"` // seconds since the start
	OK       int     `json:"ok"`
	Failed   int     `json:"failed"` // failed reads, unknown appends
	MaxMs    float64 `json:"max_ms"`
	sumMs    float64
	MeanMs   float64 `json:"mean_ms"`
	Conflict int     `json:"conflict"`
	// Frames counts durable session frames delivered to a participant.
	Frames int `json:"frames"`
}

// New starts a report; Note records operations against its start time.
func New(start time.Time) *Report {
	return &Report{Started: start, start: start, bucket: map[int]*Second{}}
}

// now returns the bucket of the current second; r.mu must be held.
func (r *Report) now() *Second {
	at := int(time.Since(r.start) / time.Second)
	b := r.bucket[at]
	if b == nil {
		b = &Second{At: at}
		r.bucket[at] = b
	}
	return b
}

// NoteFrame records a durable session frame delivered now.
func (r *Report) NoteFrame() {
	r.mu.Lock()
	r.now().Frames++
	r.mu.Unlock()
}

// Note records one operation that finished now.
func (r *Report) Note(outcome string, latency time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.now()
	switch outcome {
	case "ok", "read":
		b.OK++
	case "conflict":
		b.Conflict++
	default:
		b.Failed++
	}
	ms := float64(latency) / float64(time.Millisecond)
	b.sumMs += ms
	b.MaxMs = max(b.MaxMs, ms)
}

// Resume is one session client's resume: when it was seen (offset from the
// start) and how long the client took from noticing the failure to the
// welcome of its resume.
type Resume struct {
	At   time.Duration `json:"at"`
	Took time.Duration `json:"took"`
}

// NoteResume records a resume seen now that took took.
func (r *Report) NoteResume(took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Resumes = append(r.Resumes, Resume{At: time.Since(r.start), Took: took})
}

// ResumeQuantiles returns the p50, p99 and maximum resume time (zero
// without resumes).
func (r *Report) ResumeQuantiles() (p50, p99, maxTook time.Duration) {
	if len(r.Resumes) == 0 {
		return 0, 0, 0
	}
	ds := make([]time.Duration, len(r.Resumes))
	for i, x := range r.Resumes {
		ds[i] = x.Took
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	return q(0.5), q(0.99), ds[len(ds)-1]
}

// Since returns the offset of t from the start of the run.
func (r *Report) Since(t time.Time) time.Duration { return t.Sub(r.start) }

// AddCheck records a checker's verdict.
func (r *Report) AddCheck(name, checked string, v []check.Violation) {
	r.Checks = append(r.Checks, Check{Name: name, OK: len(v) == 0, Checked: checked, Violations: v})
}

// Violations counts the violations over every checker.
func (r *Report) Violations() int {
	n := 0
	for _, c := range r.Checks {
		n += len(c.Violations)
	}
	return n
}

// Finish fills the per-second table and the verdict.
func (r *Report) Finish(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Finished = now
	r.Seconds = r.Seconds[:0]
	for _, b := range r.bucket {
		if n := b.OK + b.Failed + b.Conflict; n > 0 {
			b.MeanMs = b.sumMs / float64(n)
		}
		r.Seconds = append(r.Seconds, *b)
	}
	sort.Slice(r.Seconds, func(i, j int) bool { return r.Seconds[i].At < r.Seconds[j].At })
	r.Pass = len(r.Errors) == 0 && r.Violations() == 0 && len(r.Checks) > 0
}

// Write writes report.json into dir.
func (r *Report) Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	return path, nil
}

// Summary is the human-readable verdict: one line per checker and fault
// count, violations first.
func (r *Report) Summary() string {
	var b strings.Builder
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "chaos %s: scenario %s, seed %d, %d nodes, %v, %d faults\n", verdict, r.Scenario, r.Seed, r.Nodes, r.Duration, len(r.Faults))
	for _, c := range r.Checks {
		state := "ok"
		if !c.OK {
			state = fmt.Sprintf("%d violations", len(c.Violations))
		}
		fmt.Fprintf(&b, "  %-22s %s (%s)\n", c.Name, state, c.Checked)
		for i, v := range c.Violations {
			if i == 10 {
				fmt.Fprintf(&b, "    … %d more in %s\n", len(c.Violations)-10, FileName)
				break
			}
			fmt.Fprintf(&b, "    %s\n", v.What)
		}
	}
	if len(r.Resumes) > 0 {
		p50, p99, mx := r.ResumeQuantiles()
		fmt.Fprintf(&b, "  session resumes: %d, p50 %v, p99 %v, max %v\n", len(r.Resumes), p50.Round(time.Millisecond), p99.Round(time.Millisecond), mx.Round(time.Millisecond))
	}
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	fmt.Fprintf(&b, "  replay: %s\n", r.Replay)
	return b.String()
}
