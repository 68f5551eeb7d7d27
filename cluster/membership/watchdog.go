package membership

import "time"

// watchdogTick is how often the pause watchdog wakes up.
const watchdogTick = 50 * time.Millisecond

// pauseDetector notices gaps in this process's execution: SIGSTOP, a VM
// freeze, heavy swapping. It is fed the time of each tick of a ticker that
// should fire every watchdogTick; a gap longer than threshold between two
// ticks means the process (or at least its scheduler) did not run, so it
// neither answered probes nor refuted suspicion for that long. Times must
// carry Go's monotonic reading (time.Now does), so wall-clock steps are not
// mistaken for pauses.
type pauseDetector struct {
	threshold time.Duration
	last      time.Time
}

// observe records a tick at now and returns the gap since the previous tick
// and whether it exceeds the threshold. The first call only starts the clock.
func (p *pauseDetector) observe(now time.Time) (gap time.Duration, paused bool) {
	if p.last.IsZero() {
		p.last = now
		return 0, false
	}
	gap = now.Sub(p.last)
	p.last = now
	return gap, gap > p.threshold
}

// runWatchdog ticks until stop is closed and calls onPause for each gap over
// the threshold.
func runWatchdog(threshold time.Duration, stop <-chan struct{}, onPause func(gap time.Duration)) {
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	p := pauseDetector{threshold: threshold}
	p.observe(time.Now())
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			// The tick's own timestamp (t.C's value) is when the timer fired,
			// not when this goroutine ran; a pause delays the latter.
			if gap, paused := p.observe(time.Now()); paused {
				onPause(gap)
			}
		}
	}
}
