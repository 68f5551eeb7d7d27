package pktdelay

import (
	"math/rand/v2"
	"time"
)

// schedule computes when each packet is released: Delay ± Jitter after it
// was queued, but never before the previous packet (so the order is kept).
// Not safe for concurrent use.
type schedule struct {
	delay, jitter time.Duration
	rng           *rand.Rand
	last          time.Time
}

func newSchedule(delay, jitter time.Duration, seed uint64) *schedule {
	return &schedule{delay: delay, jitter: jitter, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// next returns the release time of a packet queued at now.
func (s *schedule) next(now time.Time) time.Time {
	d := s.delay
	if s.jitter > 0 {
		d += time.Duration(s.rng.Int64N(int64(2*s.jitter)+1)) - s.jitter
	}
	if d < 0 {
		d = 0
	}
	at := now.Add(d)
	if at.Before(s.last) {
		at = s.last
	}
	s.last = at
	return at
}
