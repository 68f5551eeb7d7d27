package bench

import (
	"math"
	"math/bits"
	"time"
)

// Histogram is a log-linear bucketed histogram of non-negative int64 values
// (the benches record latencies in nanoseconds), in the style of
// HdrHistogram: values below 256 have a bucket each (exact); above, every
// power-of-two range [2^k, 2^(k+1)) is split into 128 equal sub-buckets, so a
// bucket is at most 1/128 of its lower bound wide. Quantiles report the
// midpoint of the bucket holding the requested rank, clamped to the observed
// minimum and maximum, so they are within RelativeError (1/256, about 0.4%)
// of the exact nearest-rank value. Memory is fixed (about 58 KiB); recording
// is O(1). A Histogram is not safe for concurrent use: give each goroutine
// its own and Merge them.
type Histogram struct {
	counts [numBuckets]uint64
	n      uint64
	min    int64
	max    int64
	sum    float64
}

// RelativeError bounds |Quantile(q) - exact| / exact for any recorded data.
const RelativeError = 1.0 / 256

const (
	subBits    = 7
	subCount   = 1 << subBits // sub-buckets per power of two above linearMax
	linearMax  = 2 * subCount // values below this are exact
	maxShift   = 62 - subBits // shift for values in [2^62, 2^63)
	numBuckets = linearMax + maxShift*subCount
)

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{} }

func bucketOf(v int64) int {
	if v < linearMax {
		return int(v)
	}
	k := bits.Len64(uint64(v)) - 1 // v in [2^k, 2^(k+1)), k >= subBits+1
	shift := k - subBits
	sub := int(v>>shift) - subCount // in [0, subCount)
	return linearMax + (shift-1)*subCount + sub
}

// bucketMid returns the midpoint of bucket i (its value, for exact buckets).
func bucketMid(i int) int64 {
	if i < linearMax {
		return int64(i)
	}
	j := i - linearMax
	shift := j/subCount + 1
	lo := int64(subCount+j%subCount) << shift
	return lo + (int64(1)<<shift)/2
}

// RecordValue adds one value; negative values count as 0.
func (h *Histogram) RecordValue(v int64) {
	if v < 0 {
		v = 0
	}
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if h.n == 0 || v > h.max {
		h.max = v
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
}

// Record adds one duration (in nanoseconds).
func (h *Histogram) Record(d time.Duration) { h.RecordValue(int64(d)) }

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if h.n == 0 || o.max > h.max {
		h.max = o.max
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest recorded value (0 when empty).
func (h *Histogram) Min() int64 { return h.min }

// Max returns the largest recorded value (0 when empty).
func (h *Histogram) Max() int64 { return h.max }

// Mean returns the mean of the recorded values (0 when empty).
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// ValueAtQuantile returns the nearest-rank q-quantile (q in [0, 1]): the
// value of rank ceil(q*n) in sorted order (rank 1 for q = 0), within
// RelativeError. It returns 0 when the histogram is empty.
func (h *Histogram) ValueAtQuantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	switch {
	case q <= 0 || math.IsNaN(q):
		return h.min
	case q >= 1:
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			return min(max(bucketMid(i), h.min), h.max)
		}
	}
	return h.max
}

// Quantile is ValueAtQuantile for histograms of durations.
func (h *Histogram) Quantile(q float64) time.Duration {
	return time.Duration(h.ValueAtQuantile(q))
}
