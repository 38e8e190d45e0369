package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache/informertest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
	"github.com/log-capturer/log-capturer/capture/workers"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

// benchNode is the node the corpus's pods run on: the engine reads their
// containers from files.
const benchNode = "bench"

// The product's defaults of the engine's rates and the sinks' memory
// budget (internal/operator: DefaultLogOpenRate, DefaultLogOpenBurst,
// DefaultPositionsWriteRate, DefaultMaxStreamsPerNamespace, and
// DefaultMemoryBudgetWithoutLimit), copied so that this main does not link
// the operator.
const (
	productLogOpenRate            = 50
	productLogOpenBurst           = 50
	productPositionsWriteRate     = 20
	productMaxStreamsPerNamespace = 1000
	productMemoryBudget           = 256 << 20
)

// corpusPod is one pod of the corpus, from its directory's name
// <namespace>_<pod>_<uid> and its container directories.
type corpusPod struct {
	namespace, name, uid string
	containers           []string
}

// corpusPods lists the pods of a corpus directory laid out as the kubelet's
// /var/log/pods.
func corpusPods(dir string) ([]corpusPod, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing the corpus: %w", err)
	}
	var pods []corpusPod
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		ns, rest, ok1 := strings.Cut(e.Name(), "_")
		i := strings.LastIndexByte(rest, '_')
		if !ok1 || i <= 0 || i == len(rest)-1 {
			return nil, fmt.Errorf("%s is not <namespace>_<pod>_<uid>", e.Name())
		}
		p := corpusPod{namespace: ns, name: rest[:i], uid: rest[i+1:]}
		cs, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("listing the corpus: %w", err)
		}
		for _, c := range cs {
			if c.IsDir() {
				p.containers = append(p.containers, c.Name())
			}
		}
		pods = append(pods, p)
	}
	if len(pods) == 0 {
		return nil, fmt.Errorf("no pod directories under %s", dir)
	}
	return pods, nil
}

// podCache is the engine's pod cache: a fake client holding the corpus's
// pods for List and Get, and an informer whose handlers are never called
// (the pods never change).
type podCache struct {
	client.Reader
	informers *informertest.FakeInformers
}

func (c podCache) GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error) {
	return c.informers.GetInformer(ctx, obj, opts...) //nolint:wrapcheck // a fake
}

func newPodCache(pods []corpusPod) podCache {
	objs := make([]client.Object, 0, len(pods))
	for _, p := range pods {
		pod := &corev1.Pod{}
		pod.Namespace, pod.Name, pod.UID = p.namespace, p.name, types.UID(p.uid)
		pod.Spec.NodeName = benchNode
		pod.Status.Phase = corev1.PodRunning
		for _, c := range p.containers {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c, Image: "bench"})
			pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{Name: c,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}})
		}
		objs = append(objs, pod)
	}
	return podCache{
		Reader:    fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(objs...).Build(),
		informers: &informertest.FakeInformers{Scheme: clientgoscheme.Scheme},
	}
}

// nullSink acknowledges every record at once and counts records and
// message bytes, its own pipeline's and, through total, every pipeline's.
type nullSink struct {
	records, bytes atomic.Int64
	total          *atomic.Int64
	want           int64
	done           chan struct{}
}

func (s *nullSink) Write(_ context.Context, r *capture.Record) error {
	s.records.Add(1)
	s.bytes.Add(int64(len(r.Line)))
	r.Ack()
	if s.total.Add(1) == s.want {
		close(s.done)
	}
	return nil
}

func (s *nullSink) Run(context.Context)         {}
func (s *nullSink) Close(context.Context) error { return nil }

// expected is what the manifest says one namespace's containers hold.
type expected struct{ records, msgBytes int64 }

func expectedByNamespace(m manifest) (map[string]expected, error) {
	out := map[string]expected{}
	for _, f := range m.Files {
		podDir := filepath.Base(filepath.Dir(filepath.Dir(f.Path)))
		ns, _, ok := strings.Cut(podDir, "_")
		if !ok {
			return nil, fmt.Errorf("manifest path %s is not under <namespace>_<pod>_<uid>", f.Path)
		}
		e := out[ns]
		e.records += f.Records
		e.msgBytes += f.MsgBytes
		out[ns] = e
	}
	return out, nil
}

// engineSide is the engine's side of the benchmark, set up for one sink.
type engineSide struct {
	sink     string
	m        manifest
	want     map[string]expected
	fileRoot string
	mgr      *workers.Manager
	keys     []types.NamespacedName
	// null
	nulls map[string]*nullSink
	total atomic.Int64
	done  chan struct{}
	// loki
	rcv *lokireceiver.Receiver
}

// engine is the capture engine's side: workers.Manager reads the corpus
// from files, one pipeline per namespace selecting every pod of it, into
// a null sink, the product's File sink (raw) or its Loki sink to an
// in-process Loki receiver. When every record of the manifest was
// delivered and checked, it prints "records N", then waits to be measured
// and killed.
func engine(args []string) error {
	fs := flag.NewFlagSet("engine", flag.ContinueOnError)
	sinkKind := fs.String("sink", "null", "null, file or loki")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	out := fs.String("out", "", "the File sink's root (a temporary directory, removed after the run, when empty)")
	if err := fs.Parse(args); err != nil {
		return err //nolint:wrapcheck // the flag package said why
	}
	if fs.NArg() != 1 {
		return errors.New("usage: peerbench engine [-sink null|file|loki] [-cpuprofile FILE] DIR")
	}
	dir := fs.Arg(0)
	m, err := readManifest(dir)
	if err != nil {
		return err
	}
	want, err := expectedByNamespace(m)
	if err != nil {
		return err
	}
	pods, err := corpusPods(dir)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("creating the CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("starting the CPU profile: %w", err)
		}
	}
	e := &engineSide{sink: *sinkKind, m: m, want: want, nulls: map[string]*nullSink{}, done: make(chan struct{})}
	factory, sinkCfg, cleanup, err := e.sinks(*out)
	if err != nil {
		return err
	}
	defer cleanup()
	e.mgr, err = workers.NewManager(workers.Options{
		Files:                  &workers.FileSource{Root: dir, Node: benchNode},
		Pods:                   newPodCache(pods),
		Sinks:                  factory,
		Log:                    logr.Discard(),
		LogOpenRate:            productLogOpenRate,
		LogOpenBurst:           productLogOpenBurst,
		PositionsWriteRate:     productPositionsWriteRate,
		MaxStreamsPerNamespace: productMaxStreamsPerNamespace,
	})
	if err != nil {
		return fmt.Errorf("creating the engine: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan error, 1)
	go func() { started <- e.mgr.Start(ctx) }()
	var namespaces []string
	for _, p := range pods {
		if !slices.Contains(namespaces, p.namespace) {
			namespaces = append(namespaces, p.namespace)
		}
	}
	for _, ns := range namespaces {
		key := types.NamespacedName{Namespace: ns, Name: "bench"}
		e.keys = append(e.keys, key)
		err := e.mgr.Apply(ctx, key, capture.PipelineConfig{Namespace: ns, Name: key.Name, UID: "bench-" + ns,
			RotationInterval: 30 * time.Second, MaxStreams: 50, StartFromBeginning: true,
			Sinks: []capture.SinkConfig{sinkCfg}})
		if err != nil {
			return fmt.Errorf("applying the pipeline of %s: %w", ns, err)
		}
	}
	if err := e.wait(started); err != nil {
		return err
	}
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err := e.check(); err != nil {
		return err
	}
	fmt.Printf("records %d\n", m.Total.Records)
	_, _ = io.Copy(io.Discard, os.Stdin) // measured, then killed
	return nil
}

// sinks returns the sink factory and the SinkConfig of e's sink kind.
func (e *engineSide) sinks(out string) (capture.SinkFactory, capture.SinkConfig, func(), error) {
	nothing := func() {}
	queued := capture.SinkConfig{Name: e.sink, BatchMaxBytes: 1 << 20, BatchMaxWait: 100 * time.Millisecond,
		BufferMaxBytes: 8 << 20, WhenFull: sinks.Block, MinBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}
	switch e.sink {
	case "null":
		f := func(pipeline string, _ capture.SinkConfig) (capture.Sink, error) {
			s := &nullSink{total: &e.total, want: e.m.Total.Records, done: e.done}
			e.nulls[pipeline] = s // Apply calls the factory; one goroutine
			return s, nil
		}
		return f, capture.SinkConfig{Name: "null", Kind: "Null"}, nothing, nil
	case "file":
		root := out
		if root == "" {
			tmp, err := os.MkdirTemp("", "peerbench-file-")
			if err != nil {
				return nil, queued, nothing, fmt.Errorf("creating the File sink's root: %w", err)
			}
			root, nothing = tmp, func() { _ = os.RemoveAll(tmp) }
		}
		e.fileRoot = root
		factory := sinks.NewFactory(sinks.Options{FileRoot: root, Budget: sinks.NewBudget(productMemoryBudget)})
		queued.Kind = capture.SinkFile
		// One file per namespace (<root>/<ns>/bench.log), never rotated.
		queued.File = &capture.FileConfig{Path: "bench.log", Raw: true, MaxSize: 4 << 30, MaxFiles: 1}
		return factory.New, queued, nothing, nil
	case "loki":
		e.rcv = lokireceiver.New()
		// Every push is decoded and checked; only counts and bytes per
		// namespace are kept, not 780,000 entries.
		e.rcv.Summarize("namespace")
		srv := httptest.NewServer(e.rcv)
		factory := sinks.NewFactory(sinks.Options{AllowLoopbackEgress: true, Budget: sinks.NewBudget(productMemoryBudget)})
		queued.Kind = capture.SinkLoki
		queued.Loki = &capture.LokiConfig{URL: srv.URL, MetadataLabels: []string{"namespace", "container"}}
		return factory.New, queued, func() { e.rcv.Close(); srv.Close() }, nil
	}
	return nil, queued, nothing, fmt.Errorf("unknown sink %q: null, file or loki", e.sink)
}

// delivered is how many records the sinks delivered so far.
func (e *engineSide) delivered() int64 {
	switch e.sink {
	case "null":
		return e.total.Load()
	case "loki":
		return int64(e.rcv.Len())
	}
	var n int64
	for _, k := range e.keys {
		if s, ok := e.mgr.Snapshot(k); ok {
			for _, st := range s.Sinks {
				n += st.SentLines
			}
		}
	}
	return n
}

// wait returns once every record of the manifest was delivered.
func (e *engineSide) wait(started <-chan error) error {
	deadline := time.After(10 * time.Minute)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-e.done:
			return nil
		case err := <-started:
			return fmt.Errorf("the engine stopped: %w", err)
		case <-deadline:
			return fmt.Errorf("%d of %d records delivered in 10 minutes", e.delivered(), e.m.Total.Records)
		case <-tick.C:
			if e.sink != "null" && e.delivered() >= e.m.Total.Records {
				return nil
			}
		}
	}
}

// check compares what was delivered with the manifest, per namespace.
func (e *engineSide) check() error {
	var problems []string
	got := map[string]expected{}
	switch e.sink {
	case "null":
		for p, s := range e.nulls {
			ns, _, _ := strings.Cut(p, "/")
			got[ns] = expected{records: s.records.Load(), msgBytes: s.bytes.Load()}
		}
	case "file":
		// Raw: each record's line and a newline, nothing else.
		for ns, w := range e.want {
			st, err := os.Stat(filepath.Join(e.fileRoot, ns, "bench.log"))
			if err != nil {
				return fmt.Errorf("the File sink's output: %w", err)
			}
			if st.Size() != w.msgBytes+w.records {
				problems = append(problems, fmt.Sprintf("%s: %d bytes written, want %d (message bytes + one newline a record)",
					ns, st.Size(), w.msgBytes+w.records))
			}
			got[ns] = w // the sizes were checked; the counts come from the sinks
		}
		for _, k := range e.keys {
			s, _ := e.mgr.Snapshot(k)
			var n int64
			for _, st := range s.Sinks {
				n += st.SentLines
			}
			if n != e.want[k.Namespace].records {
				problems = append(problems, fmt.Sprintf("%s: the File sink wrote %d records, want %d", k.Namespace, n, e.want[k.Namespace].records))
			}
		}
	case "loki":
		for ns, t := range e.rcv.Summary() {
			g := got[ns]
			g.records += t.Entries
			g.msgBytes += t.Bytes
			got[ns] = g
		}
		if p := e.rcv.Problems(); len(p) > 0 {
			problems = append(problems, fmt.Sprintf("the Loki receiver saw %d problems, first: %s", len(p), p[0]))
		}
	}
	for ns, w := range e.want {
		if g := got[ns]; g != w {
			problems = append(problems, fmt.Sprintf("%s: %d records of %d message bytes delivered, the manifest has %d of %d",
				ns, g.records, g.msgBytes, w.records, w.msgBytes))
		}
	}
	for ns := range got {
		if _, ok := e.want[ns]; !ok {
			problems = append(problems, fmt.Sprintf("records of namespace %q, which the manifest does not have", ns))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("not byte-exact: %s", strings.Join(problems, "; "))
	}
	return nil
}
