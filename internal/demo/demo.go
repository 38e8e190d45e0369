// Package demo runs log-capturer end to end on one machine: a source-built
// control plane (envtest), the operator with its real controllers and
// workers, a simulated node whose kubelet serves generated logs for every
// pod bound to it, and the sample pipeline delivering to a File sink and an
// in-process Loki receiver.
package demo

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
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
	// Duration ends the demo by itself; 0 runs until ctx ends.
	Duration time.Duration
	// AssetsDir holds kube-apiserver and etcd (bin/k8s).
	AssetsDir string
	// OutputDir is the File sink root (./demo-output).
	OutputDir string
	// Kubeconfig is where the demo writes a kubeconfig for kubectl.
	Kubeconfig string
	// Rotation is the sample pipeline's rotation interval in the demo.
	Rotation time.Duration
	// TableEvery is how often the live table is printed; 0 disables it.
	TableEvery time.Duration
	// Out receives the table and the summary.
	Out io.Writer
}

// ContainerResult is one container's lines, generated and delivered.
type ContainerResult struct {
	Container string
	Generated int
	Delivered int
}

// Summary is what a demo run measured.
type Summary struct {
	Containers []ContainerResult
	Rotations  int64
	Ready      bool
	Goroutines int
	OpenFDs    int
	LokiLines  int
}

// Complete tells whether every generated line was delivered to the File sink.
func (s Summary) Complete() bool {
	for _, c := range s.Containers {
		if c.Generated != c.Delivered {
			return false
		}
	}
	return len(s.Containers) > 0
}

// Run runs the demo until ctx ends or Duration passes, then tears
// everything down and returns what it measured.
func Run(ctx context.Context, o Options) (Summary, error) {
	var sum Summary
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
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
	fmt.Fprintf(o.Out, "control plane up; kubectl: KUBECONFIG=%s kubectl get lp -n %s -w\n", o.Kubeconfig, Namespace)

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

	gens := newGenerators(kubelet)
	opCtx, stopOperator := context.WithCancel(context.WithoutCancel(ctx))
	opDone := make(chan error, 1)
	go func() {
		opDone <- operator.Run(opCtx, operator.Options{
			RestConfig: cfg, MetricsBindAddress: "0", HealthProbeBindAddr: "0", LeaderElect: false,
			FileSinkRoot: o.OutputDir, HealthSamplePeriod: 2 * time.Second,
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
	fmt.Fprintf(o.Out, "demo pods, SinkTargets and LogPipeline %s/shop applied; File sink output: %s\n",
		Namespace, filepath.Join(o.OutputDir, "shop", "logs.jsonl"))
	watchPods(ctx, c, gens)

	var tick <-chan time.Time
	if o.TableEvery > 0 {
		t := time.NewTicker(o.TableEvery)
		defer t.Stop()
		tick = t.C
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-opDone:
			gens.stop()
			return sum, fmt.Errorf("operator stopped: %w", err)
		case <-tick:
			printTable(setupCtx, c, o.Out)
		}
	}

	// Stop writing, then wait until both sinks have every line: the File
	// sink and the Loki sink batch independently.
	gens.stop()
	generated := gens.generated()
	total := 0
	for _, n := range generated {
		total += n
	}
	deadline := time.Now().Add(30 * time.Second)
	var delivered map[string]int
	for {
		delivered, err = countDelivered(o.OutputDir)
		if err == nil && sameCounts(generated, delivered) && loki.Len() >= total || time.Now().After(deadline) {
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
	keys := make([]string, 0, len(generated))
	for k := range generated {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sum.Containers = append(sum.Containers, ContainerResult{Container: k, Generated: generated[k], Delivered: delivered[k]})
	}
	if err := shutdown(); err != nil {
		return sum, fmt.Errorf("stopping the operator: %w", err)
	}
	// Read after shutdown, which flushes what the sinks still queue.
	sum.LokiLines = loki.Len()
	printSummary(o.Out, sum)
	return sum, nil
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
// sample points at the in-process receiver, and the pipeline starts at the
// beginning of each log and rotates every rotation.
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
	gens.wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				scan()
			}
		}
	})
}

// printTable prints what each pipeline's status says, read through the API
// as `kubectl get lp` reads it.
func printTable(ctx context.Context, c client.Client, out io.Writer) {
	list := &logsv1alpha1.LogPipelineList{}
	if err := c.List(ctx, list); err != nil {
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tPIPELINE\tREADY\tREASON\tSTREAMS\tLINES/S\tGOROUTINES\tFDS\tROTATIONS\tLINES\n", time.Now().Format("15:04:05"))
	for _, p := range list.Items {
		ready, reason := "Unknown", ""
		for _, cnd := range p.Status.Conditions {
			if cnd.Type == logsv1alpha1.ConditionReady {
				ready, reason = string(cnd.Status), cnd.Reason
			}
		}
		w := p.Status.Workers
		if w == nil {
			w = &logsv1alpha1.WorkerStatus{}
		}
		fmt.Fprintf(tw, "\t%s/%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", p.Namespace, p.Name, ready, reason,
			w.ActiveStreams, w.LinesPerSecond, w.Goroutines, w.OpenFDs, w.Rotations, w.LinesTotal)
	}
	_ = tw.Flush()
}

func printSummary(out io.Writer, s Summary) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tGENERATED\tDELIVERED")
	for _, c := range s.Containers {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", c.Container, c.Generated, c.Delivered)
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "rotations=%d ready=%v goroutines=%d fds=%d loki=%d complete=%v\n",
		s.Rotations, s.Ready, s.Goroutines, s.OpenFDs, s.LokiLines, s.Complete())
}

func sameCounts(a, b map[string]int) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// countDelivered counts the File sink's records per container, in the
// current file and the rotated (gzipped) ones.
func countDelivered(root string) (map[string]int, error) {
	out := map[string]int{}
	files, err := filepath.Glob(filepath.Join(root, "shop", "logs.jsonl*"))
	if err != nil {
		return nil, fmt.Errorf("listing output: %w", err)
	}
	for _, f := range files {
		if err := countFile(f, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func countFile(path string, out map[string]int) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var rec struct{ Namespace, Pod, Container string }
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		out[rec.Namespace+"/"+rec.Pod+"/"+rec.Container]++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}
