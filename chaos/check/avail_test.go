package check

import (
	"strings"
	"testing"
	"time"
)

func steady(n, served, frames int) []Second {
	out := make([]Second, n)
	for i := range out {
		out[i] = Second{At: i, Served: served, Frames: frames}
	}
	return out
}

func TestAvailabilityExcusesFaultWindowsAndCatchesStalls(t *testing.T) {
	lim := AvailabilityLimits{Grace: 2 * time.Second, Frames: true}
	faults := []Window{{From: 5 * time.Second, To: 8 * time.Second, What: "kill n2"}}
	secs := steady(30, 100, 50)
	if v := Availability(secs, faults, 1, 28, lim); len(v) != 0 {
		t.Fatalf("healthy run reported: %v", v)
	}

	// Nothing served during the fault and its grace: excused.
	for at := 5; at < 10; at++ {
		secs[at] = Second{At: at}
	}
	if v := Availability(secs, faults, 1, 28, lim); len(v) != 0 {
		t.Fatalf("an outage inside the fault window and grace was reported: %v", v)
	}

	// A stall of every session 3 s after the heal (outside the grace):
	// one violation for the stretch, naming the fault before it.
	for at := 12; at < 15; at++ {
		secs[at].Frames = 0
	}
	v := Availability(secs, faults, 1, 28, lim)
	if len(v) != 1 || !strings.Contains(v[0].What, "delivered in seconds 12–14 (3 s)") ||
		!strings.Contains(v[0].Context[0], "kill n2") {
		t.Fatalf("stall after the heal: got %v", v)
	}
	// Without the session workload the same seconds are fine.
	if v := Availability(secs, faults, 1, 28, AvailabilityLimits{Grace: 2 * time.Second}); len(v) != 0 {
		t.Fatalf("frames judged without the session workload: %v", v)
	}

	// A second missing from the record served nothing; a second with only
	// conflicts counts as served by the caller (Served includes them).
	short := append([]Second(nil), steady(30, 100, 50)[:20]...)
	short = append(short[:17], short[18:]...)
	v = Availability(short, nil, 1, 19, lim)
	if len(v) != 1 || !strings.Contains(v[0].What, "second 17") || !strings.Contains(v[0].What, "served and delivered") {
		t.Fatalf("missing second: got %v", v)
	}
	// Outside [first, last] nothing is judged.
	if v := Availability(short, nil, 18, 19, lim); len(v) != 0 {
		t.Fatalf("judged outside the range: %v", v)
	}
	if s := AvailabilitySummary(short, faults, 1, 19, lim); !strings.Contains(s, "18 of 19 seconds served") || !strings.Contains(s, "14 seconds outside") {
		t.Fatalf("summary: %s", s)
	}
}

func TestResumeTimes(t *testing.T) {
	var took []time.Duration
	for i := 0; i < 200; i++ {
		took = append(took, time.Duration(100+i)*time.Millisecond)
	}
	if v := ResumeTimes(took, 2*time.Second, 10*time.Second); len(v) != 0 {
		t.Fatalf("fast resumes reported: %v", v)
	}
	if v := ResumeTimes(nil, time.Second, time.Second); len(v) != 0 {
		t.Fatalf("no resumes reported: %v", v)
	}
	// One slow resume among 200: under p99 (nearest rank 198) but over the
	// limit for any one.
	took[7] = 12 * time.Second
	v := ResumeTimes(took, 2*time.Second, 10*time.Second)
	if len(v) != 1 || !strings.Contains(v[0].What, "a resume took 12s") {
		t.Fatalf("one slow resume: %v", v)
	}
	// Three slow ones move the p99.
	took[8], took[9] = 3*time.Second, 3*time.Second
	v = ResumeTimes(took, 2*time.Second, 10*time.Second)
	if len(v) != 2 || !strings.Contains(v[0].What, "p99 of 200 resumes is 3s") || v[0].Context[0] != "resume took 12s" {
		t.Fatalf("slow p99: %v", v)
	}
}

// A resume a later fault ran into is not judged; one that began during a
// fault, or ended before the next began, is.
func TestJudgedResumesLeaveOutThoseALaterFaultRanInto(t *testing.T) {
	s := time.Second
	faults := []Window{{From: 10 * s, To: 14 * s, What: "halves"}, {From: 16 * s, To: 20 * s, What: "isolate n3"}}
	rs := []Resume{
		{At: 11 * s, Took: 1 * s},                     // during the first fault: judged
		{At: 15 * s, Took: 3 * s},                     // after the first, into the second: left out
		{At: 14*s + 500*time.Millisecond, Took: s},    // ends before the second began: judged
		{At: 17 * s, Took: 4 * s},                     // during the second, no later fault: judged
		{At: 9 * s, Took: 1*s + 500*time.Millisecond}, // into the first fault: left out
	}
	judged, excused := JudgedResumes(rs, faults)
	if excused != 2 || len(judged) != 3 || judged[0] != s || judged[1] != s || judged[2] != 4*s {
		t.Fatalf("judged %v, %d left out; want [1s 1s 4s] and 2", judged, excused)
	}
	if v := ResumeTimes(judged, 2*s, 10*s); len(v) != 1 {
		t.Fatalf("the 4 s resume during a fault must still be judged: %v", v)
	}
}
