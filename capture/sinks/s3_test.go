package sinks_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
)

// s3Server is gofakes3 with the bucket "logs", behind a switch that can
// answer PUTs itself: a status, a hang, or the PUT stored and the
// connection dropped before the answer.
type s3Server struct {
	url  string
	mu   sync.Mutex
	puts int
	// fault returns what the n-th PUT gets: 0 passes it to gofakes3,
	// -1 hangs, -2 stores it and drops the connection, else a status.
	fault func(n int) int
	hang  chan struct{}
}

func newS3Server(t testing.TB) *s3Server {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket("logs"); err != nil {
		t.Fatal(err)
	}
	fake := gofakes3.New(backend).Server()
	s := &s3Server{hang: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut {
			fake.ServeHTTP(w, r)
			return
		}
		s.mu.Lock()
		s.puts++
		n, fault := s.puts, s.fault
		s.mu.Unlock()
		f := 0
		if fault != nil {
			f = fault(n)
		}
		switch f {
		case 0:
			fake.ServeHTTP(w, r)
		case -1:
			select {
			case <-r.Context().Done():
			case <-s.hang:
			}
		case -2:
			fake.ServeHTTP(httptest.NewRecorder(), r)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(f)
			code := "InternalError"
			switch f {
			case http.StatusForbidden:
				code = "AccessDenied"
			case http.StatusServiceUnavailable:
				code = "SlowDown"
			}
			_, _ = fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>scheduled %d</Message></Error>`, code, f)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(s.hang) })
	s.url = srv.URL
	return s
}

func s3Config(url string) capture.SinkConfig {
	c := sinkConfig("s3")
	c.Kind = capture.SinkS3
	c.BatchMaxBytes = 1 << 10 // many objects
	c.S3 = &capture.S3Config{Endpoint: url, Bucket: "logs", Region: "us-east-1", Prefix: "logs/{namespace}", PathStyle: true, Gzip: true,
		Credentials: capture.Credentials{Username: "AKIAEXAMPLE", Password: "secret"}}
	return c
}

// s3Object is one stored object: its key and lines.
type s3Object struct {
	key   string
	lines []struct{ TS, Namespace, Pod, Container, Line string }
}

// s3Objects reads every object under prefix, in key order.
func s3Objects(t *testing.T, url, prefix string) []s3Object {
	t.Helper()
	cl, err := minio.New(strings.TrimPrefix(url, "http://"), &minio.Options{Creds: credentials.NewStaticV4("a", "b", ""),
		BucketLookup: minio.BucketLookupPath, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var out []s3Object
	for info := range cl.ListObjects(ctx, "logs", minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if info.Err != nil {
			t.Fatal(info.Err)
		}
		obj, err := cl.GetObject(ctx, "logs", info.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(obj)
		if err != nil {
			t.Fatalf("%s is not gzip: %v", info.Key, err)
		}
		o := s3Object{key: info.Key}
		sc := bufio.NewScanner(zr)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			var l struct{ TS, Namespace, Pod, Container, Line string }
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("%s: %q: %v", info.Key, sc.Text(), err)
			}
			o.lines = append(o.lines, l)
		}
		_ = obj.Close()
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b s3Object) int { return strings.Compare(a.key, b.key) })
	return out
}

// s3ExactlyOnce checks every line of recs is in the objects once, in order
// per container across object boundaries.
func s3ExactlyOnce(t *testing.T, recs []*capture.Record, objs []s3Object) {
	t.Helper()
	want := map[string][]string{}
	for _, r := range recs {
		want[r.Pod] = append(want[r.Pod], r.Line)
	}
	have := map[string][]string{}
	for _, o := range objs {
		for _, l := range o.lines {
			have[l.Pod] = append(have[l.Pod], l.Line)
		}
	}
	for pod, lines := range want {
		if fmt.Sprint(have[pod]) != fmt.Sprint(lines) {
			t.Fatalf("%s: %d lines in %d objects, want %d exactly once in order", pod, len(have[pod]), len(objs), len(lines))
		}
	}
}

func TestS3EveryLineOnceAcrossObjects(t *testing.T) {
	srv := newS3Server(t)
	e := newEnv(t)
	s := e.start(t, s3Config(srv.url))
	recs := records(3000)
	acked := acks(recs)
	write(t, s, recs)
	eventually(t, "every line acknowledged", func() bool { return acked() == len(recs) })
	s.stop(t)
	objs := s3Objects(t, srv.url, "logs/")
	if len(objs) < 5 {
		t.Fatalf("%d objects: want the lines spread over many", len(objs))
	}
	for _, o := range objs {
		if !strings.HasPrefix(o.key, "logs/ns/p/2026/11/27/07/") || !strings.HasSuffix(o.key, ".ndjson.gz") {
			t.Fatalf("object key %q", o.key)
		}
	}
	s3ExactlyOnce(t, recs, objs)
	if err := e.factory.Probe(context.Background(), s3Config(srv.url)); err != nil {
		t.Fatalf("probe: %v", err)
	}
	missing := s3Config(srv.url)
	missing.S3.Bucket = "nope"
	if err := e.factory.Probe(context.Background(), missing); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("probe of a missing bucket: %v", err)
	}
}

// TestS3FailedPutsAreRetriedWithoutDuplicates: PUTs answered 500 and 503,
// a PUT that hangs, and a PUT that is stored but whose answer is lost: each
// batch is PUT again under the same key, so every line is stored once.
func TestS3FailedPutsAreRetriedWithoutDuplicates(t *testing.T) {
	srv := newS3Server(t)
	srv.fault = func(n int) int {
		switch n {
		case 2, 3:
			return 500
		case 5:
			return 503
		case 7:
			return -1
		case 9:
			return -2
		}
		return 0
	}
	e := newEnv(t)
	c := s3Config(srv.url)
	s := e.start(t, c)
	recs := records(3000)
	write(t, s, recs)
	s.stop(t)
	objs := s3Objects(t, srv.url, "logs/")
	s3ExactlyOnce(t, recs, objs)
	st := s.Sink.(capture.StatsReporter).Stats()
	if st.FailedBatches != 5 || st.Retries != 5 || st.DroppedLines != 0 || st.SentLines != 3000 {
		t.Fatalf("stats %+v", st)
	}
	if dups := sum(t, e.reg, "log_capturer_sink_possible_duplicate_lines_total"); dups != 0 {
		t.Fatalf("%v possible duplicates counted for PUTs that overwrite", dups)
	}
}

func TestS3RefusedPutIsRejected(t *testing.T) {
	srv := newS3Server(t)
	srv.fault = func(n int) int {
		if n == 1 {
			return 403
		}
		return 0
	}
	e := newEnv(t)
	c := s3Config(srv.url)
	c.BatchMaxBytes = 1 << 20
	s := e.start(t, c)
	write(t, s, records(30))
	eventually(t, "the rejection", func() bool { return s.Sink.(capture.StatsReporter).Stats().RejectedLines == 30 })
	write(t, s, records(60)[30:])
	s.stop(t)
	st := s.Sink.(capture.StatsReporter).Stats()
	if n := len(s3Objects(t, srv.url, "logs/")); n != 1 || !strings.Contains(st.LastRejection, "AccessDenied") {
		t.Fatalf("%d objects; stats %+v", n, st)
	}
}

func TestS3Egress(t *testing.T) {
	srv := newS3Server(t)
	f := sinks.NewFactory(sinks.Options{RequestTimeout: time.Second})
	if err := f.Probe(context.Background(), s3Config(srv.url)); err == nil || !strings.Contains(err.Error(), "destination not allowed") {
		t.Fatalf("probe through the egress rules: %v", err)
	}
	s := startIn(t, f, "ns/p", s3Config(srv.url))
	write(t, s, records(10))
	eventually(t, "a refused dial", func() bool {
		st := s.Sink.(capture.StatsReporter).Stats()
		return st.FailedBatches > 0 && strings.Contains(st.LastError, "destination not allowed")
	})
	s.cancel()
	s.stop(t)
	if n := len(s3Objects(t, srv.url, "")); n != 0 {
		t.Fatalf("%d objects written past the egress rules", n)
	}
}
