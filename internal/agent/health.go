package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/log-capturer/log-capturer/agent/link"
)

// healthState is what the probes say: the agent's phase and, once it
// runs, its link's last contact with the operator.
type healthState struct {
	phase    atomic.Pointer[string]
	follower atomic.Pointer[link.Follower]
}

func (h *healthState) set(phase string) { h.phase.Store(&phase) }

// status is one line for /readyz.
func (h *healthState) status() string {
	phase := "starting"
	if p := h.phase.Load(); p != nil {
		phase = *p
	}
	f := h.follower.Load()
	if f == nil {
		return phase
	}
	st := f.Status()
	contact := "never"
	if !st.LastContact.IsZero() {
		contact = time.Since(st.LastContact).Round(time.Second).String() + " ago"
	}
	s := fmt.Sprintf("%s; %d pipelines (revision %q); last contact with the operator %s", phase, st.Pipelines, st.Revision, contact)
	if st.LastError != "" {
		s += "; last error: " + st.LastError
	}
	return s
}

// serveHealth serves the probes on addr until stop is called or ctx ends;
// stop waits for the server's goroutine. Both answer 200 while the process
// runs: an agent waiting for the journal is ready (see Run), and one that
// cannot reach the operator keeps delivering its last configuration, which
// the operator's AgentsMissing reports, not a restart.
func serveHealth(ctx context.Context, addr string, h *healthState, log logr.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(h.status() + "\n")) })
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for the probes on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	sctx, cancel := context.WithCancel(ctx)
	serveOn(sctx, &wg, srv, ln, 2*time.Second, func(err error) {
		log.Error(err, "serving the probes stopped; the kubelet's liveness probe restarts the agent")
	})
	return func() { cancel(); wg.Wait() }, nil
}

// serveOn serves srv on ln (which it closes) in two goroutines of wg: one
// serving, one shutting the server down within grace once ctx ends. A
// server that stops by itself tells failed.
func serveOn(ctx context.Context, wg *sync.WaitGroup, srv *http.Server, ln net.Listener, grace time.Duration, failed func(error)) {
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			failed(err)
		}
	})
	wg.Go(func() {
		<-ctx.Done()
		shut, done := context.WithTimeout(context.WithoutCancel(ctx), grace)
		defer done()
		_ = srv.Shutdown(shut)
	})
}
