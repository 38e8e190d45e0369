package link_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/agent/control"
	"github.com/log-capturer/log-capturer/agent/identity"
	"github.com/log-capturer/log-capturer/agent/link"
	"github.com/log-capturer/log-capturer/capture"
)

// tokens is a Verifier that knows tokens by name.
type tokens map[string]string

func (t tokens) Verify(_ context.Context, token string) (identity.Agent, error) {
	if node, ok := t[token]; ok {
		return identity.Agent{Node: node}, nil
	}
	return identity.Agent{}, identity.ErrRefused
}

// pods are the pods of every node.
type pods []corev1.Pod

func (p pods) PodsOnNode(_ context.Context, node string) ([]corev1.Pod, error) {
	var out []corev1.Pod
	for _, x := range p {
		if x.Spec.NodeName == node {
			out = append(out, x)
		}
	}
	return out, nil
}

// workers records what the Follower asked of them.
type workers struct {
	mu      sync.Mutex
	running map[types.NamespacedName]capture.PipelineConfig
	applies int
	fail    bool
}

func (w *workers) Apply(_ context.Context, key types.NamespacedName, cfg capture.PipelineConfig) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail {
		return errors.New("refused by the test")
	}
	w.applies++
	w.running[key] = cfg
	return nil
}

func (w *workers) Remove(_ context.Context, key types.NamespacedName) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.running, key)
	return nil
}

func (w *workers) names() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for k := range w.running {
		out = append(out, k.String())
	}
	slices.Sort(out)
	return out
}

func cfg(ns, name string) capture.PipelineConfig {
	return capture.PipelineConfig{Namespace: ns, Name: name, RotationInterval: time.Minute, MaxStreams: 5,
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}}
}

func pod(ns, app, node string) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app + "-1", Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{NodeName: node}}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFollowerAppliesChangesAndKeepsTheLastWhenTheOperatorIsAway runs a
// Follower against the real control.Handler.
func TestFollowerAppliesChangesAndKeepsTheLastWhenTheOperatorIsAway(t *testing.T) {
	book := control.NewBook()
	book.Apply(types.NamespacedName{Namespace: "shop", Name: "web"}, cfg("shop", "web"))
	book.Apply(types.NamespacedName{Namespace: "shop", Name: "db"}, cfg("shop", "db"))
	h := &control.Handler{Book: book, Pods: pods{pod("shop", "web", "node-a"), pod("shop", "db", "node-b"), pod("shop", "api", "node-a")},
		Verifier: tokens{"token-1": "node-a", "token-2": "node-a"}}
	var down atomic.Bool
	var seen sync.Map // tokens the operator was sent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("Authorization"), true)
		if down.Load() {
			http.Error(w, "operator restarting", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()

	var tokenN atomic.Int64
	w := &workers{running: map[types.NamespacedName]capture.PipelineConfig{}}
	f := &link.Follower{URL: srv.URL, Client: srv.Client(), Workers: w, Wait: 2 * time.Second,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Token: func() (string, error) {
			if tokenN.Add(1) > 2 {
				return "token-2", nil // the kubelet rotated the projected token
			}
			return "token-1", nil
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	eventually(t, "node-a's pipeline applied", func() bool { return slices.Equal(w.names(), []string{"shop/web"}) })
	first := f.Status().Revision

	book.Apply(types.NamespacedName{Namespace: "shop", Name: "api"}, cfg("shop", "api"))
	eventually(t, "a new pipeline with a pod on node-a applied", func() bool {
		return slices.Equal(w.names(), []string{"shop/api", "shop/web"})
	})
	if f.Status().Revision == first {
		t.Error("the revision did not move")
	}

	down.Store(true)
	// The request waiting when it went away ends within Wait; the next fail.
	eventually(t, "the failures reported", func() bool { return f.Status().Failures >= 2 && f.Status().LastError != "" })
	if got := w.names(); !slices.Equal(got, []string{"shop/api", "shop/web"}) {
		t.Errorf("with the operator away the workers run %v, want the last configuration", got)
	}
	book.Remove(types.NamespacedName{Namespace: "shop", Name: "web"})
	down.Store(false)
	eventually(t, "a pipeline removed while the operator was away removed", func() bool {
		return slices.Equal(w.names(), []string{"shop/api"})
	})
	eventually(t, "the error cleared", func() bool { return f.Status().LastError == "" })
	if _, ok := seen.Load("Bearer token-2"); !ok {
		t.Error("the rotated token was never sent")
	}
	if s := f.Status(); s.Pipelines != 1 {
		t.Errorf("status holds %d pipelines, want 1", s.Pipelines)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestFollowerRefusedOrGarbageKeepsTheWorkers: a refused token, a failed
// apply and answers that are not a configuration change nothing.
func TestFollowerRefusedOrGarbageKeepsTheWorkers(t *testing.T) {
	for name, answer := range map[string]http.HandlerFunc{
		"refused": func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "agent identity refused", http.StatusUnauthorized)
		},
		"not JSON": func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>")) },
		"no revision": func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"node":"node-a","pipelines":[]}`))
		},
		"too big": func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(make([]byte, link.MaxConfigBytes+10))
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(answer)
			defer srv.Close()
			w := &workers{running: map[types.NamespacedName]capture.PipelineConfig{
				{Namespace: "shop", Name: "web"}: cfg("shop", "web")}}
			f := &link.Follower{URL: srv.URL, Client: srv.Client(), Workers: w, MinBackoff: 10 * time.Millisecond,
				Token: func() (string, error) { return "t", nil }}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = f.Run(ctx) }()
			eventually(t, "a failure reported", func() bool { return f.Status().Failures >= 2 })
			cancel()
			<-done
			if got := w.names(); !slices.Equal(got, []string{"shop/web"}) {
				t.Errorf("the workers run %v, want what they ran", got)
			}
			if w.applies != 0 {
				t.Errorf("%d applies from an answer that is no configuration", w.applies)
			}
		})
	}

	t.Run("an apply that failed is asked for again", func(t *testing.T) {
		book := control.NewBook()
		book.Apply(types.NamespacedName{Namespace: "shop", Name: "web"}, cfg("shop", "web"))
		var full atomic.Int64
		h := &control.Handler{Book: book, Pods: pods{pod("shop", "web", "node-a")}, Verifier: tokens{"t": "node-a"}}
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.Header.Get("If-None-Match") == "" {
				full.Add(1)
			}
			h.ServeHTTP(rw, r)
		}))
		defer srv.Close()
		w := &workers{running: map[types.NamespacedName]capture.PipelineConfig{}, fail: true}
		f := &link.Follower{URL: srv.URL, Client: srv.Client(), Workers: w, MinBackoff: 10 * time.Millisecond,
			MaxBackoff: 10 * time.Millisecond, Wait: time.Second, Token: func() (string, error) { return "t", nil }}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = f.Run(ctx) }()
		eventually(t, "the whole configuration asked for again", func() bool { return full.Load() >= 3 })
		w.mu.Lock()
		w.fail = false
		w.mu.Unlock()
		eventually(t, "applied once the workers take it", func() bool { return slices.Equal(w.names(), []string{"shop/web"}) })
		cancel()
		<-done
	})
}

// deleters are workers that also delete a pipeline's positions.
type deleters struct {
	workers
	deletes []string
}

func (d *deleters) Delete(ctx context.Context, key types.NamespacedName) error {
	d.mu.Lock()
	d.deletes = append(d.deletes, key.String())
	d.mu.Unlock()
	return d.Remove(ctx, key)
}

func (d *deleters) deleted() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.deletes)
}

// TestFollowerDeletesDeletedPipelinesOnce: a pipeline deleted in the
// operator is deleted on the agent (its positions with it) once, whether
// or not it ran there; one made again under the name runs and is not
// deleted.
func TestFollowerDeletesDeletedPipelinesOnce(t *testing.T) {
	book := control.NewBook()
	web, db := types.NamespacedName{Namespace: "shop", Name: "web"}, types.NamespacedName{Namespace: "shop", Name: "db"}
	book.Apply(web, cfg("shop", "web"))
	book.Apply(db, cfg("shop", "db"))
	h := &control.Handler{Book: book, Pods: pods{pod("shop", "web", "node-a"), pod("shop", "db", "node-b")}, Verifier: tokens{"t": "node-a"}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	w := &deleters{workers: workers{running: map[types.NamespacedName]capture.PipelineConfig{}}}
	f := &link.Follower{URL: srv.URL, Client: srv.Client(), Workers: w, Wait: time.Second,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Token: func() (string, error) { return "t", nil }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	eventually(t, "web applied", func() bool { return slices.Equal(w.names(), []string{"shop/web"}) })
	book.Delete(web)
	book.Delete(db) // it never ran on node-a: its positions there, if any, go too
	sorted := func(s []string) []string { slices.Sort(s); return s }
	eventually(t, "both deleted on the agent", func() bool { return slices.Equal(sorted(w.deleted()), []string{"shop/db", "shop/web"}) })
	if got := w.names(); len(got) != 0 {
		t.Errorf("running %v after the deletions", got)
	}

	// Another change: the tombstones are still announced, but done once.
	book.Apply(types.NamespacedName{Namespace: "shop", Name: "api"}, cfg("shop", "api"))
	book.Apply(web, cfg("shop", "web")) // made again under its name
	eventually(t, "web made again runs", func() bool { return slices.Equal(w.names(), []string{"shop/web"}) })
	time.Sleep(100 * time.Millisecond)
	if got := sorted(w.deleted()); !slices.Equal(got, []string{"shop/db", "shop/web"}) {
		t.Errorf("deletions %v, want each once and web made again left running", got)
	}
}

// released is a Handover that releases a pipeline once open is set.
type released struct{ open atomic.Bool }

func (r *released) Handed(types.NamespacedName, string) ([]capture.ContainerPosition, bool) {
	return nil, r.open.Load()
}

func TestFollowerKeepsAPendingPipelineRunning(t *testing.T) {
	book := control.NewBook()
	rel := &released{}
	rel.open.Store(true)
	book.Serves, book.Handover = func(string) bool { return true }, rel
	book.Apply(types.NamespacedName{Namespace: "shop", Name: "web"}, cfg("shop", "web"))
	h := &control.Handler{Book: book, Pods: pods{pod("shop", "web", "node-a")}, Verifier: tokens{"t": "node-a"}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	w := &workers{running: map[types.NamespacedName]capture.PipelineConfig{}}
	f := &link.Follower{URL: srv.URL, Client: srv.Client(), Workers: w, Wait: time.Second,
		MinBackoff: 20 * time.Millisecond, Token: func() (string, error) { return "t", nil }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	eventually(t, "the released pipeline applied", func() bool { return slices.Equal(w.names(), []string{"shop/web"}) })
	first := f.Status().Revision

	// The operator restarted: until its engine has loaded its positions the
	// pipeline is pending, and the agent keeps running it.
	rel.open.Store(false)
	book.ForgetNode("node-a")
	eventually(t, "the pending configuration seen", func() bool { return f.Status().Revision != first })
	time.Sleep(100 * time.Millisecond)
	if got := w.names(); !slices.Equal(got, []string{"shop/web"}) || f.Status().Pipelines != 1 {
		t.Errorf("with the pipeline pending the workers run %v (status %d), want it kept", got, f.Status().Pipelines)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
