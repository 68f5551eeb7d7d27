package projections

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"

	"github.com/switchboard-io/switchboard/events"
	"github.com/switchboard-io/switchboard/events/raftstore"
)

// Writer is a projection's view of one batch: its keys are relative to the
// projection's generation, and Get sees the batch's own writes.
type Writer struct {
	db      pebble.Reader           // the committed views
	written map[string]written      // this batch's writes (the last of each key), for Get
	reads   map[string]written      // committed values read before (runner.reads); del = absent
	sorted  *raftstore.SortedWrites // this batch's writes, committed in key order
	prefix  []byte
	r       *runner
	buf     []byte
}

type written struct {
	v   []byte
	del bool
}

func (w *Writer) key(k []byte) []byte {
	w.buf = append(append(w.buf[:0], w.prefix...), k...)
	return w.buf
}

// Set writes key = value (both copied).
func (w *Writer) Set(key, value []byte) error {
	k := w.key(key)
	w.written[string(k)] = written{v: w.sorted.Set(k, value)}
	return nil
}

// Delete removes key.
func (w *Writer) Delete(key []byte) error {
	k := w.key(key)
	w.sorted.Delete(k)
	w.written[string(k)] = written{del: true}
	return nil
}

// Get returns a copy of key's value, including writes earlier in this batch.
func (w *Writer) Get(key []byte) ([]byte, bool, error) {
	k := w.key(key)
	if x, ok := w.written[string(k)]; ok {
		if x.del {
			return nil, false, nil
		}
		return append([]byte(nil), x.v...), true, nil
	}
	if x, ok := w.reads[string(k)]; ok {
		if x.del {
			return nil, false, nil
		}
		return append([]byte(nil), x.v...), true, nil
	}
	if len(w.reads) >= maxCachedReads {
		clear(w.reads)
	}
	v, closer, err := w.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		w.reads[string(k)] = written{del: true}
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("projections: get: %w", err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	w.reads[string(k)] = written{v: out}
	return append([]byte(nil), out...), true, nil
}

// Skip records that ev could not be folded (undecodable or inconsistent
// data): it is logged and counted, and the projection goes on.
func (w *Writer) Skip(ev events.RecordedEvent, err error) {
	w.r.skipped.Add(1)
	w.r.e.metrics.skipped.WithLabelValues(w.r.st.p.Name()).Inc()
	w.r.e.log.Warn("projection skipped an event", "projection", w.r.st.p.Name(), "position", ev.Position,
		"stream", ev.Stream, "type", ev.Type, slog.Any("err", err))
}

// Reader reads one snapshot of a projection's active generation.
type Reader struct {
	r      pebble.Reader
	prefix []byte
	name   string
}

// Get returns a copy of key's value.
func (r *Reader) Get(key []byte) ([]byte, bool, error) {
	k := append(append([]byte(nil), r.prefix...), key...)
	v, closer, err := r.r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("projections: %s: get: %w", r.name, err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, true, nil
}

// Scan calls fn for the keys in [lower, upper) (relative keys; nil upper =
// to the end of the projection), ascending or, with reverse, descending, until
// fn returns false or an error. k and v are valid only during the call.
func (r *Reader) Scan(lower, upper []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	lo := append(append([]byte(nil), r.prefix...), lower...)
	var hi []byte
	if upper == nil {
		hi = prefixEnd(r.prefix)
	} else {
		hi = append(append([]byte(nil), r.prefix...), upper...)
	}
	it, err := r.r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("projections: %s: scan: %w", r.name, err)
	}
	defer it.Close()
	n := len(r.prefix)
	var ok bool
	if reverse {
		ok = it.Last()
	} else {
		ok = it.First()
	}
	for ok {
		more, err := fn(it.Key()[n:], it.Value())
		if err != nil {
			return err
		}
		if !more {
			break
		}
		if reverse {
			ok = it.Prev()
		} else {
			ok = it.Next()
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("projections: %s: scan: %w", r.name, err)
	}
	return nil
}

// ScanPrefix is Scan over every key starting with prefix.
func (r *Reader) ScanPrefix(prefix []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	end := prefixEnd(prefix)
	if len(prefix) == 0 {
		end = nil
	}
	return r.Scan(prefix, end, reverse, fn)
}
