package buildlog

import (
	"context"
	"sync"
	"time"
)

// Writer batching defaults.
const (
	DefaultFlushInterval = 100 * time.Millisecond
	maxBatch             = 1000
	writerQueue          = 4096
)

// Writer collects lines, for instance from engine.Build's onLine callback,
// and appends them to one deployment's log in batches every FlushInterval or
// every 1000 lines. Line may be called from one goroutine at a time or from
// several; it blocks only when 4096 lines wait (backpressure on a slow
// database). After an append fails, later lines are dropped and Close
// returns the error.
type Writer struct {
	store    *Store
	ctx      context.Context
	id       string
	stream   string
	interval time.Duration

	mu     sync.Mutex // guards closed and sends on ch
	closed bool
	ch     chan string
	done   chan struct{}
	err    error // written by run, read after done is closed
	n      int64 // lines appended, idem
}

// NewWriter returns a Writer appending to stream (StreamBuild when empty) of
// deploymentID's log, using ctx for its appends. Call Close.
func (s *Store) NewWriter(ctx context.Context, deploymentID, stream string) *Writer {
	if stream == "" {
		stream = StreamBuild
	}
	w := &Writer{
		store: s, ctx: ctx, id: deploymentID, stream: stream, interval: DefaultFlushInterval,
		ch: make(chan string, writerQueue), done: make(chan struct{}),
	}
	go w.run()
	return w
}

// Line queues one line. It is a no-op after Close.
func (w *Writer) Line(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.ch <- s
}

// Close flushes what is queued, stops the Writer and returns the first
// append error. It does not end the log: call Store.Close for that.
func (w *Writer) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
	w.mu.Unlock()
	<-w.done
	return w.err
}

// Lines returns how many lines were appended; valid after Close.
func (w *Writer) Lines() int64 {
	<-w.done
	return w.n
}

func (w *Writer) run() {
	defer close(w.done)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	batch := make([]string, 0, maxBatch)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if w.err == nil {
			if err := w.store.AppendStream(w.ctx, w.id, w.stream, batch); err != nil {
				w.err = err
			} else {
				w.n += int64(len(batch))
			}
		}
		batch = batch[:0]
	}
	for {
		select {
		case l, ok := <-w.ch:
			if !ok {
				flush()
				return
			}
			batch = append(batch, l)
			if len(batch) >= maxBatch {
				flush()
			}
		case <-t.C:
			flush()
		}
	}
}
