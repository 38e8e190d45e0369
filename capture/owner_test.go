package capture

import (
	"context"
	"sync"
	"testing"
)

// countingOwner is an Owner that counts and waits like the engine's groups.
type countingOwner struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	started int
}

func (o *countingOwner) Go(f func(ctx context.Context)) {
	o.mu.Lock()
	o.started++
	o.mu.Unlock()
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		f(context.Background())
	}()
}

func TestGoStartsThroughTheOwnerInContext(t *testing.T) {
	if Go(context.Background(), func(context.Context) { t.Error("started without an owner") }) {
		t.Fatal("Go reported a start without an owner")
	}
	o := &countingOwner{}
	ctx := WithOwner(context.Background(), o)
	nested := make(chan bool, 1)
	if !Go(ctx, func(ctx context.Context) {
		nested <- Go(ctx, func(context.Context) {})
	}) {
		t.Fatal("Go did not start through the owner")
	}
	if !<-nested {
		t.Fatal("a goroutine started through the owner could not start another")
	}
	o.wg.Wait()
	if o.started != 2 {
		t.Fatalf("the owner started %d goroutines, want 2", o.started)
	}
}
