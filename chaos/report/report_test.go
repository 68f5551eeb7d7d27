package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/chaos/check"
	"github.com/switchboard-io/switchboard/chaos/nemesis"
)

// A failed run's files: report.json round-trips the verdict, and the page
// shows the verdict, the replay command, one band per fault, the resumes, the
// violation with its context (escaped), per-second lines.
func TestReportFilesShowTheRun(t *testing.T) {
	start := time.Now().Add(-20 * time.Second)
	r := New(start)
	r.Scenario, r.Seed, r.Nodes, r.Driver, r.Duration = "smoke", 9, 3, "process", 15*time.Second
	r.Replay = "switchboard chaos run --scenario smoke --seed 9"
	r.Faults = []FaultRecord{
		{Fault: nemesis.Fault{Kind: nemesis.Kill, Target: nemesis.Leader}, Node: "n2", Started: 3 * time.Second, Healed: 5 * time.Second},
		{Fault: nemesis.Fault{Kind: nemesis.Pause, Target: nemesis.Random}, Node: "n3", Started: 8 * time.Second, Healed: 9 * time.Second},
	}
	r.Note("ok", 3*time.Millisecond)
	r.Note("unknown", 2*time.Second)
	r.NoteFrame()
	r.NoteFrame()
	r.NoteResume(300 * time.Millisecond)
	r.NoteResume(900 * time.Millisecond)
	r.AddCheck(check.AppendsName, "10 acknowledged appends", []check.Violation{{Check: check.AppendsName,
		What: "n2: acknowledged append <c1-7> (s v3) is missing", Context: []string{"v2 c0-1"}, File: "linear-s.html"}})
	r.AddCheck(check.FramesName, "4 frames", nil)
	r.Finish(time.Now())
	if r.Pass || r.Violations() != 1 {
		t.Fatalf("pass %v with %d violations", r.Pass, r.Violations())
	}
	dir := t.TempDir()
	if _, err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	var back Report
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Pass || back.Seed != 9 || len(back.Checks) != 2 || len(back.Resumes) != 2 || len(back.Seconds) != 1 || back.Seconds[0].Failed != 1 {
		t.Errorf("report.json: %+v", &back)
	}

	if _, err := r.WriteHTML(dir); err != nil {
		t.Fatal(err)
	}
	h, err := os.ReadFile(filepath.Join(dir, HTMLFileName))
	if err != nil {
		t.Fatal(err)
	}
	page := string(h)
	for _, want := range []string{">FAIL<", r.Replay, "<svg", "&lt;c1-7&gt;", "v2 c0-1", "1 violations", "kill leader on n2",
		`<a href="linear-s.html">`, "resumed 2 times on another connection: p50 900ms, p99 900ms, max 900ms"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<c1-7>") {
		t.Error("violation text not escaped")
	}
	if n := strings.Count(page, `class="fault"`); n != 2 {
		t.Errorf("%d fault bands, want 2", n)
	}
	// One cell per second up to the last frame (noted 20 s after the
	// start): only that one had frames, the others are red.
	if n := strings.Count(page, `class="frames"`); n != 21 || !strings.Contains(page, "20 s: 2 durable frames delivered") ||
		!strings.Contains(page, "14 s: 0 durable frames delivered") {
		t.Errorf("%d frame cells, want 21, the last with 2 frames", n)
	}
	if n := strings.Count(page, `class="resume"`); n != 2 {
		t.Errorf("%d resume marks, want 2", n)
	}
	if n := strings.Count(page, "<polyline"); n != 3 {
		t.Errorf("%d lines, want 3 (ok, failed, latency)", n)
	}
}

// A partition between nodes draws its band on every node it touched, and
// its description does not become a lane of its own.
func TestPartitionBandsOnEveryNodeItTouched(t *testing.T) {
	r := New(time.Now().Add(-10 * time.Second))
	r.Scenario, r.Nodes, r.Duration = "partitions", 5, 10*time.Second
	r.Faults = []FaultRecord{{Fault: nemesis.Fault{Kind: nemesis.Halves, Target: nemesis.Random}, Node: "n1,n2 | n3,n4,n5",
		Nodes: []string{"n1", "n2", "n3", "n4", "n5"}, Started: 2 * time.Second, Healed: 5 * time.Second}}
	r.Finish(time.Now())
	if names := r.nodeNames(); len(names) != 5 {
		t.Errorf("lanes %v, want n1…n5", names)
	}
	svg := r.timelineSVG()
	if n := strings.Count(svg, `class="fault"`); n != 5 {
		t.Errorf("%d fault bands, want one on each of the 5 nodes", n)
	}
	if !strings.Contains(svg, "halves random on n1,n2 | n3,n4,n5") {
		t.Error("the band does not name the partition")
	}
}
