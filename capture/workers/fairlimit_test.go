package workers

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestOpenLimiterIsFairBetweenNamespaces queues 60 opens of a busy namespace
// before 3 of a quiet one: the quiet one's are granted in turn, within the
// first few grants, not after the busy one's.
func TestOpenLimiterIsFairBetweenNamespaces(t *testing.T) {
	l := newFairLimiter(200, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	enqueue := func(ns string, n int) {
		for range n {
			wg.Go(func() {
				if err := l.wait(ctx, ns); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, ns)
				mu.Unlock()
			})
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	queued := func(ns string, n int) { // wait until ns has n waiters queued
		for {
			l.mu.Lock()
			got := len(l.queues[ns])
			l.mu.Unlock()
			if got == n || time.Now().After(deadline) {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	enqueue("busy", 60)
	queued("busy", 60)
	enqueue("quiet", 3)
	queued("quiet", 3)
	var runner sync.WaitGroup
	runner.Go(func() { l.run(ctx) })
	start := time.Now()
	wg.Wait()
	elapsed := time.Since(start)
	cancel()
	runner.Wait()
	last := 0
	for i, ns := range order {
		if ns == "quiet" {
			last = i
		}
	}
	t.Logf("63 opens at 200/s took %s; the quiet namespace's last open was grant %d", elapsed.Round(time.Millisecond), last+1)
	if last > 6 {
		t.Fatalf("the quiet namespace's 3 opens came as late as grant %d of %d: %v", last+1, len(order), order)
	}
	if elapsed < 250*time.Millisecond {
		t.Fatalf("63 opens at 200/s took only %s: the rate is not enforced", elapsed)
	}
}

func TestOpenLimiterCancelledWaitersDoNotHoldOthers(t *testing.T) {
	l := newFairLimiter(100, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runner sync.WaitGroup
	runner.Go(func() { l.run(ctx) })
	gone, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { _ = l.wait(gone, "a") })
	}
	stop()
	wg.Wait()
	done := make(chan error, 1)
	go func() { done <- l.wait(ctx, "a") }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a waiter behind 20 cancelled ones was not granted")
	}
	cancel()
	runner.Wait()
}

func TestOpenLimiterUnlimited(t *testing.T) {
	l := newFairLimiter(0, 0)
	for range 1000 {
		if err := l.wait(context.Background(), "a"); err != nil {
			t.Fatal(err)
		}
	}
	if l.perSecond() != 0 {
		t.Fatal("an unlimited limiter reports a rate")
	}
}
