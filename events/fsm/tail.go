package fsm

import "sync"

// Bounds of the tail: at most this many events and payload bytes.
const (
	tailEvents = 8192
	tailBytes  = 16 << 20
)

// tail keeps the most recently applied events in memory, so that readers
// of the global log that keep up with it (every node's projections, which
// fold every event) get them without reading them back from Pebble and
// decoding them again.
//
// Contract: it holds a contiguous run of positions ending at the last one
// pushed; push of a batch that does not continue that run (after a restore)
// starts a new run; read serves a request only when its first position is
// inside the run and answers exactly what ReadAll would (the same events,
// in order, bounded the same way), else reports a miss. Events handed out
// share their Data and Meta with the tail and with other readers: nobody
// may modify them.
type tail struct {
	mu       sync.RWMutex
	evs      []RecordedEvent // ring of capacity maxEvents
	start    int             // index in evs of the oldest event
	n        int             // events held
	bytes    int             // payload bytes held (type + data + meta)
	maxBytes int
}

func newTail(maxEvents, maxBytes int) *tail {
	return &tail{evs: make([]RecordedEvent, maxEvents), maxBytes: maxBytes}
}

func evSize(e *RecordedEvent) int { return len(e.Type) + len(e.Data) + len(e.Meta) }

// reset forgets every event (a restore replaced the store).
func (t *tail) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.evs)
	t.start, t.n, t.bytes = 0, 0, 0
}

// push appends a batch of events with consecutive positions.
func (t *tail) push(batch []RecordedEvent) {
	if len(batch) == 0 || len(t.evs) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n > 0 && t.at(t.n-1).Position+1 != batch[0].Position {
		clear(t.evs)
		t.start, t.n, t.bytes = 0, 0, 0
	}
	for i := range batch {
		for t.n > 0 && (t.n == len(t.evs) || t.bytes+evSize(&batch[i]) > t.maxBytes) {
			t.bytes -= evSize(&t.evs[t.start])
			t.evs[t.start] = RecordedEvent{}
			t.start = (t.start + 1) % len(t.evs)
			t.n--
		}
		t.evs[(t.start+t.n)%len(t.evs)] = batch[i]
		t.n++
		t.bytes += evSize(&batch[i])
	}
}

func (t *tail) at(i int) *RecordedEvent { return &t.evs[(t.start+i)%len(t.evs)] }

// read returns up to max events from position from on, at most maxBytes of
// payload (0: no bound; the first event always), and whether it could
// answer: from must be held.
func (t *tail) read(from uint64, max, maxBytes int) ([]RecordedEvent, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.n == 0 {
		return nil, false
	}
	first := t.at(0).Position
	if from < first || from > t.at(t.n-1).Position {
		return nil, false
	}
	i := int(from - first)
	out := make([]RecordedEvent, 0, min(max, t.n-i))
	size := 0
	for ; i < t.n && len(out) < max; i++ {
		e := t.at(i)
		s := evSize(e)
		if maxBytes > 0 && len(out) > 0 && size+s > maxBytes {
			break
		}
		size += s
		out = append(out, *e)
	}
	return out, true
}
