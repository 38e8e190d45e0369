package sinks_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
	"github.com/log-capturer/log-capturer/test/otlpreceiver"
)

// otlpServer is an in-process strict OTLP receiver on loopback, over HTTP
// or gRPC, until the test ends.
func otlpServer(t *testing.T, grpc bool) (*otlpreceiver.Receiver, string) {
	t.Helper()
	rcv := otlpreceiver.New()
	if grpc {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rcv.ServeGRPC(l))
		return rcv, "http://" + l.Addr().String()
	}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	t.Cleanup(rcv.Close)
	return rcv, srv.URL
}

func otlpConfig(url string, grpc bool) capture.SinkConfig {
	c := sinkConfig("otlp")
	c.Kind = capture.SinkOTLP
	c.OTLP = &capture.OTLPConfig{URL: url, GRPC: grpc, Gzip: true,
		Headers:            map[string]string{"X-Tenant": "shop"},
		ResourceAttributes: map[string]string{"k8s.cluster.name": "test", "service.namespace": "shop"},
		Credentials:        capture.Credentials{BearerToken: "t0ken"}}
	return c
}

// otlpExactlyOnce checks every line of recs arrived once, in order per
// container.
func otlpExactlyOnce(t *testing.T, recs []*capture.Record, got []otlpreceiver.Record) {
	t.Helper()
	want := map[string][]string{}
	for _, r := range recs {
		c := r.Namespace + "/" + r.Pod + "/" + r.Container
		want[c] = append(want[c], r.Line)
	}
	have := otlpreceiver.Containers(got)
	if len(have) != len(want) {
		t.Fatalf("records of %d containers arrived, want %d", len(have), len(want))
	}
	for c, lines := range want {
		if fmt.Sprint(have[c]) != fmt.Sprint(lines) {
			t.Fatalf("%s: got %d lines, want %d exactly once in order", c, len(have[c]), len(lines))
		}
	}
}

var otlpProtocols = []struct {
	name string
	grpc bool
}{{"http", false}, {"grpc", true}}

func TestOTLPDeliversEveryLineOnceWithSemanticConventions(t *testing.T) {
	for _, p := range otlpProtocols {
		for _, gz := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/gzip=%v", p.name, gz), func(t *testing.T) {
				e := newEnv(t)
				rcv, url := otlpServer(t, p.grpc)
				c := otlpConfig(url, p.grpc)
				c.OTLP.Gzip = gz
				s := e.start(t, c)
				recs := records(3000)
				recs[7].Line = "invalid \xff\xfe utf8"
				recs[8].Stream = "stderr" // read from the kubelet's files
				write(t, s, recs)
				s.stop(t)
				if pr := rcv.Problems(); len(pr) > 0 {
					t.Fatalf("protocol problems: %v", pr)
				}
				got := rcv.Records()
				otlpExactlyOnce(t, recs, got)
				want := map[string]string{"k8s.namespace.name": "shop", "k8s.pod.name": "web-0", "k8s.container.name": "main",
					"k8s.node.name": "node-1", "k8s.pod.label.app": "web", "k8s.pod.label.app.kubernetes.io/name": "shop",
					"k8s.cluster.name": "test", "service.namespace": "shop"}
				if fmt.Sprint(got[0].Resource) != fmt.Sprint(want) {
					t.Errorf("resource = %v, want %v", got[0].Resource, want)
				}
				for _, g := range got {
					if g.Body == recs[7].Line {
						if !g.Bytes {
							t.Errorf("invalid UTF-8 sent as a string body")
						}
					} else if g.Bytes {
						t.Errorf("%q sent as bytes", g.Body)
					}
					if g.Scope != "github.com/log-capturer/log-capturer" || g.Observed.IsZero() {
						t.Errorf("scope %q, observed %v", g.Scope, g.Observed)
					}
				}
				for _, g := range got {
					if want := map[bool]string{true: "stderr"}[g.Body == recs[8].Line]; g.Stream != want {
						t.Errorf("record %.30q: log.iostream %q, want %q", g.Body, g.Stream, want)
					}
				}
				if !got[0].Time.Equal(recs[0].Time) {
					t.Errorf("time = %v, want the CRI timestamp %v", got[0].Time, recs[0].Time)
				}
				h := rcv.Headers()[0]
				if h.Get("Authorization") != "Bearer t0ken" || h.Get("X-Tenant") != "shop" {
					t.Errorf("headers %v", h)
				}
				if got := sum(t, e.reg, "log_capturer_sink_sent_lines_total"); got != 3000 {
					t.Errorf("sent lines metric = %v", got)
				}
			})
		}
	}
}

func TestOTLPRecoversFromFaultsWithoutLossOrDuplicates(t *testing.T) {
	tests := []struct {
		name        string
		fault       otlpreceiver.Fault
		times       int
		minDuration time.Duration
		// unknown: the outcome of each faulty attempt is unknown (a hang),
		// so the retried batch is counted as possible duplicates.
		unknown bool
	}{
		{"503", otlpreceiver.Fault{Status: 503, Message: "collector overloaded"}, 3, 0, false},
		{"502", otlpreceiver.Fault{Status: 502}, 2, 0, false},
		{"429 with Retry-After", otlpreceiver.Fault{Status: 429, RetryAfter: 1, Message: "rate limited"}, 2, 2 * time.Second, false},
		{"503 with Retry-After", otlpreceiver.Fault{Status: 503, RetryAfter: 1}, 1, time.Second, false},
		{"hang", otlpreceiver.Fault{Hang: true}, 2, time.Second, true},
	}
	for _, p := range otlpProtocols {
		for _, tc := range tests {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				e := newEnv(t)
				rcv, url := otlpServer(t, p.grpc)
				c := otlpConfig(url, p.grpc)
				c.MaxBackoff = 5 * time.Second
				c.BatchMaxBytes = 1 << 20 // one batch, so that the faults meet every line
				rcv.FailNext(tc.times, tc.fault)
				s := e.start(t, c)
				start := time.Now()
				recs := records(600)
				write(t, s, recs)
				eventually(t, "all lines", func() bool { return rcv.Len() >= len(recs) })
				s.stop(t)
				otlpExactlyOnce(t, recs, rcv.Records())
				if d := time.Since(start); d < tc.minDuration {
					t.Errorf("delivered after %v, before the server allowed (%v)", d, tc.minDuration)
				}
				st := s.Sink.(capture.StatsReporter).Stats()
				if st.FailedBatches < int64(tc.times) || st.Retries < int64(tc.times) || st.DroppedLines != 0 || st.SentLines != 600 {
					t.Errorf("stats %+v", st)
				}
				dups := sum(t, e.reg, "log_capturer_sink_possible_duplicate_lines_total")
				if tc.unknown != (dups > 0) {
					t.Errorf("possible duplicates %v after %s", dups, tc.name)
				}
			})
		}
	}
}

// TestOTLPPartialSuccessCountsTheRejectedAndRetriesNothing: a partial
// success stored the rest, so nothing is sent again; the rejected records
// are counted and reported, the batch acknowledged.
func TestOTLPPartialSuccessCountsTheRejectedAndRetriesNothing(t *testing.T) {
	for _, p := range otlpProtocols {
		t.Run(p.name, func(t *testing.T) {
			e := newEnv(t)
			rcv, url := otlpServer(t, p.grpc)
			c := otlpConfig(url, p.grpc)
			c.BatchMaxBytes = 1 << 20
			rcv.FailNext(1, otlpreceiver.Fault{Reject: 7, Message: "7 records too old"})
			s := e.start(t, c)
			recs := records(300)
			acked := acks(recs)
			write(t, s, recs)
			eventually(t, "every line acknowledged", func() bool { return acked() == 300 })
			more := records(600)[300:]
			write(t, s, more)
			s.stop(t)
			if rcv.Len() != 300-7+300 || rcv.Requests() != 2 {
				t.Fatalf("%d records in %d requests: want 593 in 2 (the partial success not retried)", rcv.Len(), rcv.Requests())
			}
			st := s.Sink.(capture.StatsReporter).Stats()
			if st.RejectedLines != 7 || st.DroppedLines != 7 || st.SentLines != 593 || st.Retries != 0 || st.FailedBatches != 0 ||
				!strings.Contains(st.LastRejection, "rejected 7 of a batch of 300 lines") || !strings.Contains(st.LastRejection, "7 records too old") {
				t.Fatalf("stats %+v", st)
			}
			if got := sum(t, e.reg, `log_capturer_sink_dropped_lines_total`); got != 7 {
				t.Fatalf("dropped metric %v", got)
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			if len(e.rejected) != 1 || !strings.Contains(e.rejected[0], "7 records too old") {
				t.Fatalf("rejections reported: %q", e.rejected)
			}
		})
	}
}

// TestOTLPPermanentFailuresAreRejected: OTLP retries only 429, 502, 503
// and 504 (gRPC: Unavailable, ResourceExhausted with RetryInfo, ...);
// every other answer refuses the batch for good.
func TestOTLPPermanentFailuresAreRejected(t *testing.T) {
	tests := []struct {
		name  string
		fault otlpreceiver.Fault
		want  string
	}{
		{"400", otlpreceiver.Fault{Status: 400, Message: "bad record"}, "bad record"},
		{"500", otlpreceiver.Fault{Status: 500, Message: "exporter failed"}, "exporter failed"},
	}
	for _, p := range otlpProtocols {
		for _, tc := range tests {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				e := newEnv(t)
				rcv, url := otlpServer(t, p.grpc)
				rcv.FailNext(1, tc.fault)
				s := e.start(t, otlpConfig(url, p.grpc))
				first := records(30)
				write(t, s, first)
				eventually(t, "the rejection", func() bool { return s.Sink.(capture.StatsReporter).Stats().RejectedLines == 30 })
				write(t, s, records(60)[30:])
				s.stop(t)
				st := s.Sink.(capture.StatsReporter).Stats()
				if rcv.Len() != 30 || st.Retries != 0 || !strings.Contains(st.LastRejection, tc.want) {
					t.Fatalf("received %d, stats %+v", rcv.Len(), st)
				}
			})
		}
	}
	// Over gRPC, ResourceExhausted without RetryInfo is not retried either.
	e := newEnv(t)
	rcv, url := otlpServer(t, true)
	rcv.FailNext(1, otlpreceiver.Fault{Status: 429, Message: "quota"})
	s := e.start(t, otlpConfig(url, true))
	write(t, s, records(30))
	eventually(t, "the rejection", func() bool { return s.Sink.(capture.StatsReporter).Stats().RejectedLines == 30 })
	s.stop(t)
	if st := s.Sink.(capture.StatsReporter).Stats(); !strings.Contains(st.LastRejection, "ResourceExhausted") {
		t.Fatalf("last rejection %q", st.LastRejection)
	}
}

func TestOTLPUnknownOutcomeDuplicatesAreCounted(t *testing.T) {
	for _, p := range otlpProtocols {
		t.Run(p.name, func(t *testing.T) {
			e := newEnv(t)
			rcv, url := otlpServer(t, p.grpc)
			rcv.FailNext(1, otlpreceiver.Fault{StoreThenHang: true})
			s := e.start(t, otlpConfig(url, p.grpc))
			recs := records(300)
			write(t, s, recs)
			eventually(t, "all lines", func() bool { return rcv.Len() > len(recs) })
			s.stop(t)
			counted := sum(t, e.reg, "log_capturer_sink_possible_duplicate_lines_total")
			if extra := rcv.Len() - len(recs); extra == 0 || float64(extra) != counted {
				t.Fatalf("%d duplicate records arrived, %v counted", extra, counted)
			}
		})
	}
}

func TestOTLPOverTLSWithClientCertificates(t *testing.T) {
	pki := newPKI(t)
	for _, p := range otlpProtocols {
		t.Run(p.name, func(t *testing.T) {
			rcv := otlpreceiver.New()
			var url string
			if p.grpc {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				url = "https://" + l.Addr().String()
				t.Cleanup(rcv.ServeGRPCTLS(l, pki.serverTLS(true)))
			} else {
				srv := httptest.NewUnstartedServer(rcv)
				srv.TLS = pki.serverTLS(true)
				srv.StartTLS()
				t.Cleanup(srv.Close)
				t.Cleanup(rcv.Close)
				url = srv.URL
			}
			e := newEnv(t)
			wrong := otlpConfig(url, p.grpc)
			s := e.start(t, wrong)
			write(t, s, records(10))
			eventually(t, "a failed TLS handshake", func() bool {
				st := s.Sink.(capture.StatsReporter).Stats()
				return st.FailedBatches > 0 && strings.Contains(st.LastError, "certificate")
			})
			if rcv.Len() != 0 {
				t.Fatal("delivered over TLS without trusting the server")
			}
			s.cancel()
			s.stop(t)

			right := otlpConfig(url, p.grpc)
			right.Name = "right"
			right.OTLP.TLS = &capture.TLSConfig{CAPEM: pki.caPEM, CertPEM: pki.clientCertPEM, KeyPEM: pki.clientKeyPEM}
			s2 := e.start(t, right)
			write(t, s2, records(10))
			s2.stop(t)
			if rcv.Len() != 10 {
				t.Fatalf("%d records over TLS with the right CA, want 10", rcv.Len())
			}
		})
	}
}

// TestOTLPDialsThroughTheEgressRules: without --allow-loopback-egress, a
// collector on loopback is refused at dial time, over HTTP and gRPC.
func TestOTLPDialsThroughTheEgressRules(t *testing.T) {
	for _, p := range otlpProtocols {
		t.Run(p.name, func(t *testing.T) {
			rcv, url := otlpServer(t, p.grpc)
			f := sinks.NewFactory(sinks.Options{RequestTimeout: 500 * time.Millisecond})
			s := startIn(t, f, "ns/p", otlpConfig(url, p.grpc))
			write(t, s, records(10))
			eventually(t, "a refused dial", func() bool {
				st := s.Sink.(capture.StatsReporter).Stats()
				return st.FailedBatches > 0 && strings.Contains(st.LastError, "destination not allowed")
			})
			s.cancel()
			s.stop(t)
			if rcv.Requests() != 0 {
				t.Fatalf("%d requests reached a loopback collector", rcv.Requests())
			}
		})
	}
}

// TestOTLPRefusesRedirects: a 3xx is not followed, so that credentials
// never travel to another host.
func TestOTLPRefusesRedirects(t *testing.T) {
	srv := httptest.NewServer(http.RedirectHandler("http://elsewhere.example/v1/logs", http.StatusTemporaryRedirect))
	defer srv.Close()
	e := newEnv(t)
	s := e.start(t, otlpConfig(srv.URL, false))
	write(t, s, records(5))
	eventually(t, "the rejection", func() bool { return s.Sink.(capture.StatsReporter).Stats().RejectedLines == 5 })
	s.stop(t)
	if st := s.Sink.(capture.StatsReporter).Stats(); !strings.Contains(st.LastRejection, "redirects are not followed") {
		t.Fatalf("last rejection %q", st.LastRejection)
	}
}
