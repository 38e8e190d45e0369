// Package demo runs log-capturer end to end on one machine: a source-built
// control plane (envtest), the operator with its real controllers and
// workers, a simulated node whose kubelet serves generated logs for every
// pod bound to it, and the sample pipeline delivering to a File sink and an
// in-process Loki receiver.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/config/crd"
	"github.com/log-capturer/log-capturer/config/samples"
	"github.com/log-capturer/log-capturer/internal/operator"
	"github.com/log-capturer/log-capturer/test/kubeletsim"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

// NodeName is the simulated node: pods with spec.nodeName set to it get logs.
const NodeName = "demo-node"

// Namespace holds the demo's pods and the sample pipeline.
const Namespace = "demo"

// StyleAnnotation picks the generated log style of a pod's containers.
const StyleAnnotation = "demo.logs.capturer.dev/style"

// Options configure a demo run.
type Options struct {
	// Duration is how long lines flow before the run checks them and ends;
	// 0 runs until ctx ends (Ctrl-C).
	Duration time.Duration
	// AssetsDir holds kube-apiserver and etcd (bin/k8s).
	AssetsDir string
	// OutputDir holds the runs' File sink output: each run writes under a
	// directory of its own in it (./demo-output/run-<time>).
	OutputDir string
	// Kubeconfig is where the demo writes a kubeconfig for kubectl.
	Kubeconfig string
	// Rotation is the sample pipeline's rotation interval in the demo.
	Rotation time.Duration
	// TableEvery is how often the live table is printed; 0 disables it.
	TableEvery time.Duration
	// Quiet prints only the summary: no live table, no story narration.
	Quiet bool
	// Out receives the table, the story and the summary.
	Out io.Writer
}

// Summary is what a demo run measured.
type Summary struct {
	// RunDir is where this run's File sink output is.
	RunDir string
	// File compares each container's generated lines with the File sink's.
	File []ContainerResult
	// Loki compares every generated line with what the Loki receiver got.
	Loki ContainerResult
	// Story is what the scripted sequence observed in status.
	Story      []Step
	Rotations  int64
	Ready      bool
	Goroutines int
	OpenFDs    int
}

// Problems lists every way the run differs from every line exactly once.
func (s Summary) Problems() []string {
	out := problems("File sink", s.File)
	out = append(out, problems("Loki", []ContainerResult{s.Loki})...)
	if len(s.File) == 0 {
		out = append(out, "no line was generated")
	}
	return out
}

// Complete tells whether every generated line arrived exactly once at both sinks.
func (s Summary) Complete() bool { return len(s.Problems()) == 0 }

// Run runs the demo until ctx ends or Duration passes, then tears
// everything down and returns what it measured.
func Run(ctx context.Context, o Options) (Summary, error) {
	var sum Summary
	if o.Out == nil {
		o.Out = io.Discard
	}
	out := &lockedWriter{w: o.Out}
	runDir, err := newRunDir(o.OutputDir)
	if err != nil {
		return sum, err
	}
	sum.RunDir = runDir
	// A kubeconfig of an earlier run points at a control plane that is gone.
	if err := os.Remove(o.Kubeconfig); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return sum, fmt.Errorf("removing the old kubeconfig: %w", err)
	}
	crds, err := loadCRDs()
	if err != nil {
		return sum, err
	}
	env := &envtest.Environment{CRDs: crds, BinaryAssetsDirectory: o.AssetsDir, ErrorIfCRDPathMissing: false}
	cfg, err := env.Start()
	if err != nil {
		return sum, fmt.Errorf("starting the control plane from %s (run 'make envtest'): %w", o.AssetsDir, err)
	}
	defer func() { _ = env.Stop() }()
	if err := writeKubeconfig(env, o.Kubeconfig); err != nil {
		return sum, err
	}
	fmt.Fprintf(out, "control plane up; kubectl: KUBECONFIG=%s kubectl get lp -n %s -w\n", o.Kubeconfig, Namespace)

	scheme, err := operator.NewScheme()
	if err != nil {
		return sum, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return sum, fmt.Errorf("creating client: %w", err)
	}
	kubelet, err := kubeletsim.Start()
	if err != nil {
		return sum, err
	}
	defer func() { _ = kubelet.Close() }()
	// The node outlives ctx so that teardown can still use the API server.
	if err := kubelet.RegisterNode(context.WithoutCancel(ctx), c, NodeName); err != nil {
		return sum, err
	}
	loki := lokireceiver.New()
	lokiSrv := httptest.NewServer(loki)
	defer lokiSrv.Close()
	defer loki.Close()

	lines := newLedger()
	gens := newGenerators(kubelet, lines)
	opCtx, stopOperator := context.WithCancel(context.WithoutCancel(ctx))
	opDone := make(chan error, 1)
	go func() {
		opDone <- operator.Run(opCtx, operator.Options{
			RestConfig: cfg, MetricsBindAddress: "0", HealthProbeBindAddr: "0", LeaderElect: false,
			FileSinkRoot: runDir, HealthSamplePeriod: 2 * time.Second,
			// The demo's Loki receiver runs on this host's loopback.
			AllowLoopbackEgress: true,
			// The demo's namespace is the admin's: its sample writes a File
			// sink, which the shipped default leaves to admins.
			DefaultSinkTypes: []string{"Loki", "HTTP", "OTLP", "Kafka", "Elasticsearch", "OpenSearch", "S3", "File", "Stdout"},
		})
	}()
	shutdown := func() error {
		gens.stop()
		stopOperator()
		return <-opDone
	}

	setupCtx := context.WithoutCancel(ctx)
	if err := apply(setupCtx, c, lokiSrv.URL, o.Rotation); err != nil {
		_ = shutdown()
		return sum, err
	}
	output := filepath.Join(runDir, Namespace, "shop", "logs.jsonl")
	fmt.Fprintf(out, "demo pods, SinkTargets and LogPipeline %s/shop applied; this run's File sink output: %s\n", Namespace, output)
	runCtx := ctx
	if o.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	watchPods(runCtx, c, gens)

	var bg sync.WaitGroup
	bgCtx, stopBG := context.WithCancel(runCtx)
	defer func() { stopBG(); bg.Wait() }()
	if o.TableEvery > 0 && !o.Quiet {
		bg.Go(func() { liveTable(bgCtx, c, out, o.TableEvery) })
	}
	st := &story{c: c, kubelet: kubelet, loki: loki, out: out, quiet: o.Quiet, key: client.ObjectKey{Namespace: Namespace, Name: "shop"}}
	bg.Go(func() { st.run(bgCtx) })

	select {
	case <-runCtx.Done():
	case err := <-opDone:
		stopBG()
		bg.Wait()
		gens.stop()
		return sum, fmt.Errorf("operator stopped: %w", err)
	}
	stopBG()
	bg.Wait()
	loki.Recover() // the run ended during the outage: let the last lines in

	// Stop writing, then wait until both sinks have every line: the File
	// sink and the Loki sink batch independently.
	gens.stop()
	generated := lines.generated()
	all := union(generated)
	deadline := time.Now().Add(30 * time.Second)
	for {
		delivered, err := readFileSink(output + "*")
		if err != nil {
			_ = shutdown()
			return sum, err
		}
		sum.File = compareAll(generated, delivered)
		sum.Loki = compare("every container", all, lokiLines(loki))
		if len(problems("", sum.File)) == 0 && sum.Loki.Missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	p := &logsv1alpha1.LogPipeline{}
	if err := c.Get(setupCtx, client.ObjectKey{Namespace: Namespace, Name: "shop"}, p); err == nil {
		sum.Ready = metaReady(p)
	}
	// Status refreshes running totals once a minute; the operator's metrics
	// (what its /metrics endpoint serves) have them now.
	sum.Rotations = int64(metric("log_capturer_container_stream_rotations_total", Namespace+"/shop"))
	sum.Goroutines = int(metric("log_capturer_goroutines", ""))
	sum.OpenFDs = int(metric("log_capturer_open_fds", ""))
	sum.Story = st.Steps()
	if err := shutdown(); err != nil {
		return sum, fmt.Errorf("stopping the operator: %w", err)
	}
	// Read after shutdown, which flushes what the sinks still queue.
	sum.Loki = compare("every container", all, lokiLines(loki))
	printSummary(out, sum)
	return sum, nil
}

// lokiLines is what the Loki receiver accepted, as a multiset of lines.
func lokiLines(r *lokireceiver.Receiver) multiset {
	out := multiset{}
	for _, e := range r.Entries() {
		out[lineKey{e.Time.UnixNano(), e.Line}]++
	}
	return out
}

// metric reads one series of the operator's metrics registry: the one of
// pipeline, or the process-wide one when pipeline is empty; 0 when absent.
func metric(name, pipeline string) float64 {
	mfs, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := pipeline == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetName() == "pipeline" && l.GetValue() == pipeline
			}
			if !match {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func metaReady(p *logsv1alpha1.LogPipeline) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == logsv1alpha1.ConditionReady {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

func loadCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var out []*apiextensionsv1.CustomResourceDefinition
	err := fs.WalkDir(crd.Bases, "bases", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := crd.Bases.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		c := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(b, c); err != nil {
			return fmt.Errorf("decoding %s: %w", path, err)
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading the embedded CRDs: %w", err)
	}
	return out, nil
}

func writeKubeconfig(env *envtest.Environment, path string) error {
	u, err := env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding the demo user: %w", err)
	}
	b, err := u.KubeConfig()
	if err != nil {
		return fmt.Errorf("making a kubeconfig: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// demoPods are the pods the demo creates; the sample pipeline selects app=shop.
var demoPods = []struct {
	name  string
	style Style
}{{"web", StyleAccess}, {"api", StyleJSON}, {"worker", StyleStack}}

// apply creates the namespace, the demo pods and the samples: the Loki
// sample points at the in-process receiver and retries for at most 2s
// between attempts, and the pipeline starts at the beginning of each log and
// rotates every rotation.
func apply(ctx context.Context, c client.Client, lokiURL string, rotation time.Duration) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		return fmt.Errorf("creating namespace: %w", err)
	}
	for _, p := range demoPods {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: p.name + "-1",
				Labels:      map[string]string{"app": "shop", "version": "v1"},
				Annotations: map[string]string{StyleAnnotation: string(p.style)}},
			Spec: corev1.PodSpec{NodeName: NodeName, Containers: []corev1.Container{{Name: p.name, Image: "demo/" + p.name}}},
		}
		if err := c.Create(ctx, pod); err != nil {
			return fmt.Errorf("creating pod %s: %w", pod.Name, err)
		}
	}
	entries, err := samples.Files.ReadDir(".")
	if err != nil {
		return fmt.Errorf("listing samples: %w", err)
	}
	for _, e := range entries {
		if e.Name() == "kustomization.yaml" {
			continue
		}
		b, err := samples.Files.ReadFile(e.Name())
		if err != nil {
			return fmt.Errorf("reading sample %s: %w", e.Name(), err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return fmt.Errorf("decoding sample %s: %w", e.Name(), err)
			}
			if len(u.Object) == 0 {
				continue
			}
			u.SetNamespace(Namespace)
			switch {
			case u.GetKind() == "SinkTarget" && u.GetName() == "loki":
				_ = unstructured.SetNestedField(u.Object, lokiURL, "spec", "loki", "url")
				// A short retry budget, so that the story's outage shows as
				// SinkUnavailable within seconds.
				_ = unstructured.SetNestedField(u.Object, "2s", "spec", "retry", "maxBackoff")
			case u.GetKind() == "LogPipeline":
				_ = unstructured.SetNestedField(u.Object, string(logsv1alpha1.StartAtBeginning), "spec", "startAt")
				_ = unstructured.SetNestedField(u.Object, rotation.String(), "spec", "rotation", "interval")
			}
			if err := c.Create(ctx, u); err != nil {
				return fmt.Errorf("applying %s %s from %s: %w", u.GetKind(), u.GetName(), e.Name(), err)
			}
		}
	}
	return nil
}

// watchPods starts a generator for every container of every pod bound to
// the demo node, also for pods created later with kubectl.
func watchPods(ctx context.Context, c client.Client, gens *generators) {
	scan := func() {
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods); err != nil {
			return
		}
		for _, p := range pods.Items {
			if p.Spec.NodeName != NodeName || p.DeletionTimestamp != nil {
				continue
			}
			style := Style(p.Annotations[StyleAnnotation])
			if style == "" {
				style = StyleAccess
			}
			for _, ct := range p.Spec.Containers {
				gens.start(ctx, p.Namespace, p.Name, ct.Name, style)
			}
		}
	}
	scan()
	gens.wg.Go(func() { every(ctx, time.Second, scan) })
}

// every calls f every period until ctx ends.
func every(ctx context.Context, period time.Duration, f func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
