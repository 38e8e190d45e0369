package demo_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

func TestDemoDeliversEverythingAndCleansUp(t *testing.T) {
	assets, err := envtestutil.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "demo.kubeconfig")
	before := children(t)
	var out bytes.Buffer
	done := make(chan struct{})
	var sum demo.Summary
	var runErr error
	go func() {
		defer close(done)
		sum, runErr = demo.Run(context.Background(), demo.Options{Duration: 20 * time.Second, AssetsDir: assets,
			OutputDir: filepath.Join(dir, "out"), Kubeconfig: kubeconfig, Rotation: 3 * time.Second,
			TableEvery: 5 * time.Second, Out: &out})
	}()

	// Like a user with kubectl: add a pod on the demo node while it runs.
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

	<-done
	t.Log(out.String())
	if runErr != nil {
		t.Fatal(runErr)
	}
	if !sum.Complete() {
		t.Fatalf("generated and delivered differ: %+v", sum.Containers)
	}
	total, extra := 0, 0
	for _, c := range sum.Containers {
		total += c.Generated
		if c.Container == "demo/extra-1/extra" {
			extra = c.Delivered
		}
	}
	if extra == 0 {
		t.Error("the pod created during the demo was not captured")
	}
	if sum.Rotations < 1 || !sum.Ready || sum.LokiLines != total {
		t.Errorf("rotations=%d ready=%v loki=%d of %d", sum.Rotations, sum.Ready, sum.LokiLines, total)
	}
	if !strings.Contains(out.String(), "PIPELINE") || !strings.Contains(out.String(), "GENERATED") {
		t.Error("no live table or summary printed")
	}
	deadline = time.Now().Add(10 * time.Second)
	for children(t) > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d child processes left behind", children(t)-before)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
