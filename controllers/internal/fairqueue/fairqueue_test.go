package fairqueue

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// keyOf keys "ns/name" strings by ns.
func keyOf(s string) string {
	ns, _, _ := strings.Cut(s, "/")
	return ns
}

// popAll pops q until it is empty.
func popAll(q *Queue[string]) []string {
	var out []string
	for q.Len() > 0 {
		out = append(out, q.Pop())
	}
	return out
}

// checkEmpty fails unless q holds no items, keys or ring entries.
func checkEmpty(t *testing.T, q *Queue[string]) {
	t.Helper()
	if q.Len() != 0 || len(q.fifos) != 0 || q.ring.len() != 0 {
		t.Fatalf("drained queue still holds something: len %d, keys %d, ring %d", q.Len(), len(q.fifos), q.ring.len())
	}
}

func TestQueueOrder(t *testing.T) {
	tests := []struct {
		name string
		push []string
		want []string
	}{
		{
			name: "empty",
		},
		{
			name: "FIFO within one key",
			push: []string{"a/1", "a/2", "a/3", "a/4"},
			want: []string{"a/1", "a/2", "a/3", "a/4"},
		},
		{
			name: "round-robin across keys, each FIFO",
			push: []string{"a/1", "a/2", "a/3", "b/1", "b/2", "c/1"},
			want: []string{"a/1", "b/1", "c/1", "a/2", "b/2", "a/3"},
		},
		{
			name: "keys served in the order they first got items",
			push: []string{"c/1", "a/1", "b/1", "a/2", "c/2"},
			want: []string{"c/1", "a/1", "b/1", "c/2", "a/2"},
		},
		{
			name: "the empty key is a key like any other",
			push: []string{"/cluster1", "/cluster2", "a/1"},
			want: []string{"/cluster1", "a/1", "/cluster2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := New(keyOf)
			for _, s := range tt.push {
				q.Push(s)
			}
			if q.Len() != len(tt.push) {
				t.Fatalf("Len() = %d after %d pushes", q.Len(), len(tt.push))
			}
			if got := popAll(q); !slices.Equal(got, tt.want) {
				t.Fatalf("pop order = %q, want %q", got, tt.want)
			}
			checkEmpty(t, q)
		})
	}
}

// TestQueueInterleaved pushes and pops in turn: "+x" pushes x, "-x" pops and
// expects x.
func TestQueueInterleaved(t *testing.T) {
	tests := []struct {
		name string
		ops  []string
	}{
		{
			name: "a key re-added after it emptied joins the ring at its end",
			ops:  []string{"+a/1", "+b/1", "+b/2", "-a/1", "-b/1", "+a/2", "-b/2", "-a/2", "+a/3", "-a/3"},
		},
		{
			name: "a key re-added after it emptied waits behind the keys queued meanwhile",
			ops:  []string{"+a/1", "+b/1", "-a/1", "+c/1", "+a/2", "-b/1", "-c/1", "-a/2"},
		},
		{
			name: "a new key is served after the keys already in the ring",
			ops:  []string{"+a/1", "+a/2", "+b/1", "+b/2", "-a/1", "+c/1", "-b/1", "-a/2", "-c/1", "-b/2"},
		},
		{
			name: "Touch keeps the item's place",
			ops:  []string{"+a/1", "+a/2", "+b/1", "~a/1", "~b/1", "-a/1", "-b/1", "-a/2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := New(keyOf)
			for i, op := range tt.ops {
				switch item := op[1:]; op[0] {
				case '+':
					q.Push(item)
				case '~':
					q.Touch(item)
				case '-':
					if got := q.Pop(); got != item {
						t.Fatalf("op %d (%s): popped %q", i, op, got)
					}
				}
			}
			checkEmpty(t, q)
		})
	}
}

func TestQueueBusyKeyDoesNotStarveAnother(t *testing.T) {
	q := New(keyOf)
	for i := range 1000 {
		q.Push(fmt.Sprintf("a/%d", i))
	}
	q.Push("b/0")
	first := []string{q.Pop(), q.Pop()}
	if !slices.Contains(first, "b/0") {
		t.Fatalf("first two pops = %q, want b/0 among them", first)
	}
	rest := popAll(q)
	if len(rest) != 999 {
		t.Fatalf("popped %d more items, want 999", len(rest))
	}
	for i, s := range rest {
		if want := fmt.Sprintf("a/%d", i+1); s != want {
			t.Fatalf("pop %d = %q, want %q (FIFO within a)", i+2, s, want)
		}
	}
	checkEmpty(t, q)
}

func TestQueuePopEmpty(t *testing.T) {
	q := New(keyOf)
	if got := q.Pop(); got != "" {
		t.Fatalf("Pop() on an empty queue = %q, want the zero value", got)
	}
	checkEmpty(t, q)
}

func TestQueueMemoryIsReleased(t *testing.T) {
	q := New(keyOf)
	// Many keys at once, then drained: the map is remade.
	for i := range 5000 {
		q.Push(fmt.Sprintf("ns%d/x", i))
	}
	popAll(q)
	checkEmpty(t, q)
	if q.peak != 0 {
		t.Fatalf("peak = %d after draining 5000 keys, want the map remade", q.peak)
	}
	// One long FIFO, consumed while refilled: the backing array stays about
	// twice the live items.
	for i := range 100 {
		q.Push(fmt.Sprintf("a/%d", i))
	}
	for i := range 100000 {
		if got, want := q.Pop(), fmt.Sprintf("a/%d", i); got != want {
			t.Fatalf("pop %d = %q, want %q", i, got, want)
		}
		q.Push(fmt.Sprintf("a/%d", i+100))
		if c := cap(q.fifos["a"].items); c > 4*100+minCompact {
			t.Fatalf("after %d pops the FIFO of 100 items has capacity %d", i+1, c)
		}
	}
	if q.Len() != 100 {
		t.Fatalf("Len() = %d, want 100", q.Len())
	}
	popAll(q)
	checkEmpty(t, q)
}

func TestQueueCompactionKeepsOrder(t *testing.T) {
	q := New(keyOf)
	var want []string
	next := 0
	for round := range 50 {
		for range round * 7 {
			s := fmt.Sprintf("a/%d", next)
			next++
			q.Push(s)
			want = append(want, s)
		}
		for range round * 3 {
			if got := q.Pop(); got != want[0] {
				t.Fatalf("round %d: popped %q, want %q", round, got, want[0])
			}
			want = want[1:]
		}
	}
	if got := popAll(q); !slices.Equal(got, want) {
		t.Fatalf("remaining items differ: got %d items, want %d", len(got), len(want))
	}
	checkEmpty(t, q)
}

func TestNewPanicsWithoutKey(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New(nil) did not panic")
		}
	}()
	New[string](nil)
}

// newTestQueue is a fair rate-limiting queue over strings keyed by keyOf,
// shut down when the test ends.
func newTestQueue(t *testing.T) workqueue.TypedRateLimitingInterface[string] {
	t.Helper()
	q := NewRateLimitingQueue(t.Name(), keyOf, workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Millisecond, time.Second))
	t.Cleanup(q.ShutDown)
	return q
}

// get calls q.Get, failing the test if it does not return within a while.
func get[T comparable](t *testing.T, q workqueue.TypedInterface[T]) (T, bool) {
	t.Helper()
	type res struct {
		item     T
		shutdown bool
	}
	ch := make(chan res, 1)
	go func() {
		item, shutdown := q.Get()
		ch <- res{item, shutdown}
	}()
	select {
	case r := <-ch:
		return r.item, r.shutdown
	case <-time.After(10 * time.Second):
		t.Fatal("Get did not return")
		var zero T
		return zero, false
	}
}

// mustGet gets an item that must be there and fails on shutdown.
func mustGet[T comparable](t *testing.T, q workqueue.TypedInterface[T]) T {
	t.Helper()
	item, shutdown := get(t, q)
	if shutdown {
		t.Fatal("Get reported shutdown")
	}
	return item
}

func TestRateLimitingQueueDedupsQueuedItem(t *testing.T) {
	q := newTestQueue(t)
	q.Add("a/1")
	q.Add("a/2")
	q.Add("a/1")
	q.Add("b/1")
	q.Add("a/1")
	if q.Len() != 3 {
		t.Fatalf("Len() = %d, want 3 (a/1 queued once)", q.Len())
	}
	var got []string
	for range 3 {
		item := mustGet(t, q)
		got = append(got, item)
		q.Done(item)
	}
	// a/1 keeps its first place: Touch does not reposition.
	if want := []string{"a/1", "b/1", "a/2"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if q.Len() != 0 {
		t.Fatalf("Len() = %d after draining, want 0", q.Len())
	}
}

func TestRateLimitingQueueRequeuesItemAddedWhileProcessing(t *testing.T) {
	q := newTestQueue(t)
	q.Add("a/1")
	if got := mustGet(t, q); got != "a/1" {
		t.Fatalf("got %q, want a/1", got)
	}
	q.Add("a/1")
	q.Add("a/1")
	if q.Len() != 0 {
		t.Fatalf("Len() = %d while a/1 is processed, want 0 (held until Done)", q.Len())
	}
	q.Done("a/1")
	if q.Len() != 1 {
		t.Fatalf("Len() = %d after Done, want 1 (re-queued once)", q.Len())
	}
	if got := mustGet(t, q); got != "a/1" {
		t.Fatalf("got %q, want a/1", got)
	}
	q.Done("a/1")
	if q.Len() != 0 {
		t.Fatalf("Len() = %d, want 0: a/1 was not dirty again", q.Len())
	}
}

func TestRateLimitingQueueShutDownEndsGet(t *testing.T) {
	q := newTestQueue(t)
	done := make(chan bool, 1)
	go func() {
		_, shutdown := q.Get()
		done <- shutdown
	}()
	time.Sleep(10 * time.Millisecond) // let Get block; the test holds either way
	q.ShutDown()
	select {
	case shutdown := <-done:
		if !shutdown {
			t.Fatal("Get returned an item, want shutdown")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Get did not return after ShutDown")
	}
	q.Add("a/1")
	if _, shutdown := get(t, q); !shutdown {
		t.Fatal("Get after ShutDown returned an item, want shutdown")
	}
}

func TestRateLimitingQueueShutDownDrainsQueuedItemsFirst(t *testing.T) {
	q := newTestQueue(t)
	q.Add("a/1")
	q.Add("b/1")
	q.ShutDown()
	if !q.ShuttingDown() {
		t.Fatal("ShuttingDown() = false after ShutDown")
	}
	for _, want := range []string{"a/1", "b/1"} {
		if got := mustGet(t, q); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if _, shutdown := get(t, q); !shutdown {
		t.Fatal("Get on a drained, shut-down queue returned an item")
	}
}

func TestRateLimitingQueueAddAfter(t *testing.T) {
	const delay = 100 * time.Millisecond
	q := newTestQueue(t)
	q.AddAfter("b/1", 0) // no delay: added at once
	start := time.Now()
	q.AddAfter("a/1", delay)
	if got := mustGet(t, q); got != "b/1" {
		t.Fatalf("got %q first, want b/1", got)
	}
	q.Done("b/1")
	if got := mustGet(t, q); got != "a/1" {
		t.Fatalf("got %q, want a/1", got)
	}
	if elapsed := time.Since(start); elapsed < delay {
		t.Fatalf("a/1 delivered after %v, want at least %v", elapsed, delay)
	}
	q.Done("a/1")
}

func TestRateLimitingQueueAddRateLimited(t *testing.T) {
	q := newTestQueue(t)
	q.AddRateLimited("a/1")
	q.AddRateLimited("a/1")
	if n := q.NumRequeues("a/1"); n != 2 {
		t.Fatalf("NumRequeues = %d, want 2", n)
	}
	if got := mustGet(t, q); got != "a/1" {
		t.Fatalf("got %q, want a/1", got)
	}
	q.Forget("a/1")
	q.Done("a/1")
	if n := q.NumRequeues("a/1"); n != 0 {
		t.Fatalf("NumRequeues = %d after Forget, want 0", n)
	}
}

func TestRateLimitingQueueIsFairForReconcileRequests(t *testing.T) {
	q := NewRateLimitingQueue(t.Name(), func(r reconcile.Request) string { return r.Namespace },
		workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	t.Cleanup(q.ShutDown)
	req := func(ns, name string) reconcile.Request {
		return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}
	}
	for i := range 500 {
		q.Add(req("churn", fmt.Sprintf("obj-%d", i)))
	}
	calm := req("calm", "obj")
	q.Add(calm)
	if q.Len() != 501 {
		t.Fatalf("Len() = %d, want 501", q.Len())
	}
	var first []reconcile.Request
	for range 2 {
		r := mustGet(t, q)
		first = append(first, r)
		q.Done(r)
	}
	if !slices.Contains(first, calm) {
		t.Fatalf("first two Gets = %v, want %v among them", first, calm)
	}
	for i := 1; q.Len() > 0; i++ {
		r := mustGet(t, q)
		if want := req("churn", fmt.Sprintf("obj-%d", i)); r != want {
			t.Fatalf("got %v, want %v (FIFO within churn)", r, want)
		}
		q.Done(r)
	}
}

// TestRateLimitingQueueConcurrentWorkers runs workers and producers at once
// (meant for -race) and checks every item is processed, once per Add batch.
func TestRateLimitingQueueConcurrentWorkers(t *testing.T) {
	q := newTestQueue(t)
	const producers, perProducer, workers = 4, 200, 4
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				item, shutdown := q.Get()
				if shutdown {
					return
				}
				mu.Lock()
				seen[item]++
				mu.Unlock()
				q.Done(item)
			}
		})
	}
	var pg sync.WaitGroup
	for p := range producers {
		pg.Go(func() {
			for i := range perProducer {
				q.Add(fmt.Sprintf("ns%d/%d", p, i))
			}
		})
	}
	pg.Wait()
	q.ShutDownWithDrain()
	wg.Wait()
	if len(seen) != producers*perProducer {
		t.Fatalf("processed %d distinct items, want %d", len(seen), producers*perProducer)
	}
	for item, n := range seen {
		if n != 1 {
			t.Fatalf("%s processed %d times, want once", item, n)
		}
	}
}
