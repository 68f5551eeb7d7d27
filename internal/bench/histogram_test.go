package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactQuantile is the nearest-rank quantile of sorted data, the definition
// ValueAtQuantile approximates.
func exactQuantile(sorted []int64, q float64) int64 {
	if q <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

func TestHistogramQuantilesMatchSortedReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() int64{
		"uniform-small": func() int64 { return rng.Int64N(1000) },
		"uniform-ms":    func() int64 { return rng.Int64N(int64(50 * time.Millisecond)) },
		"lognormal": func() int64 {
			return int64(math.Exp(rng.NormFloat64()*1.5 + math.Log(float64(5*time.Millisecond))))
		},
		"exponential": func() int64 { return int64(rng.ExpFloat64() * float64(2*time.Millisecond)) },
		"wide": func() int64 {
			return int64(math.Pow(10, rng.Float64()*12)) // 1 ns .. 1000 s
		},
		"bimodal": func() int64 {
			if rng.IntN(100) == 0 {
				return int64(200*time.Millisecond) + rng.Int64N(int64(time.Millisecond))
			}
			return int64(time.Millisecond) + rng.Int64N(int64(time.Millisecond))
		},
	}
	qs := []float64{0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			for _, n := range []int{1, 2, 7, 1000, 100000} {
				h := NewHistogram()
				vals := make([]int64, n)
				for i := range vals {
					vals[i] = gen()
					h.RecordValue(vals[i])
				}
				slices.Sort(vals)
				if h.Count() != uint64(n) || h.Min() != vals[0] || h.Max() != vals[n-1] {
					t.Fatalf("n=%d: count/min/max = %d/%d/%d, want %d/%d/%d", n, h.Count(), h.Min(), h.Max(), n, vals[0], vals[n-1])
				}
				for _, q := range qs {
					want := exactQuantile(vals, q)
					got := h.ValueAtQuantile(q)
					if diff := math.Abs(float64(got - want)); diff > float64(want)*RelativeError {
						t.Errorf("n=%d q=%v: got %d, exact %d: error %.4f%% > %.4f%%",
							n, q, got, want, 100*diff/float64(want), 100*RelativeError)
					}
				}
			}
		})
	}
}

func TestHistogramStatedErrorIsUnderOnePercent(t *testing.T) {
	if RelativeError > 0.01 {
		t.Fatalf("RelativeError = %v, the bench promises at most 1%%", RelativeError)
	}
}

func TestHistogramBucketsCoverInt64(t *testing.T) {
	for _, v := range []int64{0, 1, 255, 256, 257, 511, 512, 1 << 40, math.MaxInt64} {
		b := bucketOf(v)
		if b < 0 || b >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside [0, %d)", v, b, numBuckets)
		}
		if mid := bucketMid(b); math.Abs(float64(mid-v)) > float64(v)*RelativeError {
			t.Errorf("bucketMid(bucketOf(%d)) = %d: too far", v, mid)
		}
	}
	// Buckets are monotonic in the value.
	prev := -1
	for v := int64(0); v < 1<<20; v += 37 {
		b := bucketOf(v)
		if b < prev {
			t.Fatalf("bucketOf(%d) = %d < %d", v, b, prev)
		}
		prev = b
	}
}

func TestHistogramMergeEqualsCombined(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	for range 5000 {
		v := rng.Int64N(int64(time.Second))
		a.RecordValue(v)
		all.RecordValue(v)
	}
	for range 3000 {
		v := rng.Int64N(int64(time.Millisecond))
		b.RecordValue(v)
		all.RecordValue(v)
	}
	m := NewHistogram()
	m.Merge(a)
	m.Merge(NewHistogram()) // empty: no effect on min
	m.Merge(b)
	if *m != *all {
		t.Fatalf("merged histogram differs from the combined one: count %d/%d min %d/%d max %d/%d",
			m.Count(), all.Count(), m.Min(), all.Min(), m.Max(), all.Max())
	}
}

func TestHistogramEmptyAndNegative(t *testing.T) {
	h := NewHistogram()
	if h.ValueAtQuantile(0.5) != 0 || h.Mean() != 0 || h.Count() != 0 {
		t.Fatal("empty histogram must report zeros")
	}
	h.Record(-time.Second)
	if h.Min() != 0 || h.Max() != 0 || h.ValueAtQuantile(0.99) != 0 {
		t.Fatalf("negative values must count as 0; min %d max %d", h.Min(), h.Max())
	}
	h.Record(3 * time.Millisecond)
	if got := h.Mean(); got != float64(3*time.Millisecond)/2 {
		t.Fatalf("mean = %v", got)
	}
}
