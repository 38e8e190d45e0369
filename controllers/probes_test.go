package controllers

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/capture"
)

// hangingProber hangs on URLs of "hang" until its context ends and fails
// "down"; it counts its probes.
type hangingProber struct{ calls atomic.Int64 }

func (h *hangingProber) Probe(ctx context.Context, c capture.SinkConfig) error {
	h.calls.Add(1)
	switch c.Loki.URL {
	case "hang":
		<-ctx.Done()
		return ctx.Err()
	case "down":
		return errors.New("connection refused")
	}
	return nil
}

func TestProbesNeverBlockTheReconcile(t *testing.T) {
	prober := &hangingProber{}
	p := newProbes(prober)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.Start(ctx) })
	defer func() { cancel(); wg.Wait() }()
	go func() { // the controller's event source
		for range p.done {
			continue
		}
	}()
	cfg := func(url string) capture.SinkConfig {
		return capture.SinkConfig{Name: "s", Kind: capture.SinkLoki, Loki: &capture.LokiConfig{URL: url}}
	}
	now := time.Now()
	start := time.Now()
	for i := range 10 {
		if ok, _ := p.result(types.NamespacedName{Namespace: "a", Name: string(rune('a' + i))}, cfg("hang"), time.Minute, now); ok {
			t.Fatal("a result before any probe finished")
		}
	}
	good := types.NamespacedName{Namespace: "b", Name: "good"}
	if ok, _ := p.result(good, cfg("fine"), time.Minute, now); ok {
		t.Fatal("a result before the probe finished")
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("asking for 11 probes took %s; a reconcile must not wait for them", d)
	}
	waitFor := func(key types.NamespacedName, c capture.SinkConfig) error {
		t.Helper()
		deadline := time.Now().Add(3 * probeTimeout)
		for time.Now().Before(deadline) {
			if ok, err := p.result(key, c, time.Minute, time.Now()); ok {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no probe result for %s", key)
		return nil
	}
	if err := waitFor(good, cfg("fine")); err != nil {
		t.Fatalf("good endpoint: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("another namespace's probe waited %s behind 10 blackholed endpoints", d)
	}
	t.Logf("a probe of another namespace finished %s after 10 blackholed ones were queued", time.Since(start).Round(time.Millisecond))
	// A changed configuration (a rotated credential, another URL) is probed
	// anew; the last result stands until then.
	down := cfg("down")
	if ok, err := p.result(good, down, time.Minute, time.Now()); !ok || err != nil {
		t.Fatalf("the last result did not stand while the new configuration is probed: %v, %v", ok, err)
	}
	deadline := time.Now().Add(3 * probeTimeout)
	for {
		if _, err := p.result(good, down, time.Minute, time.Now()); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the changed configuration was not probed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A fresh result is not probed again; a stale one is.
	calls := prober.calls.Load()
	_, _ = p.result(good, down, time.Minute, time.Now())
	time.Sleep(50 * time.Millisecond)
	if prober.calls.Load() != calls {
		t.Fatal("a fresh result was probed again")
	}
	_, _ = p.result(good, down, time.Minute, time.Now().Add(2*time.Minute))
	deadline = time.Now().Add(time.Second)
	for prober.calls.Load() == calls && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if prober.calls.Load() == calls {
		t.Fatal("a stale result was not probed again")
	}
}
