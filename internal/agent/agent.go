// Package agent wires the node agent: the capture engine reading the
// kubelet's CRI files of one node, a node-scoped pod cache, the node-local
// positions journal, the product's sinks, and the link that follows the
// node's configuration from the operator (package agent/link). The agent
// holds no rights on Secrets, LogPipelines or SinkTargets: everything it
// runs comes from the operator, which sends each node only its own.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/fields"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/log-capturer/log-capturer/agent/control"
	"github.com/log-capturer/log-capturer/agent/identity"
	"github.com/log-capturer/log-capturer/agent/link"
	"github.com/log-capturer/log-capturer/capture/positionstore"
	"github.com/log-capturer/log-capturer/capture/sinks"
	"github.com/log-capturer/log-capturer/capture/workers"
)

// Options configure an agent.
type Options struct {
	// RestConfig reaches the API server (the pod cache only).
	RestConfig *rest.Config
	// Node is the node the agent runs on (the downward API's spec.nodeName);
	// it scopes the pod cache. What the agent is sent is decided by the
	// operator from the agent's token, not from this.
	Node string
	// PodsDir is the kubelet's pod log directory, /var/log/pods.
	PodsDir string
	// JournalDir holds the positions journal, a hostPath directory that
	// outlives the agent's pod.
	JournalDir string
	// Holder names this agent in the journal's lock file (its pod).
	Holder string
	// Pod is the agent's own pod. When its namespace and name are set, the
	// agent decides as it stops whether it is decommissioned (its
	// DaemonSet is gone, being deleted or another one, or its
	// ServiceAccount is no longer accepted) and then removes its journal's
	// files from JournalDir; unset (an agent run by hand, tests) it always
	// keeps them.
	Pod types.NamespacedName
	// OperatorURL is the operator's agent endpoint; OperatorCA the PEM of
	// the authority its certificate is checked against (the system's when
	// empty).
	OperatorURL string
	OperatorCA  []byte
	// TokenFile is the agent's projected ServiceAccount token.
	TokenFile string
	// MemoryBudget bounds the bytes all sinks' queues hold.
	MemoryBudget int64
	// Wait is how long one configuration request waits for a change.
	Wait time.Duration
	// ReportPeriod is how often the agent reports its numbers to the
	// operator (link.DefaultReportPeriod when zero).
	ReportPeriod time.Duration
	// AllowLoopbackEgress lets sinks reach loopback addresses (tests).
	AllowLoopbackEgress bool
	// HealthProbeBindAddress serves /healthz and /readyz (plain HTTP, no
	// tenant data); empty or "0" serves none.
	HealthProbeBindAddress string
	// MetricsBindAddress serves the agent's metrics, every series labelled
	// with its node; empty or "0" serves none. They are HTTPS to clients
	// the API server authorizes for GET /metrics, unless MetricsInsecure;
	// MetricsCertDir holds tls.crt and tls.key (self-signed when empty).
	MetricsBindAddress string
	MetricsInsecure    bool
	MetricsCertDir     string
	// SamplePeriod is how often the workers' numbers (health, lag) are
	// sampled; the engine's 15s when zero.
	SamplePeriod time.Duration
	// Log receives the agent's logs.
	Log logr.Logger
	// Ready, when set, is called with the link once the workers run; for
	// tests and the health endpoint.
	Ready func(*link.Follower)
}

// Run runs the agent until ctx ends, then stops the workers (draining the
// sinks, saving positions) and returns once every goroutine it started has.
func Run(ctx context.Context, o Options) error {
	if o.Node == "" || o.PodsDir == "" || o.JournalDir == "" || o.OperatorURL == "" || o.TokenFile == "" || o.RestConfig == nil {
		return errors.New("the agent needs its node, the pods and journal directories, the operator's URL, a token file and the API server")
	}
	httpClient, err := operatorClient(o.OperatorCA)
	if err != nil {
		return err
	}
	// The client's connections to the operator are the agent's: closed
	// when it stops, not left to the keep-alive timeout.
	defer httpClient.CloseIdleConnections()
	scheme := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return fmt.Errorf("building the scheme: %w", err)
	}
	pods, err := cache.New(o.RestConfig, cache.Options{Scheme: scheme, ByObject: map[client.Object]cache.ByObject{
		&corev1.Pod{}: {Field: fields.OneTermEqualSelector("spec.nodeName", o.Node)},
	}})
	if err != nil {
		return fmt.Errorf("creating the pod cache of node %s: %w", o.Node, err)
	}
	// The agent's own pod and DaemonSet, read as it stops: whether it is
	// decommissioned.
	var owners ownerChecker
	if o.Pod.Namespace != "" && o.Pod.Name != "" {
		cs, err := kubernetes.NewForConfig(o.RestConfig)
		if err != nil {
			return fmt.Errorf("creating the client that reads the agent's pod and DaemonSet: %w", err)
		}
		owners = apiOwners{cs: cs, pod: o.Pod}
	}
	// The probes answer from the start: while this agent waits for the
	// journal's lock (the one it replaces still drains) it is alive and
	// ready, so that a surge rollout deletes the old agent and the lock
	// passes.
	health := &healthState{}
	if o.HealthProbeBindAddress != "" && o.HealthProbeBindAddress != "0" {
		stopHealth, err := serveHealth(ctx, o.HealthProbeBindAddress, health, o.Log.WithName("probes"))
		if err != nil {
			return err
		}
		defer stopHealth()
	}
	health.set("waiting for the positions journal's lock in " + o.JournalDir)
	journal, err := positionstore.OpenJournal(ctx, o.JournalDir, positionstore.JournalOptions{Holder: o.Holder})
	if err != nil {
		return err //nolint:wrapcheck // OpenJournal names the directory
	}
	defer journal.Close()
	budget := o.MemoryBudget
	if budget <= 0 {
		budget = 256 << 20
	}
	factory := sinks.NewFactory(sinks.Options{AllowLoopbackEgress: o.AllowLoopbackEgress, Budget: sinks.NewBudget(budget)})
	log := o.Log
	engine, err := workers.NewManager(workers.Options{
		Files:          &workers.FileSource{Root: o.PodsDir, Node: o.Node},
		Pods:           pods,
		Sinks:          factory.New,
		ForgetPipeline: factory.ForgetPipeline,
		Positions:      journal,
		SamplePeriod:   o.SamplePeriod,
		Log:            log.WithName("workers"),
	})
	if err != nil {
		return fmt.Errorf("creating the capture engine: %w", err)
	}
	if o.MetricsBindAddress != "" && o.MetricsBindAddress != "0" {
		reg, err := metricsRegistry(o.Node, engine, factory)
		if err != nil {
			return err
		}
		stopMetrics, err := serveMetrics(ctx, o, reg, log.WithName("metrics"))
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	token := link.TokenFile(o.TokenFile)
	follower := &link.Follower{URL: o.OperatorURL, Client: httpClient, Token: token, Workers: engine, Wait: o.Wait}
	reporter := &link.Reporter{URL: o.OperatorURL, Client: httpClient, Token: token, Period: o.ReportPeriod,
		Report: func() control.Report { return report(follower.Status(), engine) }}

	// Four goroutines, all owned here: the cache, the engine, the link and
	// the reporter. The link and the reporter stop first (no more
	// changes), then the engine (draining the sinks, saving positions),
	// then the cache its informer handlers hang on; deferred calls run in
	// that order.
	cacheCtx, stopCache := context.WithCancel(context.WithoutCancel(ctx))
	var cacheWG sync.WaitGroup
	defer func() { stopCache(); cacheWG.Wait() }()
	cacheWG.Go(func() { _ = pods.Start(cacheCtx) })
	if !pods.WaitForCacheSync(ctx) {
		return fmt.Errorf("the pod cache of node %s did not sync: %w", o.Node, context.Cause(ctx))
	}
	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	var engineWG sync.WaitGroup
	var engineErr error
	defer func() { stopEngine(); engineWG.Wait() }()
	engineWG.Go(func() { engineErr = engine.Start(engineCtx) })
	if o.Ready != nil {
		o.Ready(follower)
	}
	health.follower.Store(follower)
	health.set("running")
	log.Info("agent started", "node", o.Node, "podsDir", o.PodsDir, "journal", o.JournalDir, "operator", o.OperatorURL)
	reportCtx, stopReports := context.WithCancel(ctx)
	var reportWG sync.WaitGroup
	reportWG.Go(func() { _ = reporter.Run(logr.NewContext(reportCtx, log.WithName("report"))) })
	linkErr := follower.Run(logr.NewContext(ctx, log.WithName("link")))
	stopReports()
	reportWG.Wait()
	stopEngine()
	engineWG.Wait()
	if engineErr != nil {
		return fmt.Errorf("running the capture engine: %w", engineErr)
	}
	// The workers drained and saved their positions: the last report has
	// them, so that an operator in auto mode hands the node to the API
	// from where the agent left off.
	if err := reporter.Final(context.WithoutCancel(ctx), 5*time.Second, report(follower.Status(), engine)); err != nil {
		log.Info("the final report did not reach the operator; it resumes the node from the last report", "error", err.Error())
	}
	// Positions saved and reported: an agent whose DaemonSet is being
	// removed leaves no journal on the node; any other keeps it for the
	// next agent.
	if owners != nil {
		cleanUpIfDecommissioned(ctx, owners, journal, log.WithName("decommission"))
	}
	return linkErr
}

// report is the agent's report: the numbers of every pipeline the link
// applied, as its workers count them.
func report(st link.Status, engine *workers.Manager) control.Report {
	r := control.Report{Revision: st.Revision, Pipelines: make([]control.PipelineReport, 0, len(st.Keys))}
	for _, k := range st.Keys {
		// After the engine stopped (the final report) a pipeline has no
		// numbers but its last positions.
		s, ok := engine.Snapshot(k)
		pos := engine.Positions(k)
		if !ok && len(pos) == 0 {
			continue
		}
		r.Pipelines = append(r.Pipelines, control.PipelineReport{Namespace: k.Namespace, Name: k.Name, Snapshot: s, Positions: pos})
	}
	return r
}

// operatorClient is the HTTPS client of the operator's agent endpoint.
func operatorClient(caPEM []byte) (*http.Client, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("the operator's CA holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr}, nil
}

// ReadCA reads a PEM file; an empty path is no CA.
func ReadCA(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path) //nolint:gosec // the operator's CA, from the agent's flags
	if err != nil {
		return nil, fmt.Errorf("reading the operator's CA: %w", err)
	}
	return b, nil
}

// serviceAccountNamespace is where a pod finds its ServiceAccount's
// namespace, its own.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// podNamespace is $POD_NAMESPACE, or in a pod its ServiceAccount's
// namespace, or "".
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	b, err := os.ReadFile(serviceAccountNamespace)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Command parses the agent's flags and runs it until ctx ends or a
// termination signal arrives.
func Command(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o                   Options
		kubeconfig, caFile  string
		budget              string
		zapOpts             zap.Options
		allowLoopbackEgress bool
	)
	fs.StringVar(&o.Node, "node", os.Getenv("NODE_NAME"), "The node the agent runs on ($NODE_NAME, from the downward API's spec.nodeName); it scopes the pod watch. What the agent is sent is decided by the operator from its token.")
	fs.StringVar(&o.PodsDir, "pods-dir", "/var/log/pods", "The kubelet's pod log directory, mounted read-only.")
	fs.StringVar(&o.JournalDir, "journal-dir", "/var/lib/log-capturer/agent", "The directory of the positions journal, on the node (a hostPath): it outlives the agent's pod, and one agent holds it at a time.")
	fs.StringVar(&o.Holder, "holder", os.Getenv("POD_NAME"), "The agent's name in the journal's lock ($POD_NAME).")
	fs.StringVar(&o.Pod.Name, "pod-name", os.Getenv("POD_NAME"), "The agent's pod ($POD_NAME). As it stops, the agent reads it and the DaemonSet that owns it, and removes its journal's files when that DaemonSet is gone (an uninstall); empty, it always keeps them.")
	fs.StringVar(&o.Pod.Namespace, "pod-namespace", podNamespace(), "The namespace of the agent's pod ($POD_NAMESPACE, or its ServiceAccount's namespace in a cluster).")
	fs.StringVar(&o.OperatorURL, "operator-url", "", "The operator's agent endpoint, https://log-capturer-agents.<namespace>.svc:9443.")
	fs.StringVar(&caFile, "operator-ca", "", "PEM file of the authority the operator's certificate is checked against; the system's when empty.")
	fs.StringVar(&o.TokenFile, "token-file", "/var/run/secrets/log-capturer/token", "The agent's projected ServiceAccount token (audience "+identity.Audience+"), read again at every request.")
	fs.StringVar(&budget, "memory-budget", "256Mi", "Bytes all sinks' queues of this agent may hold.")
	fs.DurationVar(&o.Wait, "wait", 30*time.Second, "How long one configuration request waits for a change.")
	fs.DurationVar(&o.ReportPeriod, "report-period", link.DefaultReportPeriod, "How often the agent reports its numbers to the operator.")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "Address /healthz and /readyz bind to; 0 disables them.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8443", "Address the Prometheus metrics endpoint binds to, every series labelled with the agent's node; 0 disables it.")
	fs.BoolVar(&o.MetricsInsecure, "metrics-insecure", false, "Serve metrics over plain HTTP to anyone who can connect. Off, they are served over HTTPS (the certificate in --metrics-cert-dir, or a self-signed one) only to clients whose bearer token the API server authenticates and authorizes for GET /metrics (the log-capturer-metrics-reader ClusterRole grants it).")
	fs.StringVar(&o.MetricsCertDir, "metrics-cert-dir", "", "Directory with tls.crt and tls.key for the metrics endpoint, reloaded when they change; a self-signed certificate when empty.")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Path to a kubeconfig; in-cluster configuration or $KUBECONFIG when empty.")
	fs.BoolVar(&allowLoopbackEgress, "allow-loopback-egress", false, "Let sinks connect to loopback addresses (tests only).")
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err //nolint:wrapcheck // flag errors are already user-facing
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	q, err := resource.ParseQuantity(budget)
	if err != nil || q.Sign() <= 0 {
		return fmt.Errorf("--memory-budget=%q is not a positive quantity such as 256Mi", budget)
	}
	o.MemoryBudget, o.AllowLoopbackEgress = q.Value(), allowLoopbackEgress
	if o.OperatorCA, err = ReadCA(caFile); err != nil {
		return err
	}
	if kubeconfig != "" {
		o.RestConfig, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		o.RestConfig, err = config.GetConfig()
	}
	if err != nil {
		return fmt.Errorf("loading Kubernetes client configuration: %w", err)
	}
	zapOpts.DestWriter = stderr
	o.Log = zap.New(zap.UseFlagOptions(&zapOpts))
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, o)
}
