package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/controllers"
	"github.com/log-capturer/log-capturer/test/envtestutil"
)

var (
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
	ctx       context.Context
	cancel    context.CancelFunc
	workers   *fakeWorkers
	writes    *writeCounter
	rejects   *controllers.RejectRecorder
	mgrDone   = make(chan struct{})
	// finalizerFaults fails the metadata patches of the objects it names.
	finalizerFaults = &patchFaults{keys: map[types.NamespacedName]bool{}}
)

// patchFaults fails every (non-status) patch of the objects it names, as
// an API server that refuses the finalizer would.
type patchFaults struct {
	mu   sync.Mutex
	keys map[types.NamespacedName]bool
}

func (f *patchFaults) set(key types.NamespacedName, fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[key] = fail
}

func (f *patchFaults) patch(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
	f.mu.Lock()
	fail := f.keys[client.ObjectKeyFromObject(obj)]
	f.mu.Unlock()
	if fail {
		return errors.New("injected finalizer patch failure")
	}
	return c.Patch(ctx, obj, p, opts...)
}

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controllers suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.Background())
	var err error
	testEnv, cfg, k8sClient, err = envtestutil.Start()
	Expect(err).NotTo(HaveOccurred())
	// Registered here, the control plane stops even when AfterSuite fails.
	DeferCleanup(testEnv.Stop)

	writes = &writeCounter{counts: map[types.NamespacedName]int{}}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  k8sClient.Scheme(),
		Metrics: metricsserver.Options{BindAddress: "0"},
		NewClient: func(c *rest.Config, o client.Options) (client.Client, error) {
			inner, err := client.NewWithWatch(c, o)
			if err != nil {
				return nil, err
			}
			return interceptor.NewClient(inner, interceptor.Funcs{SubResourcePatch: writes.patch, Patch: finalizerFaults.patch}), nil
		},
	})
	Expect(err).NotTo(HaveOccurred())
	workers = newFakeWorkers()
	Expect(controllers.Setup(ctx, mgr, workers, controllers.Options{Prober: prober, MinRotationInterval: minRotation, WatchSecrets: true})).To(Succeed())
	rejects = controllers.NewRejectRecorder(mgr.GetEventRecorder("sink"), mgr.GetClient())
	Expect(mgr.Add(rejects)).To(Succeed())
	go func() {
		defer GinkgoRecover()
		defer close(mgrDone)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
})

var _ = AfterSuite(func() {
	cancel()
	<-mgrDone
})

// minRotation is the operator's --min-rotation-interval in this suite.
const minRotation = 2 * time.Second

// writeCounter counts status patches per object.
type writeCounter struct {
	mu     sync.Mutex
	counts map[types.NamespacedName]int
}

func (w *writeCounter) patch(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
	if sub == "status" {
		w.mu.Lock()
		w.counts[client.ObjectKeyFromObject(obj)]++
		w.mu.Unlock()
	}
	return c.SubResource(sub).Patch(ctx, obj, p, opts...)
}

func (w *writeCounter) get(key types.NamespacedName) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counts[key]
}

// fakeWorkers records what the controller asks of the runtime.
type fakeWorkers struct {
	mu       sync.Mutex
	configs  map[types.NamespacedName]capture.PipelineConfig
	applies  map[types.NamespacedName]int
	removes  map[types.NamespacedName]int
	failWith map[types.NamespacedName]error
	// handingOver makes a pipeline's snapshot say HandingOver; stopping is
	// how many more Deletes of a key say the workers still stop.
	handingOver map[types.NamespacedName]bool
	stopping    map[types.NamespacedName]int
}

func newFakeWorkers() *fakeWorkers {
	return &fakeWorkers{
		configs:  map[types.NamespacedName]capture.PipelineConfig{},
		applies:  map[types.NamespacedName]int{},
		removes:  map[types.NamespacedName]int{},
		failWith: map[types.NamespacedName]error{},

		handingOver: map[types.NamespacedName]bool{},
		stopping:    map[types.NamespacedName]int{},
	}
}

func (f *fakeWorkers) setHandingOver(key types.NamespacedName, v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handingOver[key] = v
}

func (f *fakeWorkers) stopSlowly(key types.NamespacedName, deletes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopping[key] = deletes
}

func (f *fakeWorkers) Apply(_ context.Context, key types.NamespacedName, c capture.PipelineConfig) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies[key]++
	if err := f.failWith[key]; err != nil {
		return err
	}
	f.configs[key] = c
	return nil
}

func (f *fakeWorkers) Remove(_ context.Context, key types.NamespacedName) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removes[key]++
	delete(f.configs, key)
	return nil
}

func (f *fakeWorkers) Delete(ctx context.Context, key types.NamespacedName) error {
	if err := f.Remove(ctx, key); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping[key] > 0 {
		f.stopping[key]--
		return fmt.Errorf("pipeline %s: %w", key, capture.ErrWorkersStopping)
	}
	return nil
}

func (f *fakeWorkers) Snapshot(key types.NamespacedName) (capture.Snapshot, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.configs[key]; !ok {
		return capture.Snapshot{}, false
	}
	if f.handingOver[key] {
		return capture.Snapshot{HandingOver: true}, true
	}
	return capture.Snapshot{Running: true, SelectedContainers: 3, ActiveStreams: 2, WaitingStreams: 1, Goroutines: 4, OpenFDs: 12}, true
}

func (f *fakeWorkers) config(key types.NamespacedName) (capture.PipelineConfig, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.configs[key]
	return c, ok
}

func (f *fakeWorkers) counts(key types.NamespacedName) (applies, removes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies[key], f.removes[key]
}

func (f *fakeWorkers) fail(key types.NamespacedName, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.failWith, key)
		return
	}
	f.failWith[key] = err
}

var errApply = errors.New("injected apply failure")

// fakeProber fails the probe of sinks whose URL contains "unreachable".
type fakeProber struct{}

func (fakeProber) Probe(_ context.Context, c capture.SinkConfig) error {
	if c.Loki != nil && strings.Contains(c.Loki.URL, "unreachable") {
		return errors.New("dial tcp: connection refused")
	}
	return nil
}

var prober fakeProber
