package deployer

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestAppGateOneAtATimeInOrder(t *testing.T) {
	g := newAppGate()
	ctx := context.Background()
	release, err := g.enter(ctx, "web", 10)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []int64
	var wg sync.WaitGroup
	for _, pos := range []int64{30, 20} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, err := g.enter(ctx, "web", pos)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, pos)
			mu.Unlock()
			rel(false)
		}()
	}
	// Another application is not held up.
	other, err := g.enter(ctx, "api", 15)
	if err != nil {
		t.Fatal(err)
	}
	other(false)
	time.Sleep(50 * time.Millisecond) // both wait behind 10
	mu.Lock()
	if len(order) != 0 {
		t.Errorf("got %v running while 10 runs, want none", order)
	}
	mu.Unlock()
	release(false)
	wg.Wait()
	if len(order) != 2 || order[0] != 20 || order[1] != 30 {
		t.Errorf("got order %v, want [20 30]", order)
	}
}

func TestAppGateCancelledWaiterLeaves(t *testing.T) {
	g := newAppGate()
	release, _ := g.enter(context.Background(), "web", 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.enter(ctx, "web", 2); err == nil {
		t.Fatal("got nil, want the context's error")
	}
	release(false)
	rel, err := g.enter(context.Background(), "web", 3)
	if err != nil {
		t.Fatalf("got %v, want the gate free", err)
	}
	rel(false)
}

func TestAppGateRedeliveryKeepsItsPlace(t *testing.T) {
	g := newAppGate()
	ctx := context.Background()
	first, _ := g.enter(ctx, "web", 10)
	first(true) // nacked: delivered again later
	entered := make(chan int64, 1)
	go func() {
		rel, err := g.enter(ctx, "web", 20)
		if err == nil {
			entered <- 20
			rel(false)
		}
	}()
	select {
	case <-entered:
		t.Fatal("a later command ran while an earlier one waits for its redelivery")
	case <-time.After(50 * time.Millisecond):
	}
	again, err := g.enter(ctx, "web", 10)
	if err != nil {
		t.Fatal(err)
	}
	again(false)
	if got := <-entered; got != 20 {
		t.Fatalf("got %d, want 20", got)
	}
}

// Two copies of one command wait at once (a redelivery while the first
// copy waits behind another command); the first copy's wait is cancelled.
// The second copy still runs, in its place, once the gate is free.
func TestAppGateTwinCopiesOfOneCommand(t *testing.T) {
	g := newAppGate()
	running, _ := g.enter(context.Background(), "web", 1)
	ctx, cancel := context.WithCancel(context.Background())
	firstDone := make(chan error, 1)
	go func() {
		_, err := g.enter(ctx, "web", 5)
		firstDone <- err
	}()
	twin := make(chan error, 1)
	go func() {
		rel, err := g.enter(context.Background(), "web", 5)
		if err == nil {
			rel(false)
		}
		twin <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-firstDone; err == nil {
		t.Fatal("the cancelled copy entered")
	}
	running(false)
	select {
	case err := <-twin:
		if err != nil {
			t.Fatalf("the twin copy: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the twin copy never entered after its other copy left")
	}
	if len(g.waiting) != 0 || len(g.running) != 0 {
		t.Fatalf("gate not empty: waiting %v, running %v", g.waiting, g.running)
	}
}
