package demo_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/log-capturer/log-capturer/internal/demo"
	"github.com/log-capturer/log-capturer/test/envtestutil"
)

// children counts the processes whose parent is this test process.
func children(t *testing.T) int {
	t.Helper()
	self := strconv.Itoa(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	n := 0
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == self {
			n++
		}
	}
	return n
}

// TestDemoTwiceInARow runs the demo again and again in the same
// directories, as a newcomer does: each run checks only what it produced,
// the scripted faults are observed in status, and every line arrives exactly
// once; a run ended by Ctrl-C in the middle of its story checks the same
// way, and the run after it passes too.
func TestDemoTwiceInARow(t *testing.T) {
	assets, err := envtestutil.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	before := children(t)
	for run := 1; run <= 3; run++ {
		interrupted := run == 2
		sum, out := runDemo(t, assets, dir, run == 1, interrupted)
		t.Logf("run %d:\n%s", run, out)
		if p := sum.Problems(); len(p) > 0 {
			t.Fatalf("run %d: %v", run, p)
		}
		if !strings.Contains(out, "PROOF: all ") {
			t.Errorf("run %d printed no proof line", run)
		}
		if interrupted {
			continue // Ctrl-C came in the middle of the story
		}
		for _, st := range sum.Story {
			if !st.Observed {
				t.Errorf("run %d: the story's %q was not observed in status: %s", run, st.Name, st.Detail)
			}
		}
		if len(sum.Story) != 4 {
			t.Errorf("run %d: %d story steps happened, want 4", run, len(sum.Story))
		}
		names := map[string]bool{}
		for _, c := range sum.File {
			names[c.Container] = true
		}
		if !names["demo/cart-1/cart"] {
			t.Errorf("run %d: the pod the story created was not captured", run)
		}
		if run == 1 && !names["demo/extra-1/extra"] {
			t.Error("the pod created through the demo's kubeconfig was not captured")
		}
		if sum.Rotations < 1 || !sum.Ready {
			t.Errorf("run %d: rotations=%d ready=%v", run, sum.Rotations, sum.Ready)
		}
		if !strings.Contains(out, "PIPELINE") || !strings.Contains(out, "GENERATED") {
			t.Errorf("run %d: no live table or summary printed", run)
		}
		if n := strings.Count(out, "logs.jsonl"); n != 1 {
			t.Errorf("run %d: the output path was printed %d times, want once", run, n)
		}
	}
	runs, _ := filepath.Glob(filepath.Join(dir, "out", "run-*"))
	if len(runs) != 3 {
		t.Errorf("%d run directories, want one per run: %v", len(runs), runs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for children(t) > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d child processes left behind", children(t)-before)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runDemo runs the demo for 40s in dir; withPod also creates a pod through
// the demo's kubeconfig while it runs, as a user with kubectl would, and
// interrupted ends it as Ctrl-C does, 15s after lines started to flow.
func runDemo(t *testing.T, assets, dir string, withPod, interrupted bool) (demo.Summary, string) {
	t.Helper()
	kubeconfig := filepath.Join(dir, "demo.kubeconfig")
	var out bytes.Buffer
	done := make(chan struct{})
	var sum demo.Summary
	var runErr error
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sb := &syncBuffer{b: &out}
	duration := 40 * time.Second
	if interrupted {
		duration = 0 // until Ctrl-C
	}
	go func() {
		defer close(done)
		sum, runErr = demo.Run(ctx, demo.Options{Duration: duration, AssetsDir: assets,
			OutputDir: filepath.Join(dir, "out"), Kubeconfig: kubeconfig, Rotation: 3 * time.Second,
			TableEvery: 5 * time.Second, Out: sb})
	}()
	if withPod {
		createPod(t, kubeconfig)
	}
	if interrupted {
		waitFor(t, sb, "applied")
		time.Sleep(15 * time.Second)
		cancel() // what Ctrl-C does: signal.NotifyContext ends the run's context
	}
	<-done
	if runErr != nil {
		t.Fatal(runErr)
	}
	return sum, out.String()
}

// waitFor waits until the demo printed want.
func waitFor(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(out.String(), want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the demo never printed %q", want)
}

// createPod waits for the demo's kubeconfig and creates a pod on its node.
func createPod(t *testing.T, kubeconfig string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(kubeconfig); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no kubeconfig written")
		}
		time.Sleep(200 * time.Millisecond)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: demo.Namespace, Name: "extra-1", Labels: map[string]string{"app": "shop"}},
		Spec: corev1.PodSpec{NodeName: demo.NodeName, Containers: []corev1.Container{{Name: "extra", Image: "x"}}}}
	for err := c.Create(context.Background(), pod); err != nil; err = c.Create(context.Background(), pod) {
		if time.Now().After(deadline) {
			t.Fatalf("creating a pod through the demo's kubeconfig: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer the demo's goroutines may write to while the
// test reads it at the end.
type syncBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
