package deployer

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logLine is one line queued for a deployment's log.
type logLine struct{ stream, text string }

// progressLog appends a deployment's lines (the workflow's progress, the
// build's output) to its log off the deployment's path: each append is a
// transaction, and the next step need not wait for it. Lines keep their
// order across streams: one goroutine at a time appends everything queued
// so far, a run of lines of one stream per round trip. flush waits until
// every line added before it is stored; Deploy flushes before it returns
// (the deployer seals the log next).
type progressLog struct {
	logs DeploymentLog
	id   string
	log  *slog.Logger

	mu      sync.Mutex
	queue   []logLine
	busy    bool       // a drain goroutine runs
	drained *sync.Cond // signalled when busy turns false; uses mu
}

func newProgressLog(logs DeploymentLog, id string, log *slog.Logger) *progressLog {
	p := &progressLog{logs: logs, id: id, log: log}
	p.drained = sync.NewCond(&p.mu)
	return p
}

func (p *progressLog) add(stream, line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queue = append(p.queue, logLine{stream, line})
	if !p.busy {
		p.busy = true
		go p.drain()
	}
}

func (p *progressLog) drain() {
	for {
		p.mu.Lock()
		batch := p.queue
		p.queue = nil
		if len(batch) == 0 {
			p.busy = false
			p.drained.Broadcast()
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		for len(batch) > 0 {
			n := 1
			for n < len(batch) && batch[n].stream == batch[0].stream {
				n++
			}
			lines := make([]string, n)
			for i := range n {
				lines[i] = batch[i].text
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := p.logs.AppendStream(ctx, p.id, batch[0].stream, lines); err != nil {
				p.log.Error("log lines lost", "lines", n, "err", err)
			}
			cancel()
			batch = batch[n:]
		}
	}
}

func (p *progressLog) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.busy {
		p.drained.Wait()
	}
}
