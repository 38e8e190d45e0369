package operator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/go-logr/logr"

	"github.com/log-capturer/log-capturer/agent/control"
	"github.com/log-capturer/log-capturer/agent/identity"
	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
)

// Capture modes of --capture.
const (
	// CaptureAPI reads every container through the API server's pods/log
	// streams, in the operator's own workers.
	CaptureAPI = "api"
	// CaptureAgent has the node agents read the kubelet's files; the
	// operator runs no worker and serves the agents their configuration.
	CaptureAgent = "agent"
	// CaptureAuto has the node agents read the nodes they run on and the
	// operator's workers the others, through the API, handing containers
	// over at their positions as agents come and go.
	CaptureAuto = "auto"
)

// DefaultAgentServiceAccount is the agents' ServiceAccount in the
// operator's namespace.
const DefaultAgentServiceAccount = "log-capturer-agent"

// agentTokenTTL is how long a verified agent token is taken without a new
// TokenReview.
const agentTokenTTL = 5 * time.Minute

// agentsReadyTimeout bounds how long agents wait at the operator's start
// for the pipelines found then to be applied (a pipeline that is refused
// never is).
const agentsReadyTimeout = 30 * time.Second

// agentEndpoint is the leader's HTTPS endpoint of the node agents: their
// configuration and their reports. Only the leader runs it, so that
// agents follow the replica whose controllers fill the Book.
type agentEndpoint struct {
	addr string
	// certDir holds tls.crt and tls.key; empty, selfTLS issues them.
	certDir string
	selfTLS *agentTLS
	handler *control.Handler
	// book and reader tell when the pipelines found at start were applied;
	// started is set once they were, or the timeout passed.
	book    *control.Book
	reader  client.Reader
	started atomic.Bool
}

// NeedLeaderElection tells the manager to run the endpoint on the leader.
func (e *agentEndpoint) NeedLeaderElection() bool { return true }

// Start serves until ctx ends; its goroutines (the certificate watcher,
// the server, the readiness wait) end before it returns.
func (e *agentEndpoint) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("agents")
	var wg sync.WaitGroup
	defer wg.Wait()
	// Every return ends the goroutines started here before waiting for
	// them: the manager learns of a failure only once Start returned.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	getCert, err := e.certificates(ctx, &wg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", e.addr)
	if err != nil {
		return fmt.Errorf("listening for agents on %s: %w", e.addr, err)
	}
	pending, err := e.pendingAtStart(ctx)
	if err != nil {
		_ = ln.Close()
		return err
	}
	deadline := time.Now().Add(agentsReadyTimeout)
	e.handler.Ready = func() error {
		if e.started.Load() {
			return nil
		}
		var missing []string
		for _, k := range pending {
			if _, ok := e.book.Get(k); !ok {
				missing = append(missing, k.String())
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			e.started.Store(true)
			return nil
		}
		return fmt.Errorf("the operator has applied %d of the %d pipelines it found at start; try again", len(pending)-len(missing), len(pending))
	}
	srv := &http.Server{
		Handler:           e.handler,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCert},
		// Requests end with the endpoint: a waiting agent's request too.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	wg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	log.Info("serving node agents", "address", ln.Addr().String(), "pipelinesAtStart", len(pending))
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving node agents: %w", err)
	}
	return nil
}

// certificates returns the endpoint's GetCertificate: the files of
// certDir, reloaded when they change, or else the self-managed certificate
// (agentTLS), renewed when due. Their goroutine joins wg.
func (e *agentEndpoint) certificates(ctx context.Context, wg *sync.WaitGroup, log logr.Logger) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	if e.certDir != "" {
		watcher, err := certwatcher.New(filepath.Join(e.certDir, "tls.crt"), filepath.Join(e.certDir, "tls.key"))
		if err != nil {
			return nil, fmt.Errorf("loading the agent endpoint's certificate from %s: %w", e.certDir, err)
		}
		wg.Go(func() {
			if err := watcher.Start(ctx); err != nil {
				log.Error(err, "watching the agent endpoint's certificate")
			}
		})
		return watcher.GetCertificate, nil
	}
	first, err := e.selfTLS.ensure(ctx)
	if err != nil {
		return nil, err
	}
	var cur atomic.Pointer[tls.Certificate]
	cur.Store(first)
	wg.Go(func() {
		t := time.NewTicker(agentCertCheckFreq)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			c, err := e.selfTLS.ensure(ctx)
			if err != nil {
				log.Error(err, "renewing the agent endpoint's certificate; the current one is served on")
				continue
			}
			cur.Store(c)
		}
	})
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cur.Load(), nil }, nil
}

// pendingAtStart lists the pipelines that exist and are not suspended when
// the endpoint starts: agents are served once the controllers applied them.
func (e *agentEndpoint) pendingAtStart(ctx context.Context) ([]types.NamespacedName, error) {
	list := &logsv1alpha1.LogPipelineList{}
	if err := e.reader.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing the LogPipelines at start: %w", err)
	}
	var out []types.NamespacedName
	for i := range list.Items {
		p := &list.Items[i]
		if p.Spec.Suspend || !p.DeletionTimestamp.IsZero() {
			continue
		}
		out = append(out, types.NamespacedName{Namespace: p.Namespace, Name: p.Name})
	}
	return out, nil
}

// notifyOnPodChanges wakes the agents waiting for a change when a pod
// appears, goes, moves to a node, changes labels or finishes: what a
// node's configuration depends on. Other pod updates (status, probes)
// wake nobody.
func notifyOnPodChanges(ctx context.Context, informers cache.Informers, book *control.Book) error {
	inf, err := informers.GetInformer(ctx, &corev1.Pod{})
	if err != nil {
		return fmt.Errorf("getting the pod informer: %w", err)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { book.Notify() },
		UpdateFunc: func(o, n any) {
			old, ok1 := o.(*corev1.Pod)
			cur, ok2 := n.(*corev1.Pod)
			if !ok1 || !ok2 || podChanged(old, cur) {
				book.Notify()
			}
		},
		DeleteFunc: func(any) { book.Notify() },
	})
	if err != nil {
		return fmt.Errorf("watching pods for the agents: %w", err)
	}
	return nil
}

// kickOnAgentPods has modes look at once when a pod of the agents'
// namespace changes, rather than at its next second.
func kickOnAgentPods(ctx context.Context, informers cache.Informers, modes *control.Modes, ns string) error {
	inf, err := informers.GetInformer(ctx, &corev1.Pod{})
	if err != nil {
		return fmt.Errorf("getting the pod informer: %w", err)
	}
	kick := func(obj any) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if p, ok := obj.(*corev1.Pod); ok && p.Namespace == ns {
			modes.Kick()
		}
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: kick, UpdateFunc: func(_, n any) { kick(n) }, DeleteFunc: kick})
	if err != nil {
		return fmt.Errorf("watching the agents' pods: %w", err)
	}
	return nil
}

// forgetDeletedNodes drops a deleted node's last report, so that the
// Fleet holds the nodes that exist, not every node ever seen.
func forgetDeletedNodes(ctx context.Context, informers cache.Informers, fleet *control.Fleet) error {
	inf, err := informers.GetInformer(ctx, &corev1.Node{})
	if err != nil {
		return fmt.Errorf("getting the node informer: %w", err)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if n, ok := obj.(*corev1.Node); ok {
			fleet.ForgetNode(n.Name)
		}
	}})
	if err != nil {
		return fmt.Errorf("watching nodes for the agents: %w", err)
	}
	return nil
}

// parseServiceAccount reads --agent-service-account, namespace/name or a
// name in the operator's namespace.
func parseServiceAccount(v, ownNS string) (ns, name string, err error) {
	if v == "" {
		return ownNS, DefaultAgentServiceAccount, nil
	}
	ns, name, ok := strings.Cut(v, "/")
	if !ok {
		ns, name = ownNS, v
	}
	if ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("--agent-service-account=%q is not a ServiceAccount name or namespace/name", v)
	}
	return ns, name, nil
}

// podChanged tells whether an update changes what agents are sent.
func podChanged(old, cur *corev1.Pod) bool {
	return old.Spec.NodeName != cur.Spec.NodeName || old.Status.Phase != cur.Status.Phase ||
		!maps.Equal(old.Labels, cur.Labels)
}

// newAgentHandler is the agent endpoint's handler.
func newAgentHandler(book *control.Book, fleet *control.Fleet, pods client.Reader, reviews identity.Creator, ns, sa string) *control.Handler {
	return &control.Handler{Book: book, Fleet: fleet, Pods: control.CachePods{Reader: pods},
		Verifier: identity.NewVerifier(reviews, ns, sa, agentTokenTTL)}
}

// listFlag is a comma-separated list of non-empty values.
type listFlag struct{ v *[]string }

func (f listFlag) String() string {
	if f.v == nil {
		return ""
	}
	return strings.Join(*f.v, ",")
}

func (f listFlag) Set(s string) error {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v == "" {
			return fmt.Errorf("%q has an empty item", s)
		}
		out = append(out, v)
	}
	*f.v = out
	return nil
}
