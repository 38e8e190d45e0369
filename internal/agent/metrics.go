package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
)

// metricsRegistry is the agent's registry: the engine's and the sinks'
// collectors, and the Go runtime's and the process's, every series
// labelled with the agent's node, so that the agents' series of one
// pipeline stay apart wherever they are scraped from.
func metricsRegistry(node string, cs ...prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	labelled := prometheus.WrapRegistererWith(prometheus.Labels{"node": node}, reg)
	cs = append(cs, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, c := range cs {
		if err := labelled.Register(c); err != nil {
			return nil, fmt.Errorf("registering the agent's metrics: %w", err)
		}
	}
	return reg, nil
}

// serveMetrics serves reg at GET /metrics on o.MetricsBindAddress. Unless
// o.MetricsInsecure it is HTTPS (the certificate in o.MetricsCertDir,
// reloaded when it changes, or a self-signed one) to clients whose bearer
// token the API server authenticates and authorizes for GET /metrics, as
// the operator's endpoint: pipeline names of every tenant on the node are
// in it. stop shuts the server down and waits for its goroutines.
func serveMetrics(ctx context.Context, o Options, reg *prometheus.Registry, log logr.Logger) (stop func(), err error) {
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
	var tlsConfig *tls.Config
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	fail := func(err error) (func(), error) {
		cancel()
		wg.Wait()
		return nil, err
	}
	if !o.MetricsInsecure {
		httpClient, err := rest.HTTPClientFor(o.RestConfig)
		if err != nil {
			return fail(fmt.Errorf("creating the metrics endpoint's API client: %w", err))
		}
		filter, err := filters.WithAuthenticationAndAuthorization(o.RestConfig, httpClient)
		if err != nil {
			return fail(fmt.Errorf("creating the metrics endpoint's authorization: %w", err))
		}
		if handler, err = filter(log, handler); err != nil {
			return fail(fmt.Errorf("creating the metrics endpoint's authorization: %w", err))
		}
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
		if o.MetricsCertDir != "" {
			w, err := certwatcher.New(filepath.Join(o.MetricsCertDir, "tls.crt"), filepath.Join(o.MetricsCertDir, "tls.key"))
			if err != nil {
				return fail(fmt.Errorf("loading the metrics certificate from %s: %w", o.MetricsCertDir, err))
			}
			wg.Go(func() {
				if err := w.Start(sctx); err != nil {
					log.Error(err, "watching the metrics certificate stopped; the certificate loaded last is served")
				}
			})
			tlsConfig.GetCertificate = w.GetCertificate
		} else {
			certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(o.Node, nil, nil)
			if err != nil {
				return fail(fmt.Errorf("creating the metrics endpoint's self-signed certificate: %w", err))
			}
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return fail(fmt.Errorf("loading the metrics endpoint's self-signed certificate: %w", err))
			}
			tlsConfig.Certificates = []tls.Certificate{cert}
		}
	}
	ln, err := net.Listen("tcp", o.MetricsBindAddress)
	if err != nil {
		return fail(fmt.Errorf("listening for metrics on %s: %w", o.MetricsBindAddress, err))
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", handler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	serveOn(sctx, &wg, srv, ln, 5*time.Second, func(err error) { log.Error(err, "serving metrics stopped") })
	return func() { cancel(); wg.Wait() }, nil
}
