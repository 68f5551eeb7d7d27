package runner

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard-io/switchboard/chaos/check"
	"github.com/switchboard-io/switchboard/chaos/nemesis"
	"github.com/switchboard-io/switchboard/chaos/report"
)

func TestJudgeThresholds(t *testing.T) {
	build := func() *report.Report {
		rep := report.New(time.Now())
		for at := 0; at <= 30; at++ {
			rep.Seconds = append(rep.Seconds, report.Second{At: at, OK: 50, Conflict: 5, Frames: 100})
		}
		rep.Faults = []report.FaultRecord{
			{Fault: nemesis.Fault{Kind: nemesis.Kill}, Node: "n2", Started: 10 * time.Second, Healed: 12 * time.Second, Ready: 12500 * time.Millisecond},
			{Fault: nemesis.Fault{Kind: nemesis.Pause}, Note: "hit nothing"},
		}
		rep.Resumes = []report.Resume{{At: 11 * time.Second, Took: 300 * time.Millisecond}}
		return rep
	}
	verdict := func(rep *report.Report) map[string]report.Check {
		out := map[string]report.Check{}
		for _, c := range rep.Checks {
			out[c.Name] = c
		}
		return out
	}

	rep := build()
	// An outage inside the kill's window and its grace is fine, and only
	// frames fail in the second the workloads stopped (partial).
	for at := 10; at <= 16; at++ {
		rep.Seconds[at] = report.Second{At: at}
	}
	rep.Seconds[31-1].Frames = 0
	judgeThresholds(rep, Thresholds{Grace: 4 * time.Second}, 30*time.Second+200*time.Millisecond, true)
	v := verdict(rep)
	if !v[check.AvailabilityName].OK || !v[check.ResumesName].OK {
		t.Fatalf("healthy run judged bad: %+v", rep.Checks)
	}

	// A stall after the grace, and a slow resume.
	rep = build()
	for at := 18; at <= 19; at++ {
		rep.Seconds[at].Frames = 0
	}
	rep.Resumes = append(rep.Resumes, report.Resume{At: 20 * time.Second, Took: 3 * time.Second})
	judgeThresholds(rep, Thresholds{Grace: 4 * time.Second}, 30*time.Second, true)
	v = verdict(rep)
	a := v[check.AvailabilityName]
	if a.OK || len(a.Violations) != 1 || !strings.Contains(a.Violations[0].What, "seconds 18–19") ||
		!strings.Contains(a.Violations[0].Context[0], "kill n2") {
		t.Fatalf("availability: %+v", a)
	}
	if r := v[check.ResumesName]; r.OK || !strings.Contains(r.Violations[0].What, "p99 of 2 resumes is 3s") {
		t.Fatalf("resumes: %+v", r)
	}

	// Without the session workload, frames and resumes are not judged.
	rep = build()
	rep.Seconds[20].Frames = 0
	judgeThresholds(rep, Thresholds{}, 30*time.Second, false)
	v = verdict(rep)
	if !v[check.AvailabilityName].OK {
		t.Fatalf("frames judged without sessions: %+v", v[check.AvailabilityName])
	}
	if _, ok := v[check.ResumesName]; ok {
		t.Fatal("resume times judged without sessions")
	}
}
