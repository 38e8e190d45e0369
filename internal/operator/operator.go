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
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/log-capturer/log-capturer/agent/control"
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
	DefaultKubeAPIQPS   = 100
	DefaultKubeAPIBurst = 200
	DefaultLogOpenRate  = 50
	DefaultLogOpenBurst = 50
	// DefaultPositionsWriteRate fits 100 pipelines at the 5s default
	// positions.writeInterval.
	DefaultPositionsWriteRate = 20
	// DefaultSinkTypesFlag is the sink types of namespaces without a
	// CapturePolicy.
	DefaultSinkTypesFlag = "Loki,HTTP,OTLP,Kafka,Elasticsearch,OpenSearch,S3"
	// DefaultMaxStreamsPerNamespace is the streams one namespace may hold
	// open at once: a tenant cannot take all the API server's long-running
	// requests.
	DefaultMaxStreamsPerNamespace = 1000
	// DefaultFileQuotaPerNamespace fits one File sink with the default
	// maxSize (100Mi) and maxFiles (5) with room to spare.
	DefaultFileQuotaPerNamespace = 1 << 30
	// DefaultFileQuotaTotal is 7/8 of the 2Gi sizeLimit of the shipped
	// manifest's file volume.
	DefaultFileQuotaTotal = 1792 << 20
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
	// MemoryBudget bounds the bytes all sinks' queues hold, divided fairly
	// between namespaces. Zero derives it from the container's memory limit
	// (40% of it; 256Mi without a limit) and also sets the Go runtime's soft
	// limit to 90% of it unless GOMEMLIMIT is set; negative is unlimited.
	MemoryBudget int64
	// MinRotationInterval is the shortest spec.rotation.interval a pipeline
	// may ask for; shorter ones are refused with OutsideOperatorLimits.
	// Zero is the schema's own minimum, 1s.
	MinRotationInterval time.Duration
	// MaxStreamsPerNamespace bounds the log streams open at once over all
	// pipelines of one namespace; zero takes DefaultMaxStreamsPerNamespace,
	// negative is unlimited.
	MaxStreamsPerNamespace int
	// FileQuotaPerNamespace and FileQuotaTotal bound what File sinks may
	// keep under FileSinkRoot (maxSize × (maxFiles + 1) of each file), per
	// namespace and over all; zero takes the defaults, negative is unlimited.
	// The total must fit the volume (the shipped manifest's emptyDir has a
	// sizeLimit of 2Gi: beyond it the kubelet evicts the operator).
	FileQuotaPerNamespace, FileQuotaTotal int64
	// AllowRawStdout lets Stdout sinks use format Raw, which writes the
	// containers' bytes unescaped into the operator's own log.
	AllowRawStdout bool
	// AllowInsecureSkipVerify lets sinks use tls.insecureSkipVerify.
	AllowInsecureSkipVerify bool
	// DefaultSinkTypes are the sink types SinkTargets may use in namespaces
	// that no CapturePolicy selects; empty takes DefaultSinkTypes (Loki,
	// HTTP, OTLP, Kafka, Elasticsearch, OpenSearch and S3, which send over the network: Stdout and File write into the operator's own log and volume,
	// and stay the admin's).
	DefaultSinkTypes []string
	// WatchSecrets watches Secrets' metadata cluster-wide so that a changed
	// credential or consent is seen at once; it needs list and watch on
	// Secrets (config/rbac/secret_watch_role.yaml). Off, Secrets are read
	// again at every reconcile (each --health-sample-period) and the
	// operator may only get them.
	WatchSecrets bool
	// MetricsInsecure serves metrics over plain HTTP without authentication;
	// by default they are served over HTTPS to authorized clients only.
	MetricsInsecure bool
	// MetricsCertDir holds the metrics endpoint's tls.crt and tls.key.
	MetricsCertDir string
	// AllowLoopbackEgress lets sinks and probes connect to loopback
	// addresses (the operator's own ports); for tests and the demo, whose
	// receivers run beside the operator.
	AllowLoopbackEgress bool
	// Capture is where logs are read: CaptureAPI (the default) in the
	// operator's own workers through pods/log, CaptureAgent by the node
	// agents from the kubelet's files.
	Capture string
	// AgentBindAddress is where the leader serves the node agents (agent
	// capture), over TLS with the certificate in AgentCertDir (tls.crt and
	// tls.key, reloaded when they change).
	AgentBindAddress string
	AgentCertDir     string
	// AgentCertHosts are the DNS names and IPs of the self-managed
	// certificate (used when AgentCertDir is empty); the agent Service's
	// in-cluster names when empty.
	AgentCertHosts []string
	// AgentServiceAccount is the agents' ServiceAccount, namespace/name or
	// a name in the operator's namespace (DefaultAgentServiceAccount when
	// empty); only its pod-bound tokens are agents'.
	AgentServiceAccount string
	// AgentStaleAfter is how old an agent's last report may be before its
	// node is named stale (control.DefaultStaleAfter when zero).
	AgentStaleAfter time.Duration
	// AgentHandBackAfter is how long, in auto capture mode, a node stays
	// with its agent after its last agent pod went, before the API reads it
	// (control.DefaultHandBackAfter when zero).
	AgentHandBackAfter time.Duration
	// RestConfig, when set, is used instead of --kubeconfig.
	RestConfig *rest.Config
	// WrapSinks, when set, wraps the sink factory: an embedder adds or
	// decorates sinks (tests inject faulty ones). Nil runs the built-in sinks.
	WrapSinks func(capture.SinkFactory) capture.SinkFactory
}

// BindFlags registers the operator's flags on fs.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "Path to a kubeconfig; in-cluster configuration or $KUBECONFIG when empty.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8443", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	fs.BoolVar(&o.MetricsInsecure, "metrics-insecure", false, "Serve metrics over plain HTTP to anyone who can connect. Off, they are served over HTTPS (the certificate in --metrics-cert-dir, or a self-signed one) only to clients whose bearer token the API server authenticates and authorizes for GET /metrics (a TokenReview and a SubjectAccessReview; the log-capturer-metrics-reader ClusterRole grants it).")
	fs.StringVar(&o.MetricsCertDir, "metrics-cert-dir", "", "Directory with tls.crt and tls.key for the metrics endpoint, reloaded when they change; a self-signed certificate when empty.")
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
	fs.Var(quantityFlag{&o.MemoryBudget}, "memory-budget", "Bytes all sinks' queues may hold (e.g. 256Mi), divided fairly between namespaces; a namespace over its share gets its sinks' whenFull behaviour. auto is 40% of the container's memory limit (256Mi without one), and then GOMEMLIMIT defaults to 90% of the limit; unlimited turns the budget off.")
	fs.Var(quantityFlag{&o.FileQuotaPerNamespace}, "file-quota-per-namespace", "Bytes the File sinks of one namespace may keep under --file-sink-root, counted as maxSize × (maxFiles + 1) of each file; a File sink beyond it is refused. auto is 1Gi; unlimited turns it off.")
	fs.Var(quantityFlag{&o.FileQuotaTotal}, "file-quota-total", "Bytes the File sinks of all namespaces may keep under --file-sink-root, counted the same way; it must fit the volume. auto is 1792Mi (the shipped volume's sizeLimit is 2Gi); unlimited turns it off.")
	fs.BoolVar(&o.AllowLoopbackEgress, "allow-loopback-egress", false, "Let sinks and probes connect to loopback addresses, checked after DNS resolution (the operator's own ports: off, a tenant cannot reach them). Link-local and cloud metadata addresses are refused always.")
	fs.BoolVar(&o.AllowInsecureSkipVerify, "allow-insecure-skip-verify", false, "Let sinks set tls.insecureSkipVerify, which sends their credentials to whoever answers; off, such a SinkTarget is refused with OutsideOperatorLimits.")
	fs.BoolVar(&o.WatchSecrets, "watch-secrets", false, "Watch Secrets' metadata cluster-wide so that a changed credential or consent is seen at once; needs list and watch on Secrets (config/rbac/secret_watch_role.yaml). Off, Secrets are read again at every reconcile (each --health-sample-period) and the operator needs only get.")
	fs.Var(sinkTypesFlag{&o.DefaultSinkTypes}, "default-sink-types", "Sink types SinkTargets may use in namespaces that no CapturePolicy selects, comma-separated from Loki, HTTP, OTLP, Kafka, Elasticsearch, OpenSearch, S3, File and Stdout (default "+DefaultSinkTypesFlag+"); other types are refused there with OutsideOperatorLimits, and a CapturePolicy may allow them.")
	fs.BoolVar(&o.AllowRawStdout, "allow-raw-stdout", false, "Let Stdout sinks use format Raw, which writes the containers' bytes unescaped (terminal escapes, forged log lines) into the operator's own log; off, such a SinkTarget is refused with OutsideOperatorLimits.")
	fs.DurationVar(&o.MinRotationInterval, "min-rotation-interval", time.Second, "Shortest spec.rotation.interval a pipeline may ask for; shorter ones are refused with OutsideOperatorLimits.")
	fs.IntVar(&o.MaxStreamsPerNamespace, "max-streams-per-namespace", DefaultMaxStreamsPerNamespace, "Log streams open at once over all pipelines of one namespace; more wait for a slot (StreamPoolSaturated says so); negative is unlimited.")
	fs.StringVar(&o.Capture, "capture", CaptureAPI, "Where logs are read: api (the operator's workers follow pods/log through the API server), agent (the node agents of the log-capturer-agent DaemonSet read the kubelet's files; the operator serves them their configuration on --agent-bind-address) or auto (nodes with an agent pod are read by it, the others through the API; containers are handed over, at their positions, as agents come and go).")
	fs.StringVar(&o.AgentBindAddress, "agent-bind-address", ":9443", "Address the leader serves the node agents on (HTTPS; --capture=agent).")
	fs.StringVar(&o.AgentCertDir, "agent-cert-dir", "", "Directory with tls.crt and tls.key of the agent endpoint (from cert-manager, say), reloaded when they change. Empty, the operator issues them from an authority of its own kept in Secret "+AgentTLSSecret+" of its namespace, and publishes the authority in ConfigMap "+AgentCAConfigMap+" of the agents' namespace for them to mount.")
	fs.Var(listFlag{&o.AgentCertHosts}, "agent-cert-hosts", "Comma-separated DNS names and IPs of the self-managed agent endpoint certificate; default "+DefaultAgentService+".<namespace>.svc and .svc.cluster.local.")
	fs.DurationVar(&o.AgentHandBackAfter, "agent-handback-after", control.DefaultHandBackAfter, "With --capture=auto, how long a node stays with its agent after its last agent pod went (longer than the DaemonSet takes to recreate one) before the operator reads its pods through the API, from the agent's last positions.")
	fs.DurationVar(&o.AgentStaleAfter, "agent-stale-after", control.DefaultStaleAfter, "How old a node agent's last report may be before the pipelines of its node say AgentsMissing, naming it (agents report every 10s).")
	fs.StringVar(&o.AgentServiceAccount, "agent-service-account", DefaultAgentServiceAccount, "The node agents' ServiceAccount, a name in the operator's namespace or namespace/name; only its pod-bound tokens get a node's configuration.")
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
// so client-go's limiter must not throttle them underneath. The clientset has
// a transport of its own; closeIdle closes its idle connections (and their
// goroutines) once nothing streams through it any more.
func NewStreamClientset(cfg *rest.Config) (c kubernetes.Interface, closeIdle func(), err error) {
	streamCfg := rest.CopyConfig(cfg)
	streamCfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	// A Proxy function makes client-go build this clientset its own
	// transport rather than share (and wrap) a cached one, so that the
	// window below applies to it alone and before its first connection.
	if streamCfg.Proxy == nil {
		streamCfg.Proxy = http.ProxyFromEnvironment
	}
	var transports []*http.Transport
	wrap := streamCfg.WrapTransport
	streamCfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		if t, ok := rt.(*http.Transport); ok {
			limitStreamWindow(t)
			transports = append(transports, t)
		}
		if wrap != nil {
			return wrap(rt)
		}
		return rt
	}
	c, err = kubernetes.NewForConfig(streamCfg)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the log stream clientset: %w", err)
	}
	return c, func() {
		for _, t := range transports {
			t.CloseIdleConnections()
		}
	}, nil
}

// StreamReceiveWindow is the HTTP/2 flow-control window of one log stream:
// what the client buffers of a stream its reader does not take (a pipeline
// held back by a full sink). Go's default is 4 MiB per stream, so 1000
// held-back streams would buffer 4 GiB outside every budget; at 64 KiB they
// buffer 64 MiB, and a stream that is read still moves 64 KiB per round
// trip to the API server.
const StreamReceiveWindow = 64 << 10

// limitStreamWindow sets the per-stream HTTP/2 receive window of client-go's
// transport; golang.org/x/net/http2 reads it from the transport's HTTP2
// settings when it opens a connection.
func limitStreamWindow(t *http.Transport) {
	if t.HTTP2 == nil {
		t.HTTP2 = &http.HTTP2Config{}
	}
	t.HTTP2.MaxReceiveBufferPerStream = StreamReceiveWindow
}

// metricsOptions serves metrics over HTTPS to clients the API server
// authenticates and authorizes, unless --metrics-insecure: pipeline names and
// rates of every tenant are in them.
func metricsOptions(o Options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.MetricsBindAddress}
	if !o.MetricsInsecure {
		m.SecureServing, m.CertDir = true, o.MetricsCertDir
		m.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return m
}

// secretMetadata is the object of the metadata-only Secret watch.
func secretMetadata() client.Object {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// stripSecretMetadata keeps of a watched Secret's metadata only what the
// operator uses: names, labels and its consent annotation. The rest is
// dropped before it is cached, above all kubectl's last-applied-configuration
// annotation, which holds the plaintext of every Secret applied with kubectl,
// and managedFields.
func stripSecretMetadata(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	if v, ok := m.Annotations[logsv1alpha1.AnnotationSinkTargets]; ok {
		m.Annotations = map[string]string{logsv1alpha1.AnnotationSinkTargets: v}
	} else {
		m.Annotations = nil
	}
	m.ManagedFields = nil
	return m, nil
}

// sinkTypesFlag is a comma-separated list of sink types.
type sinkTypesFlag struct{ v *[]string }

func (f sinkTypesFlag) String() string {
	if f.v == nil {
		return ""
	}
	return strings.Join(*f.v, ",")
}

func (f sinkTypesFlag) Set(s string) error {
	types := strings.Split(s, ",")
	if _, err := parseSinkTypes(types); err != nil {
		return err
	}
	*f.v = types
	return nil
}

// parseSinkTypes checks sink type names as the flag and Options give them.
func parseSinkTypes(names []string) ([]logsv1alpha1.PolicySinkType, error) {
	var out []logsv1alpha1.PolicySinkType
	for _, n := range names {
		t := logsv1alpha1.PolicySinkType(strings.TrimSpace(n))
		switch t {
		case logsv1alpha1.PolicySinkType(logsv1alpha1.SinkTypeLoki), logsv1alpha1.PolicySinkType(logsv1alpha1.SinkTypeHTTP),
			logsv1alpha1.PolicySinkType(logsv1alpha1.SinkTypeOTLP), logsv1alpha1.PolicySinkType(logsv1alpha1.SinkTypeKafka),
			logsv1alpha1.PolicySinkType(logsv1alpha1.SinkTypeElasticsearch), logsv1alpha1.PolicySinkType(logsv1alpha1.SinkTypeOpenSearch),
			logsv1alpha1.PolicySinkType(logsv1alpha1.SinkTypeS3),
			logsv1alpha1.PolicySinkType(logsv1alpha1.SinkTypeFile), logsv1alpha1.PolicySinkType(logsv1alpha1.SinkTypeStdout):
			out = append(out, t)
		default:
			return nil, fmt.Errorf("--default-sink-types: %q is not a sink type (Loki, HTTP, OTLP, Kafka, Elasticsearch, OpenSearch, S3, File or Stdout)", n)
		}
	}
	return out, nil
}

// keepNodeAddresses keeps of a cached Node only what the egress rules need:
// its name and addresses (a node's images, conditions and labels can be
// large, and there may be thousands of nodes).
func keepNodeAddresses(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion},
		Status:     corev1.NodeStatus{Addresses: n.Status.Addresses},
	}, nil
}

// apiServerAddresses are the addresses the operator reaches the API server
// at: its host as an IP or resolved now, and the kubernetes Service's IP
// the kubelet gives every pod.
func apiServerAddresses(ctx context.Context, cfg *rest.Config) []netip.Addr {
	var out []netip.Addr
	hosts := []string{os.Getenv("KUBERNETES_SERVICE_HOST")}
	if u, err := url.Parse(cfg.Host); err == nil && u.Host != "" {
		hosts = append(hosts, u.Hostname())
	} else {
		hosts = append(hosts, strings.Split(cfg.Host, ":")[0])
	}
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip, err := netip.ParseAddr(h); err == nil {
			out = append(out, ip)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ips, err := net.DefaultResolver.LookupNetIP(rctx, "ip", h)
		cancel()
		if err != nil {
			ctrl.LoggerFrom(ctx).Info("could not resolve the API server's host; sinks are kept from its Service IP only", "host", h, "error", err.Error())
			continue
		}
		out = append(out, ips...)
	}
	return out
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
	o.MaxStreamsPerNamespace = cmp.Or(o.MaxStreamsPerNamespace, DefaultMaxStreamsPerNamespace)
	o.MinRotationInterval = cmp.Or(o.MinRotationInterval, time.Second)
	o.FileQuotaPerNamespace = cmp.Or(o.FileQuotaPerNamespace, DefaultFileQuotaPerNamespace)
	o.FileQuotaTotal = cmp.Or(o.FileQuotaTotal, DefaultFileQuotaTotal)
	if len(o.DefaultSinkTypes) == 0 {
		o.DefaultSinkTypes = strings.Split(DefaultSinkTypesFlag, ",")
	}
	defaultTypes, err := parseSinkTypes(o.DefaultSinkTypes)
	if err != nil {
		return err
	}
	switch o.Capture {
	case "", CaptureAPI:
		o.Capture = CaptureAPI
	case CaptureAgent, CaptureAuto:
	default:
		return fmt.Errorf("--capture=%q: the capture mode is api, agent or auto", o.Capture)
	}
	agentNS, agentSA, err := parseServiceAccount(o.AgentServiceAccount, ownNamespace())
	if err != nil {
		return err
	}
	memLimit := containerMemoryLimit()
	queueBudget, softLimit := memorySettings(o.MemoryBudget, memLimit, os.Getenv("GOMEMLIMIT"))
	applyMemoryLimit(softLimit)
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
		Metrics:                       metricsOptions(o),
		HealthProbeBindAddress:        o.HealthProbeBindAddr,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNS,
		LeaderElectionReleaseOnCancel: true,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			secretMetadata(): {Transform: stripSecretMetadata},
			&corev1.Node{}:   {Transform: keepNodeAddresses},
		}},
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
	rejects := controllers.NewRejectRecorder(mgr.GetEventRecorder("sink"), mgr.GetClient())
	if err := mgr.Add(rejects); err != nil {
		return fmt.Errorf("adding the rejection recorder: %w", err)
	}
	cluster := sinks.NewClusterAddresses()
	cluster.Set("the API server", apiServerAddresses(ctx, cfg))
	factory := sinks.NewFactory(sinks.Options{Stdout: os.Stdout, FileRoot: o.FileSinkRoot, OnReject: rejects.Record,
		AllowLoopbackEgress: o.AllowLoopbackEgress, Cluster: cluster,
		Budget: sinks.NewBudget(queueBudget), FileQuotaPerNamespace: max(o.FileQuotaPerNamespace, 0), FileQuotaTotal: max(o.FileQuotaTotal, 0)})
	newSink := capture.SinkFactory(factory.New)
	if o.WrapSinks != nil {
		newSink = o.WrapSinks(newSink)
	}
	var pipelines controllers.Workers
	var deliveries controllers.Deliveries
	switch o.Capture {
	case CaptureAgent:
		agents, err := agentWorkers(ctx, mgr, agentNS, agentSA, o)
		if err != nil {
			return err
		}
		pipelines, deliveries = agents, agents
	case CaptureAuto:
		// Nodes with an agent pod are the agents'; the API engine reads the
		// others' pods and hands containers over as nodes turn.
		modes := &control.Modes{Pods: mgr.GetCache(), Namespace: agentNS, ServiceAccount: agentSA, HandBackAfter: o.AgentHandBackAfter}
		engine, closeStreams, err := apiEngine(ctx, mgr, cfg, o, newSink, factory, modes.Serves)
		if err != nil {
			return err
		}
		defer closeStreams()
		defer ctrlmetrics.Registry.Unregister(engine)
		agents, err := agentWorkers(ctx, mgr, agentNS, agentSA, o)
		if err != nil {
			return err
		}
		agents.Book.Serves, agents.Book.Handover, agents.Serves = modes.Serves, engine, modes.Serves
		modes.OnChange = handOver(engine, agents.Book, agents.Fleet, control.CachePods{Reader: mgr.GetCache()})
		if err := kickOnAgentPods(ctx, mgr.GetCache(), modes, agentNS); err != nil {
			return err
		}
		if err := mgr.Add(modes); err != nil {
			return fmt.Errorf("adding the capture modes: %w", err)
		}
		auto := &autoWorkers{engine: engine, agents: agents}
		pipelines, deliveries = auto, auto
	default:
		engine, closeStreams, err := apiEngine(ctx, mgr, cfg, o, newSink, factory, nil)
		if err != nil {
			return err
		}
		defer closeStreams() // after the manager (and so the workers) stopped
		defer ctrlmetrics.Registry.Unregister(engine)
		pipelines, deliveries = engine, engine
	}
	if err := ctrlmetrics.Registry.Register(factory); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	defer ctrlmetrics.Registry.Unregister(factory)
	if err := controllers.Setup(ctx, mgr, pipelines, controllers.Options{Prober: factory, Deliveries: deliveries,
		SamplePeriod: o.HealthSamplePeriod, MinRotationInterval: o.MinRotationInterval, AllowRawStdout: o.AllowRawStdout, WatchSecrets: o.WatchSecrets,
		AllowInsecureSkipVerify: o.AllowInsecureSkipVerify, Addresses: cluster, DefaultSinkTypes: defaultTypes}); err != nil {
		return err //nolint:wrapcheck // Setup names the controller
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}
	ctrl.LoggerFrom(ctx).Info("starting operator", "capture", o.Capture, "fileSinkRoot", o.FileSinkRoot, "leaderElection", o.LeaderElect,
		"memoryLimit", memLimit, "memoryBudget", queueBudget, "goMemLimit", softLimit, "maxStreamsPerNamespace", o.MaxStreamsPerNamespace)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}

// apiEngine is the capture engine of API capture: the operator's workers
// following pods/log. closeStreams closes the stream clientset's idle
// connections; call it once the manager stopped.
func apiEngine(_ context.Context, mgr ctrl.Manager, cfg *rest.Config, o Options, newSink capture.SinkFactory, factory *sinks.Factory,
	readElsewhere func(node string) bool) (_ *workers.Manager, closeStreams func(), _ error) {
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("creating clientset: %w", err)
	}
	positionsNS := cmp.Or(o.PositionsNamespace, ownNamespace())
	streams, closeStreams, err := NewStreamClientset(cfg)
	if err != nil {
		return nil, nil, err
	}
	engine, err := workers.NewManager(workers.Options{
		Source:                 apisource.New(streams),
		LogOpenRate:            o.LogOpenRate,
		LogOpenBurst:           o.LogOpenBurst,
		PositionsWriteRate:     o.PositionsWriteRate,
		MaxStreamsPerNamespace: max(o.MaxStreamsPerNamespace, 0),
		Pods:                   mgr.GetCache(),
		Sinks:                  newSink,
		Log:                    ctrl.Log.WithName("workers"),
		ForgetPipeline:         factory.ForgetPipeline,
		Positions:              &positionstore.ConfigMapStore{Client: clientset, Namespace: positionsNS, OwnerKind: "LogPipeline"},
		SamplePeriod:           o.HealthSamplePeriod,
		ReadElsewhere:          readElsewhere,
	})
	if err != nil {
		closeStreams()
		return nil, nil, fmt.Errorf("creating the capture engine: %w", err)
	}
	if err := ctrlmetrics.Registry.Register(engine); err != nil {
		closeStreams()
		return nil, nil, fmt.Errorf("registering metrics: %w", err)
	}
	if err := mgr.Add(engine); err != nil {
		ctrlmetrics.Registry.Unregister(engine)
		closeStreams()
		return nil, nil, fmt.Errorf("adding the capture engine: %w", err)
	}
	return engine, closeStreams, nil
}

// agentWorkers is the controllers' Workers of agent capture: pipelines go
// into the Book the leader serves the agents from, on the agent endpoint,
// and their numbers are the agents' reports.
func agentWorkers(ctx context.Context, mgr ctrl.Manager, ns, sa string, o Options) (*control.Workers, error) {
	book, fleet := control.NewBook(), &control.Fleet{StaleAfter: o.AgentStaleAfter}
	if err := control.IndexPodsByNode(ctx, mgr.GetFieldIndexer()); err != nil {
		return nil, fmt.Errorf("indexing pods by node: %w", err)
	}
	if err := notifyOnPodChanges(ctx, mgr.GetCache(), book); err != nil {
		return nil, err
	}
	if err := forgetDeletedNodes(ctx, mgr.GetCache(), fleet); err != nil {
		return nil, err
	}
	handler := newAgentHandler(book, fleet, mgr.GetCache(), mgr.GetClient(), ns, sa)
	ownNS := ownNamespace()
	hosts := o.AgentCertHosts
	if len(hosts) == 0 {
		hosts = []string{DefaultAgentService + "." + ownNS + ".svc", DefaultAgentService + "." + ownNS + ".svc.cluster.local"}
	}
	self := &agentTLS{reader: mgr.GetAPIReader(), writer: mgr.GetClient(), namespace: ownNS, caNamespace: ns, hosts: hosts, now: time.Now}
	if err := mgr.Add(&agentEndpoint{addr: o.AgentBindAddress, certDir: o.AgentCertDir, selfTLS: self, handler: handler, book: book, reader: mgr.GetCache()}); err != nil {
		return nil, fmt.Errorf("adding the agent endpoint: %w", err)
	}
	return &control.Workers{Book: book, Fleet: fleet, Pods: control.CachePods{Reader: mgr.GetCache()}}, nil
}
