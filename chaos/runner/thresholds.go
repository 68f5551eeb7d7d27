package runner

import (
	"fmt"
	"time"

	"github.com/switchboard-io/switchboard/chaos/check"
	"github.com/switchboard-io/switchboard/chaos/report"
)

// Thresholds is what a run must meet besides correctness: availability
// outside fault windows and session resume times.
type Thresholds struct {
	// Grace is how long after a fault healed (every node ready again) the
	// cluster may still serve nothing (default 5 s).
	Grace time.Duration
	// ResumeP99 bounds the 99th percentile of session resume times
	// (default 2 s: the failover benchmark's failure line); ResumeMax bounds
	// every one (default 10 s).
	ResumeP99, ResumeMax time.Duration
}

func (t Thresholds) withDefaults() Thresholds {
	if t.Grace == 0 {
		t.Grace = 5 * time.Second
	}
	if t.ResumeP99 == 0 {
		t.ResumeP99 = 2 * time.Second
	}
	if t.ResumeMax == 0 {
		t.ResumeMax = 10 * time.Second
	}
	return t
}

func (t Thresholds) validate() []error {
	var errs []error
	if t.Grace < 0 {
		errs = append(errs, fmt.Errorf("availability grace %v: must not be negative", t.Grace))
	}
	if t.ResumeP99 < 0 || t.ResumeMax < 0 {
		errs = append(errs, fmt.Errorf("resume limits p99 %v, max %v: must not be negative", t.ResumeP99, t.ResumeMax))
	}
	return errs
}

// faultWindows returns the windows of the faults that happened: from their
// start to when every node was ready again (or, if that never came within
// the wait, to the heal; a fault never healed lasts until until).
func faultWindows(faults []report.FaultRecord, until time.Duration) []check.Window {
	var out []check.Window
	for _, f := range faults {
		if f.Started == 0 && f.Healed == 0 {
			continue // hit nothing
		}
		end := max(f.Ready, f.Healed)
		if end == 0 {
			end = until
		}
		what := string(f.Kind)
		if f.Node != "" {
			what += " " + f.Node
		}
		out = append(out, check.Window{From: f.Started, To: end, What: what})
	}
	return out
}

// judgeThresholds adds the availability and resume-time checks to rep.
// stopped is when the workloads stopped (offset from the start); sessions
// says whether the session workload ran (then every judged second must
// also deliver frames).
func judgeThresholds(rep *report.Report, th Thresholds, stopped time.Duration, sessions bool) {
	th = th.withDefaults()
	var secs []check.Second
	first := -1
	for _, s := range rep.Seconds {
		secs = append(secs, check.Second{At: s.At, Served: s.OK + s.Conflict, Frames: s.Frames})
		if first < 0 || s.At < first {
			first = s.At
		}
	}
	// The first recorded second and the one the workloads stopped in are
	// partial.
	last := int(stopped/time.Second) - 1
	first++
	lim := check.AvailabilityLimits{Grace: th.Grace, Frames: sessions}
	wins := faultWindows(rep.Faults, stopped)
	rep.AddCheck(check.AvailabilityName, check.AvailabilitySummary(secs, wins, first, last, lim),
		check.Availability(secs, wins, first, last, lim))
	if sessions {
		rs := make([]check.Resume, len(rep.Resumes))
		for i, r := range rep.Resumes {
			rs[i] = check.Resume{At: r.At, Took: r.Took}
		}
		took, excused := check.JudgedResumes(rs, wins)
		what := fmt.Sprintf("%d resumes: p99 ≤ %v, each ≤ %v", len(took), th.ResumeP99, th.ResumeMax)
		if excused > 0 {
			what += fmt.Sprintf("; %d more not judged: a later fault began while they ran", excused)
		}
		rep.AddCheck(check.ResumesName, what, check.ResumeTimes(took, th.ResumeP99, th.ResumeMax))
	}
}
