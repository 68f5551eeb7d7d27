package fsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// StreamInfo is a stream's current state.
type StreamInfo struct {
	Exists  bool   // claimed or appended to at least once
	Version uint64 // number of events (0: none yet)
	Epoch   uint64 // current activation epoch (0: never claimed)
}

// errUnavailable is returned by reads while the store needs a restore.
var errUnavailable = fmt.Errorf("%w: fsm: the event store is being restored from a snapshot", ErrUnavailable)

// Every read follows the same protocol against restores: readBegin loads
// the restore sequence (odd: unavailable), the read takes its Pebble view (an
// iterator or a point Get: fixed at creation), and readEnd checks that the
// sequence has not moved. Restore moves the sequence before its first write
// and after its last, so a view that saw any part of a restore fails the
// check, and a restore that completed before readBegin is entirely visible.

func (f *FSM) readBegin() (uint64, error) {
	seq := f.restoreSeq.Load()
	if seq&1 == 1 {
		return 0, errUnavailable
	}
	return seq, nil
}

func (f *FSM) readEnd(seq uint64) error {
	if f.restoreSeq.Load() != seq {
		return errUnavailable
	}
	return nil
}

// Stream returns a stream's state. A stream that does not exist is not an
// error: Exists is false. Errors: ErrInvalid (bad stream id), ErrUnavailable.
func (f *FSM) Stream(stream string) (StreamInfo, error) {
	if err := validateStream(stream, f.limits); err != nil {
		return StreamInfo{}, err
	}
	seq, err := f.readBegin()
	if err != nil {
		return StreamInfo{}, err
	}
	v, closer, err := f.db.Get(f.keys.stream(nil, stream))
	if errors.Is(err, pebble.ErrNotFound) {
		return StreamInfo{}, f.readEnd(seq)
	}
	if err != nil {
		return StreamInfo{}, fmt.Errorf("fsm: read stream %q: %w", stream, err)
	}
	m, err := decodeStreamMeta(v)
	_ = closer.Close()
	if err := f.readEnd(seq); err != nil {
		return StreamInfo{}, err
	}
	if err != nil {
		return StreamInfo{}, fmt.Errorf("fsm: stream %q: stored meta is corrupt: %w", stream, err)
	}
	return StreamInfo{Exists: true, Version: m.Version, Epoch: m.Epoch}, nil
}

// ReadStream returns up to max events of a stream in version order, starting
// at fromVersion (0 and 1 both mean the first event). A stream without events
// (or that does not exist) gives an empty result, not an error. The result
// never aliases Pebble memory. Errors: ErrInvalid (bad stream id, max < 1),
// ErrUnavailable.
func (f *FSM) ReadStream(stream string, fromVersion uint64, max int) ([]RecordedEvent, error) {
	if err := validateStream(stream, f.limits); err != nil {
		return nil, err
	}
	if max < 1 {
		return nil, fmt.Errorf("%w: max is %d, must be at least 1", ErrInvalid, max)
	}
	if fromVersion == 0 {
		fromVersion = 1
	}
	prefix := f.keys.versionPrefix(nil, stream)
	seq, err := f.readBegin()
	if err != nil {
		return nil, err
	}
	vit, err := f.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: successor(prefix)})
	if err != nil {
		return nil, fmt.Errorf("fsm: read stream %q: %w", stream, err)
	}
	defer vit.Close()
	evLower := f.keys.ns(nil, nsEvent)
	// The clone reads the same view as vit.
	git, err := vit.Clone(pebble.CloneOptions{IterOptions: &pebble.IterOptions{LowerBound: evLower, UpperBound: successor(evLower)}})
	if err != nil {
		return nil, fmt.Errorf("fsm: read stream %q: %w", stream, err)
	}
	defer git.Close()
	if err := f.readEnd(seq); err != nil {
		return nil, err
	}

	var out []RecordedEvent
	var key []byte
	// Start at the entry holding fromVersion: the last one whose first
	// version is not after it.
	var ok bool
	if fromVersion == math.MaxUint64 {
		ok = vit.Last()
	} else {
		ok = vit.SeekLT(f.keys.version(nil, stream, fromVersion+1))
	}
	if !ok {
		ok = vit.First()
	}
	for ; ok && len(out) < max; ok = vit.Next() {
		vk := vit.Key()
		if len(vk) != len(prefix)+8 {
			return nil, fmt.Errorf("fsm: read stream %q: corrupt version key %x", stream, vk)
		}
		version := binary.BigEndian.Uint64(vk[len(prefix):])
		pv, err := vit.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("fsm: read stream %q: %w", stream, err)
		}
		first, n, err := decodeVersionEntry(pv)
		if err != nil {
			return nil, fmt.Errorf("fsm: stream %q version %d: %w", stream, version, err)
		}
		for i := uint64(0); i < n && len(out) < max; i++ {
			v, pos := version+i, first+i
			if v < fromVersion {
				continue
			}
			key = f.keys.event(key[:0], pos)
			if !git.SeekGE(key) || !bytes.Equal(git.Key(), key) {
				if err := git.Error(); err != nil {
					return nil, fmt.Errorf("fsm: read stream %q: %w", stream, err)
				}
				return nil, fmt.Errorf("fsm: stream %q version %d: event at position %d is missing", stream, v, pos)
			}
			ev, err := f.decodeAt(git, pos)
			if err != nil {
				return nil, err
			}
			if ev.Stream != stream || ev.Version != v {
				return nil, fmt.Errorf("fsm: stream %q version %d: position %d holds stream %q version %d", stream, v, pos, ev.Stream, ev.Version)
			}
			out = append(out, ev)
		}
	}
	if err := vit.Error(); err != nil {
		return nil, fmt.Errorf("fsm: read stream %q: %w", stream, err)
	}
	return out, nil
}

// ReadAll returns events in global position order starting at fromPosition (0
// and 1 both mean the first event): up to max events and, if maxBytes > 0, up
// to maxBytes bytes of Type+Data+Meta, but always at least one event if there
// is one (so a reader always makes progress). The result never aliases Pebble
// memory. Events recently applied are served from memory (tail.go): their
// Data and Meta may be shared with other readers and must not be modified.
// Errors: ErrInvalid (max < 1), ErrUnavailable.
func (f *FSM) ReadAll(fromPosition uint64, max int, maxBytes int) ([]RecordedEvent, error) {
	if max < 1 {
		return nil, fmt.Errorf("%w: max is %d, must be at least 1", ErrInvalid, max)
	}
	if fromPosition == 0 {
		fromPosition = 1
	}
	if f.restoreSeq.Load()%2 == 0 {
		// Readers that keep up with the log are served from memory.
		if evs, ok := f.tail.read(fromPosition, max, maxBytes); ok {
			f.metrics.tailReads.Inc()
			return evs, nil
		}
	}
	lower := f.keys.ns(nil, nsEvent)
	seq, err := f.readBegin()
	if err != nil {
		return nil, err
	}
	it, err := f.db.NewIter(&pebble.IterOptions{
		LowerBound: f.keys.event(nil, fromPosition),
		UpperBound: successor(lower),
	})
	if err != nil {
		return nil, fmt.Errorf("fsm: read all: %w", err)
	}
	defer it.Close()
	if err := f.readEnd(seq); err != nil {
		return nil, err
	}
	var out []RecordedEvent
	size := 0
	for ok := it.First(); ok && len(out) < max; ok = it.Next() {
		k := it.Key()
		if len(k) != 2+8 {
			return nil, fmt.Errorf("fsm: read all: corrupt event key %x", k)
		}
		ev, err := f.decodeAt(it, binary.BigEndian.Uint64(k[2:]))
		if err != nil {
			return nil, err
		}
		s := len(ev.Type) + len(ev.Data) + len(ev.Meta)
		if maxBytes > 0 && len(out) > 0 && size+s > maxBytes {
			break
		}
		size += s
		out = append(out, ev)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("fsm: read all: %w", err)
	}
	return out, nil
}

func (f *FSM) decodeAt(it *pebble.Iterator, pos uint64) (RecordedEvent, error) {
	v, err := it.ValueAndErr()
	if err != nil {
		return RecordedEvent{}, fmt.Errorf("fsm: read event at position %d: %w", pos, err)
	}
	ev, err := decodeRecordedEvent(pos, v)
	if err != nil {
		return RecordedEvent{}, fmt.Errorf("fsm: event at position %d is corrupt: %w", pos, err)
	}
	return ev, nil
}

// Notify returns a channel that is closed after the next batch is applied (or
// a Restore completes). Obtain a new channel after it fires. Typical use:
//
//	for {
//		ch := f.Notify()
//		if condition() { break }
//		<-ch
//	}
func (f *FSM) Notify() <-chan struct{} {
	f.notifyMu.Lock()
	defer f.notifyMu.Unlock()
	return f.notifyCh
}

func (f *FSM) wake() {
	f.notifyMu.Lock()
	close(f.notifyCh)
	f.notifyCh = make(chan struct{})
	f.notifyMu.Unlock()
}

// WaitApplied blocks until AppliedIndex() >= index or ctx ends (then it
// returns ctx.Err()). index must be that of a command or configuration entry
// (raft does not pass barriers and no-ops to the FSM), e.g. the Index() of an
// ApplyFuture.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	return f.wait(ctx, func() bool { return f.applied.Load() >= index })
}

// WaitPosition blocks until LastPosition() >= pos or ctx ends (then it returns
// ctx.Err()).
func (f *FSM) WaitPosition(ctx context.Context, pos uint64) error {
	return f.wait(ctx, func() bool { return f.lastPos.Load() >= pos })
}

func (f *FSM) wait(ctx context.Context, done func() bool) error {
	for {
		ch := f.Notify()
		if done() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
