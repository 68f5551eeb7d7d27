package pktdelay

import (
	"testing"
	"time"
)

func TestScheduleKeepsOrderWithinBounds(t *testing.T) {
	s := newSchedule(150*time.Millisecond, 50*time.Millisecond, 7)
	start := time.Unix(1000, 0)
	var prev time.Time
	var early, late int
	for i := range 10000 {
		// Bursts of 10 packets 100 µs apart, bursts 300 ms apart: within a
		// burst the order rule binds, across bursts the draw shows.
		now := start.Add(time.Duration(i/10)*300*time.Millisecond + time.Duration(i%10)*100*time.Microsecond)
		at := s.next(now)
		if at.Before(prev) {
			t.Fatalf("packet %d released at %v, before the one queued earlier (%v)", i, at, prev)
		}
		if d := at.Sub(now); d < 100*time.Millisecond || d > 200*time.Millisecond {
			t.Fatalf("packet %d delayed %v, outside Delay ± Jitter", i, d)
		} else if d < 150*time.Millisecond {
			early++
		} else {
			late++
		}
		prev = at
	}
	// Jitter is drawn, not constant: some packets are released earlier
	// than Delay after they were queued and the max() keeps others later.
	if early == 0 || late == 0 {
		t.Fatalf("no spread in delays: %d under 150 ms, %d at or over", early, late)
	}
}

func TestScheduleWithoutJitterIsExact(t *testing.T) {
	s := newSchedule(20*time.Millisecond, 0, 1)
	now := time.Unix(5, 0)
	if got := s.next(now).Sub(now); got != 20*time.Millisecond {
		t.Fatalf("delay %v, want 20ms", got)
	}
}

func TestScheduleSameSeedSameDelays(t *testing.T) {
	a, b := newSchedule(100*time.Millisecond, 40*time.Millisecond, 3), newSchedule(100*time.Millisecond, 40*time.Millisecond, 3)
	now := time.Unix(9, 0)
	for i := range 100 {
		n := now.Add(time.Duration(i) * time.Second)
		if x, y := a.next(n), b.next(n); !x.Equal(y) {
			t.Fatalf("packet %d: %v vs %v with the same seed", i, x, y)
		}
	}
}
