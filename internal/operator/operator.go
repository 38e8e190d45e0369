// Package operator is the wiring of `log-capturer operator`: it composes
// the controller-runtime manager, the controllers, the capture engine with
// its API log source, the sinks and the position store. It is the only
// package that imports the engine, the sinks and the controllers together;
// nothing imports it but main and tests.
package operator

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/apisource"
	"github.com/log-capturer/log-capturer/capture/positionstore"
	"github.com/log-capturer/log-capturer/capture/sinks"
	"github.com/log-capturer/log-capturer/capture/workers"
	"github.com/log-capturer/log-capturer/controllers"
)

// LeaderElectionID is the Lease the operator's replicas compete for.
const LeaderElectionID = "log-capturer.logs.capturer.dev"

// Defaults of the operator's API rates: the binary ships these, and tests
// that run the operator use them unless they say otherwise.
const (
	DefaultKubeAPIQPS   = 50
	DefaultKubeAPIBurst = 100
	DefaultLogOpenRate  = 50
	DefaultLogOpenBurst = 50
	// DefaultPositionsWriteRate fits 100 pipelines at the 5s default
	// positions.writeInterval.
	DefaultPositionsWriteRate = 20
)

// Options are the operator's settings.
type Options struct {
	Kubeconfig          string
	MetricsBindAddress  string
	HealthProbeBindAddr string
	LeaderElect         bool
	LeaderElectionNS    string
	FileSinkRoot        string
	// PositionsNamespace is where pipelines' positions are kept; the
	// operator's own namespace when empty ("default" out of a cluster).
	PositionsNamespace string
	Zap                zap.Options
	HealthSamplePeriod time.Duration
	// KubeAPIQPS and KubeAPIBurst are client-go's client-side limit for the
	// operator's API requests other than log streams.
	KubeAPIQPS   float64
	KubeAPIBurst int
	// LogOpenRate and LogOpenBurst bound the log streams the process opens
	// per second, fairly shared between namespaces; a negative rate is
	// unlimited. Zero values of these four take the defaults the binary
	// ships, so that an embedder (or a test) runs what users run.
	LogOpenRate  float64
	LogOpenBurst int
	// PositionsWriteRate bounds the positions writes of the process per
	// second, fairly shared between namespaces; negative is unlimited.
	PositionsWriteRate float64
	// RestConfig, when set, is used instead of --kubeconfig.
	RestConfig *rest.Config
	// WrapSinks, when set, wraps the sink factory: an embedder adds or
	// decorates sinks (tests inject faulty ones). Nil runs the built-in sinks.
	WrapSinks func(capture.SinkFactory) capture.SinkFactory
}

// BindFlags registers the operator's flags on fs.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "Path to a kubeconfig; in-cluster configuration or $KUBECONFIG when empty.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	fs.StringVar(&o.HealthProbeBindAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to; 0 disables them.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", true, "Elect a leader among replicas; only the leader runs controllers and workers.")
	fs.StringVar(&o.LeaderElectionNS, "leader-election-namespace", "", "Namespace of the leader election Lease; the operator's own namespace when empty.")
	fs.StringVar(&o.PositionsNamespace, "positions-namespace", "", "Namespace where pipelines' positions are kept, out of tenants' reach; the operator's own namespace when empty (\"default\" outside a cluster).")
	fs.StringVar(&o.FileSinkRoot, "file-sink-root", "/var/lib/log-capturer/files", "The only directory under which File sinks may write.")
	fs.DurationVar(&o.HealthSamplePeriod, "health-sample-period", 15*time.Second, "How often each pipeline's numbers are sampled and its health re-judged.")
	fs.Float64Var(&o.KubeAPIQPS, "kube-api-qps", DefaultKubeAPIQPS, "Client-side rate limit of the operator's API requests (reads, status, positions writes); log streams are paced by --log-open-rate instead.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", DefaultKubeAPIBurst, "Burst of --kube-api-qps.")
	fs.Float64Var(&o.LogOpenRate, "log-open-rate", DefaultLogOpenRate, "Log streams the operator opens per second at most, shared fairly between namespaces: containers ÷ rotation interval, summed over all pipelines, must fit (50/s fits 15,000 containers at the 5m default rotation); negative is unlimited.")
	fs.IntVar(&o.LogOpenBurst, "log-open-burst", DefaultLogOpenBurst, "Log streams opened at once before --log-open-rate applies.")
	fs.Float64Var(&o.PositionsWriteRate, "positions-write-rate", DefaultPositionsWriteRate, "Positions objects the operator writes per second at most, shared fairly between namespaces: pipelines ÷ positions.writeInterval must fit (20/s fits 100 pipelines at the 5s default), or writes are spaced out; negative is unlimited.")
	o.Zap.BindFlags(fs)
}

// ownNamespace is the namespace the operator's pod runs in, or "default"
// when it runs outside a cluster.
func ownNamespace() string {
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return "default"
	}
	return strings.TrimSpace(string(b))
}

// NewStreamClientset returns the clientset log streams are opened with:
// they are paced by the engine's own open limiter, fair between namespaces,
// so client-go's limiter must not throttle them underneath.
func NewStreamClientset(cfg *rest.Config) (kubernetes.Interface, error) {
	streamCfg := rest.CopyConfig(cfg)
	streamCfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	c, err := kubernetes.NewForConfig(streamCfg)
	if err != nil {
		return nil, fmt.Errorf("creating the log stream clientset: %w", err)
	}
	return c, nil
}

// NewScheme returns the scheme with the Kubernetes and log-capturer types.
func NewScheme() (*k8sruntime.Scheme, error) {
	s := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding Kubernetes types to scheme: %w", err)
	}
	if err := logsv1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding log-capturer types to scheme: %w", err)
	}
	return s, nil
}

// Command parses the operator's flags and runs it until ctx ends or a
// termination signal arrives.
func Command(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("operator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	o.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err //nolint:wrapcheck // flag errors are already user-facing
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	o.Zap.DestWriter = stderr
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.Zap)))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, o)
}

// Run builds the manager with the controllers and the capture engine and
// runs it until ctx ends.
func Run(ctx context.Context, o Options) error {
	o.KubeAPIQPS = cmp.Or(o.KubeAPIQPS, DefaultKubeAPIQPS)
	o.KubeAPIBurst = cmp.Or(o.KubeAPIBurst, DefaultKubeAPIBurst)
	o.LogOpenRate = cmp.Or(o.LogOpenRate, DefaultLogOpenRate)
	o.LogOpenBurst = cmp.Or(o.LogOpenBurst, DefaultLogOpenBurst)
	o.PositionsWriteRate = cmp.Or(o.PositionsWriteRate, DefaultPositionsWriteRate)
	root, err := filepath.Abs(o.FileSinkRoot)
	if err != nil {
		return fmt.Errorf("resolving --file-sink-root: %w", err)
	}
	o.FileSinkRoot = root
	cfg := o.RestConfig
	switch {
	case cfg != nil:
	case o.Kubeconfig != "":
		if cfg, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig); err != nil {
			return fmt.Errorf("loading kubeconfig %s: %w", o.Kubeconfig, err)
		}
	default:
		if cfg, err = config.GetConfig(); err != nil {
			return fmt.Errorf("loading Kubernetes client configuration: %w", err)
		}
	}
	scheme, err := NewScheme()
	if err != nil {
		return err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst, cfg.RateLimiter = float32(o.KubeAPIQPS), o.KubeAPIBurst, nil
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsBindAddress},
		HealthProbeBindAddress:        o.HealthProbeBindAddr,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
		Client: client.Options{Cache: &client.CacheOptions{
			// Secrets are read on demand and watched as metadata only.
			DisableFor: []client.Object{&corev1.Secret{}},
		}},
		// Run may run again in the same process once it returned (the demo
		// and the tests do); its two controllers are registered once per
		// manager here, which is what the name check guards.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating clientset: %w", err)
	}
	positionsNS := cmp.Or(o.PositionsNamespace, ownNamespace())
	streams, err := NewStreamClientset(cfg)
	if err != nil {
		return err
	}
	rejects := controllers.NewRejectRecorder(mgr.GetEventRecorder("sink"), mgr.GetClient())
	if err := mgr.Add(rejects); err != nil {
		return fmt.Errorf("adding the rejection recorder: %w", err)
	}
	factory := sinks.NewFactory(sinks.Options{Stdout: os.Stdout, FileRoot: o.FileSinkRoot, OnReject: rejects.Record})
	newSink := capture.SinkFactory(factory.New)
	if o.WrapSinks != nil {
		newSink = o.WrapSinks(newSink)
	}
	engine, err := workers.NewManager(workers.Options{
		Source:             apisource.New(streams),
		LogOpenRate:        o.LogOpenRate,
		LogOpenBurst:       o.LogOpenBurst,
		PositionsWriteRate: o.PositionsWriteRate,
		Pods:               mgr.GetCache(),
		Sinks:              newSink,
		Log:                ctrl.Log.WithName("workers"),
		ForgetPipeline:     factory.ForgetPipeline,
		Positions:          &positionstore.ConfigMapStore{Client: clientset, Namespace: positionsNS, OwnerKind: "LogPipeline"},
		SamplePeriod:       o.HealthSamplePeriod,
	})
	if err != nil {
		return fmt.Errorf("creating the capture engine: %w", err)
	}
	for _, c := range []prometheus.Collector{engine, factory} {
		if err := ctrlmetrics.Registry.Register(c); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	defer ctrlmetrics.Registry.Unregister(engine)
	defer ctrlmetrics.Registry.Unregister(factory)
	if err := mgr.Add(engine); err != nil {
		return fmt.Errorf("adding the capture engine: %w", err)
	}
	if err := controllers.Setup(ctx, mgr, engine, controllers.Options{Prober: factory, Deliveries: engine,
		SamplePeriod: o.HealthSamplePeriod}); err != nil {
		return err //nolint:wrapcheck // Setup names the controller
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}
	ctrl.LoggerFrom(ctx).Info("starting operator", "fileSinkRoot", o.FileSinkRoot, "leaderElection", o.LeaderElect)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}
