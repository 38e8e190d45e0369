package sinks_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
)

func httpSink(url string) capture.SinkConfig {
	c := sinkConfig("http")
	c.Kind, c.HTTP = capture.SinkHTTP, &capture.HTTPConfig{URL: url, Headers: map[string]string{"X-Api-Key": "from-a-secret"},
		Credentials: capture.Credentials{BearerToken: "token-from-a-secret"}}
	return c
}

// TestRedirectsAreNotFollowed: a destination that redirects elsewhere gets
// no second request carrying the credentials; the batch is refused with a
// message that says why.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var stolen atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" || r.Header.Get("X-Api-Key") != "" {
			stolen.Add(1)
		}
	}))
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/collect", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	e := newEnv(t)
	s := e.start(t, httpSink(redirector.URL))
	write(t, s, records(10))
	eventually(t, "the refusal", func() bool { return s.Sink.(capture.StatsReporter).Stats().RejectedLines == 10 })
	s.stop(t)
	if stolen.Load() != 0 {
		t.Fatalf("%d requests with credentials reached the redirect's target", stolen.Load())
	}
	if st := s.Sink.(capture.StatsReporter).Stats(); !strings.Contains(st.LastRejection, "redirects are not followed") {
		t.Fatalf("rejection %q does not say why", st.LastRejection)
	}
}

// TestRemoteAnswersAreSanitised: what a destination answers reaches status
// and Events short, printable and without terminal escapes.
func TestRemoteAnswersAreSanitised(t *testing.T) {
	body := "\x1b[2J\x1b[31mfake: level=error msg=\"operator compromised\"\r\n" + strings.Repeat("A", 10000) + "\xff\xfe"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	e := newEnv(t)
	s := e.start(t, httpSink(srv.URL))
	write(t, s, records(5))
	eventually(t, "the refusal", func() bool { return s.Sink.(capture.StatsReporter).Stats().RejectedLines == 5 })
	s.stop(t)
	msg := s.Sink.(capture.StatsReporter).Stats().LastRejection
	if strings.ContainsAny(msg, "\x1b\r\n") || !utf8.ValidString(msg) || len(msg) > 512 || !strings.Contains(msg, "…[cut]") {
		t.Fatalf("rejection message of %d bytes is not sanitised: %q", len(msg), msg)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.rejected) != 1 || strings.Contains(e.rejected[0], "\x1b") {
		t.Fatalf("reported rejection: %q", e.rejected)
	}
}

// TestURLPasswordsStayOutOfErrors: a URL's userinfo password is not shown.
func TestURLPasswordsStayOutOfErrors(t *testing.T) {
	e := newEnv(t)
	s := e.start(t, httpSink("http://user:hunter2@127.0.0.1:1/push"))
	write(t, s, records(1))
	eventually(t, "a failure", func() bool { return s.Sink.(capture.StatsReporter).Stats().LastError != "" })
	if msg := s.Sink.(capture.StatsReporter).Stats().LastError; strings.Contains(msg, "hunter2") {
		t.Fatalf("the password is in the error: %q", msg)
	}
	s.cancel()
}

// TestEgressIsCheckedAtDialTime: whatever the URL says, the connection goes
// only to allowed addresses, after DNS resolution; the error says why, the
// same whether the port is open or not (no port scanning through status).
func TestEgressIsCheckedAtDialTime(t *testing.T) {
	open := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer open.Close()
	port := open.URL[strings.LastIndexByte(open.URL, ':')+1:]
	f := sinks.NewFactory(sinks.Options{FileRoot: t.TempDir(), RequestTimeout: time.Second})
	for _, url := range []string{
		open.URL,                         // 127.0.0.1, open port
		"http://127.0.0.1:1",             // closed port: the same answer
		"http://localhost:" + port,       // a name that resolves to loopback
		"http://:" + port,                // the empty host
		"http://[::1]:" + port,           // IPv6 loopback
		"http://169.254.169.254/latest/", // cloud metadata
		"http://[::ffff:127.0.0.1]:" + port,
	} {
		c := lokiConfig(url)
		err := f.Probe(context.Background(), c)
		if !errors.Is(err, sinks.ErrDestinationDenied) {
			t.Errorf("%s: probe error %v, want the destination refused", url, err)
			continue
		}
		if strings.Contains(err.Error(), "connection refused") {
			t.Errorf("%s: the error tells the port's state: %v", url, err)
		}
	}
	// The sink too, not only the probe: nothing reaches the open port.
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	s := startIn(t, f, "ns/p", httpSink(srv.URL))
	write(t, s, records(3))
	eventually(t, "a refused send", func() bool {
		return strings.Contains(s.Sink.(capture.StatsReporter).Stats().LastError, "destination not allowed")
	})
	if hits.Load() != 0 {
		t.Fatalf("%d requests reached a loopback server", hits.Load())
	}
	s.cancel()
	// Allowed by the admin's flag, loopback works.
	allowed := sinks.NewFactory(sinks.Options{FileRoot: t.TempDir(), AllowLoopbackEgress: true})
	if err := allowed.Probe(context.Background(), lokiConfig(open.URL)); errors.Is(err, sinks.ErrDestinationDenied) {
		t.Fatalf("loopback refused with --allow-loopback-egress: %v", err)
	}
}

// hostAddress returns a non-loopback IPv4 address of this machine, or skips.
func hostAddress(t *testing.T) netip.Addr {
	t.Helper()
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip.Unmap()
			}
		}
	}
	t.Skip("no non-loopback IPv4 address here")
	return netip.Addr{}
}

// TestNodeAddressesNeedAPolicy: a node's address (here this machine's) is
// refused when the sink connects, with the node named; a CapturePolicy
// range that contains it lets the sink through; a policy's ranges shut out
// every other address.
func TestNodeAddressesNeedAPolicy(t *testing.T) {
	ip := hostAddress(t)
	l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Skipf("listening on %s: %v", ip, err)
	}
	var hits atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	url := "http://" + l.Addr().String()

	cluster := sinks.NewClusterAddresses()
	cluster.Set("node worker-1", []netip.Addr{ip})
	f := sinks.NewFactory(sinks.Options{FileRoot: t.TempDir(), RequestTimeout: time.Second, Cluster: cluster})
	c := lokiConfig(url)
	err = f.Probe(context.Background(), c)
	if !errors.Is(err, sinks.ErrDestinationDenied) || !strings.Contains(err.Error(), "node worker-1") {
		t.Fatalf("probe of a node's address: %v, want it refused naming the node", err)
	}
	s := startIn(t, f, "ns/p", httpSink(url))
	write(t, s, records(3))
	eventually(t, "a refused send", func() bool {
		return strings.Contains(s.Sink.(capture.StatsReporter).Stats().LastError, "node worker-1")
	})
	s.cancel()
	if hits.Load() != 0 {
		t.Fatalf("%d requests reached the node's port", hits.Load())
	}

	c.Egress = &capture.EgressPolicy{Policy: "infra", AllowCIDRs: []string{netip.PrefixFrom(ip, 32).String()}}
	if err := f.Probe(context.Background(), c); err != nil {
		t.Fatalf("probe of a node's address the policy names: %v", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("%d probes reached the server, want 1", hits.Load())
	}
	c.Egress.AllowCIDRs = []string{"10.255.255.0/24"}
	cluster.Set("node worker-1", nil)
	if err := f.Probe(context.Background(), c); !errors.Is(err, sinks.ErrDestinationDenied) || !strings.Contains(err.Error(), `destinationCIDRs of CapturePolicy "infra"`) {
		t.Fatalf("probe outside the policy's ranges: %v", err)
	}
}
