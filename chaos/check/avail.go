package check

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Names of the threshold checkers.
const (
	AvailabilityName = "availability"
	ResumesName      = "resume-times"
)

// Window is a span of a run, as offsets from its start, during which a fault
// was active: from its injection to its heal (the end of the heal, once the
// node was back). What describes it for messages ("kill n2").
type Window struct {
	From, To time.Duration
	What     string
}

// Second is what the workloads completed in one second of a run (At: seconds
// since the start). Served counts log operations a node answered, conflicts
// included (a conflict is an answer); Frames counts durable session frames
// delivered to a participant.
type Second struct {
	At     int
	Served int
	Frames int
}

// AvailabilityLimits is what the availability checker demands.
type AvailabilityLimits struct {
	// Grace is how long after a fault healed the cluster may still be
	// unavailable (a new election, a failure detector noticing the node is
	// back, clients' backoff).
	Grace time.Duration
	// Frames: the session workload ran, so every judged second must also
	// deliver a durable frame (a second without one is a stall of every
	// session at once).
	Frames bool
}

// Availability checks that the cluster served every second of the run that
// no fault explains. The judged seconds are those of [first, last] (the
// caller excludes the workloads' partial first and last seconds) that do not
// overlap a fault window extended by Grace; each must have served at least
// one log operation and, with Limits.Frames, delivered at least one frame.
// A second missing from secs served nothing. Consecutive bad seconds are
// reported as one violation, with the fault that ended last before them.
func Availability(secs []Second, faults []Window, first, last int, lim AvailabilityLimits) []Violation {
	by := make(map[int]Second, len(secs))
	for _, s := range secs {
		by[s.At] = s
	}
	var out []Violation
	var run []int // the current stretch of bad seconds
	var why []string
	flush := func() {
		if len(run) == 0 {
			return
		}
		what := fmt.Sprintf("nothing %s in second %d", strings.Join(why, " and "), run[0])
		if len(run) > 1 {
			what = fmt.Sprintf("nothing %s in seconds %d–%d (%d s)", strings.Join(why, " and "), run[0], run[len(run)-1], len(run))
		}
		what += ", outside every fault window (+" + lim.Grace.String() + " grace)"
		ctx := []string{previousFault(faults, run[0])}
		for _, at := range []int{run[0] - 1, run[len(run)-1] + 1} {
			if s, ok := by[at]; ok {
				ctx = append(ctx, fmt.Sprintf("second %d: %d operations served, %d frames", at, s.Served, s.Frames))
			}
		}
		out = append(out, Violation{Check: AvailabilityName, What: what, Context: ctx})
		run, why = nil, nil
	}
	for at := first; at <= last; at++ {
		if excused(faults, at, lim.Grace) {
			flush()
			continue
		}
		s := by[at]
		var missing []string
		if s.Served == 0 {
			missing = append(missing, "served")
		}
		if lim.Frames && s.Frames == 0 {
			missing = append(missing, "delivered")
		}
		if len(missing) == 0 {
			flush()
			continue
		}
		if len(run) > 0 && !slices.Equal(missing, why) {
			flush()
		}
		run, why = append(run, at), missing
	}
	flush()
	return out
}

// excused reports whether second at overlaps a fault window extended by
// grace.
func excused(faults []Window, at int, grace time.Duration) bool {
	from, to := time.Duration(at)*time.Second, time.Duration(at+1)*time.Second
	for _, w := range faults {
		if from < w.To+grace && w.From < to {
			return true
		}
	}
	return false
}

// previousFault names the fault that healed last before second at.
func previousFault(faults []Window, at int) string {
	t := time.Duration(at) * time.Second
	best := -1
	for i, w := range faults {
		if w.To <= t && (best < 0 || w.To > faults[best].To) {
			best = i
		}
	}
	if best < 0 {
		return "no fault before it"
	}
	w := faults[best]
	return fmt.Sprintf("last fault before it: %s, %v–%v", w.What, w.From.Round(time.Millisecond), w.To.Round(time.Millisecond))
}

// AvailabilitySummary says what Availability judged, for the report.
func AvailabilitySummary(secs []Second, faults []Window, first, last int, lim AvailabilityLimits) string {
	judged, served := 0, 0
	by := make(map[int]Second, len(secs))
	for _, s := range secs {
		by[s.At] = s
	}
	for at := first; at <= last; at++ {
		if by[at].Served > 0 {
			served++
		}
		if !excused(faults, at, lim.Grace) {
			judged++
		}
	}
	total := max(last-first+1, 0)
	return fmt.Sprintf("%d of %d seconds served log operations; %d seconds outside fault windows (+%v) judged", served, total, judged, lim.Grace)
}

// Resume is one session client's resume: when it noticed the failure (from
// the start of the run) and how long the resume took.
type Resume struct {
	At, Took time.Duration
}

// JudgedResumes returns the times of the resumes that ResumeTimes judges:
// all but those a later fault ran into (a fault window that began after the
// resume did and before it ended: its time is that fault's too), and how
// many were left out.
func JudgedResumes(rs []Resume, faults []Window) (judged []time.Duration, excused int) {
	for _, r := range rs {
		hit := false
		for _, w := range faults {
			if w.From > r.At && w.From < r.At+r.Took {
				hit = true
				break
			}
		}
		if hit {
			excused++
			continue
		}
		judged = append(judged, r.Took)
	}
	return judged, excused
}

// ResumeTimes checks session clients' resume times (from noticing a failure
// to the welcome of the resume on another connection): their 99th
// percentile (nearest rank) must not exceed p99, and none may exceed most.
func ResumeTimes(took []time.Duration, p99, most time.Duration) []Violation {
	if len(took) == 0 {
		return nil
	}
	ds := slices.Clone(took)
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := ds[nearestRank(len(ds), 0.99)]
	var ctx []string
	for i := len(ds) - 1; i >= 0 && i >= len(ds)-5; i-- {
		ctx = append(ctx, fmt.Sprintf("resume took %v", ds[i].Round(time.Millisecond)))
	}
	var out []Violation
	if q > p99 {
		out = append(out, Violation{Check: ResumesName, Context: ctx,
			What: fmt.Sprintf("p99 of %d resumes is %v, over the limit of %v", len(ds), q.Round(time.Millisecond), p99)})
	}
	if mx := ds[len(ds)-1]; mx > most {
		out = append(out, Violation{Check: ResumesName, Context: ctx,
			What: fmt.Sprintf("a resume took %v, over the limit of %v for any one", mx.Round(time.Millisecond), most)})
	}
	return out
}

// nearestRank is the index of quantile q among n sorted values.
func nearestRank(n int, q float64) int {
	i := int(float64(n)*q+0.999999999) - 1
	return min(max(i, 0), n-1)
}
