// Package otlpreceiver is a strict OTLP logs receiver for tests, over
// OTLP/HTTP (binary protobuf, POST /v1/logs) and OTLP/gRPC, decoding with
// the OpenTelemetry Collector's own pdata. It checks what the OTLP sink
// must send (the content type and encoding, the semantic-convention
// resource attributes, a timestamp on every record, per-container order),
// keeps every record it accepts, and can be told to fail as a collector
// does: status codes with Retry-After (RetryInfo over gRPC), partial
// success, hangs.
package otlpreceiver

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/encoding/gzip" // the server decompresses gzip requests
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/log-capturer/log-capturer/test/faults"
)

// Record is one accepted log record.
type Record struct {
	// Resource holds the resource's string attributes.
	Resource map[string]string
	Time     time.Time
	Observed time.Time
	// Body is the record's body; Bytes tells it came as a bytes value.
	Body  string
	Bytes bool
	// Scope is the instrumentation scope's name.
	Scope string
	// Stream is the record's log.iostream attribute, empty without one.
	Stream string
}

// Fault is what the next requests get instead of a success.
type Fault struct {
	// Status is an HTTP status (over gRPC: 429 is ResourceExhausted, 503
	// Unavailable, 502 and 504 Unavailable, 400 InvalidArgument, 500
	// Internal).
	Status int
	// RetryAfter is the Retry-After header in seconds (RetryInfo over gRPC).
	RetryAfter int
	// Message is the error message.
	Message string
	// Reject, with Status 0, accepts the request but the last Reject records
	// of it, and answers with a partial success saying so.
	Reject int
	// Hang holds the request until the client gives up.
	Hang bool
	// StoreThenHang keeps the records, then hangs: the client cannot know
	// the export succeeded.
	StoreThenHang bool
}

// Receiver keeps what OTLP clients export to it. Its faults.Schedule
// (FailNext, FailAll, Recover, Close) says which requests fail.
type Receiver struct {
	faults.Schedule[Fault]
	mu       sync.Mutex
	records  []Record
	requests int
	problems []string
	headers  []http.Header
	// last is the last record time per container, to check order.
	last map[string]time.Time
}

// New returns an empty Receiver.
func New() *Receiver {
	return &Receiver{last: map[string]time.Time{}}
}

// Records returns a copy of every accepted record, in arrival order.
func (r *Receiver) Records() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.records...)
}

// Len is how many records were accepted.
func (r *Receiver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.records)
}

// Requests is how many export requests arrived.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Problems lists protocol violations seen.
func (r *Receiver) Problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.problems...)
}

// Headers returns the HTTP headers (or gRPC metadata) of every request.
func (r *Receiver) Headers() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.headers...)
}

func (r *Receiver) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// next counts a request and returns its fault, nil for none.
func (r *Receiver) next(h http.Header) *Fault {
	r.mu.Lock()
	r.requests++
	r.headers = append(r.headers, h)
	r.mu.Unlock()
	if f, ok := r.Take(); ok {
		return &f
	}
	return nil
}

func (r *Receiver) hang(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-r.Released():
	}
}

// store checks ld and keeps its records but the last reject ones.
func (r *Receiver) store(ld plog.Logs, reject int) {
	var recs []Record
	rls := ld.ResourceLogs()
	for i := range rls.Len() {
		rl := rls.At(i)
		res := map[string]string{}
		rl.Resource().Attributes().Range(func(k string, v pcommon.Value) bool {
			if v.Type() != pcommon.ValueTypeStr {
				r.problem("resource attribute %s is a %s, not a string", k, v.Type())
			}
			res[k] = v.AsString()
			return true
		})
		for _, k := range []string{"k8s.namespace.name", "k8s.pod.name", "k8s.container.name"} {
			if res[k] == "" {
				r.problem("a resource without %s: %v", k, res)
			}
		}
		sls := rl.ScopeLogs()
		for j := range sls.Len() {
			sl := sls.At(j)
			lrs := sl.LogRecords()
			for k := range lrs.Len() {
				lr := lrs.At(k)
				rec := Record{Resource: res, Time: lr.Timestamp().AsTime(), Observed: lr.ObservedTimestamp().AsTime(),
					Scope: sl.Scope().Name()}
				if v, ok := lr.Attributes().Get("log.iostream"); ok {
					rec.Stream = v.AsString()
				}
				switch lr.Body().Type() {
				case pcommon.ValueTypeStr:
					rec.Body = lr.Body().Str()
				case pcommon.ValueTypeBytes:
					rec.Body, rec.Bytes = string(lr.Body().Bytes().AsRaw()), true
				default:
					r.problem("a body of type %s", lr.Body().Type())
				}
				if lr.Timestamp() == 0 {
					r.problem("a record without a timestamp: %q", rec.Body)
				}
				recs = append(recs, rec)
			}
		}
	}
	recs = recs[:max(len(recs)-reject, 0)]
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		c := rec.Resource["k8s.namespace.name"] + "/" + rec.Resource["k8s.pod.name"] + "/" + rec.Resource["k8s.container.name"]
		if rec.Time.Before(r.last[c]) {
			r.problems = append(r.problems, fmt.Sprintf("%s: a record of %v after one of %v", c, rec.Time, r.last[c]))
		}
		r.last[c] = rec.Time
	}
	r.records = append(r.records, recs...)
}

// ServeHTTP serves OTLP/HTTP: POST /v1/logs with binary protobuf, gzip or
// not.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/logs" {
		r.problem("%s %s", req.Method, req.URL.Path)
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	f := r.next(req.Header.Clone())
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		r.problem("Content-Type %q", ct)
		http.Error(w, "unsupported content type", http.StatusUnsupportedMediaType)
		return
	}
	body := io.Reader(req.Body)
	switch enc := req.Header.Get("Content-Encoding"); enc {
	case "gzip":
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			r.problem("gzip: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	case "":
	default:
		r.problem("Content-Encoding %q", enc)
		http.Error(w, "unsupported encoding", http.StatusUnsupportedMediaType)
		return
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		r.problem("reading: %v", err)
		return
	}
	er := plogotlp.NewExportRequest()
	if err := er.UnmarshalProto(raw); err != nil {
		r.problem("decoding: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp := plogotlp.NewExportResponse()
	if f != nil {
		switch {
		case f.Hang:
			r.hang(req.Context())
			return
		case f.StoreThenHang:
			r.store(er.Logs(), 0)
			r.hang(req.Context())
			return
		case f.Status != 0:
			if f.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
			}
			http.Error(w, f.Message, f.Status)
			return
		case f.Reject > 0:
			resp.PartialSuccess().SetRejectedLogRecords(int64(f.Reject))
			resp.PartialSuccess().SetErrorMessage(f.Message)
		}
	}
	reject := 0
	if f != nil {
		reject = f.Reject
	}
	r.store(er.Logs(), reject)
	out, err := resp.MarshalProto()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// grpcServer is the Receiver's OTLP/gRPC LogsService.
type grpcServer struct {
	plogotlp.UnimplementedGRPCServer
	r *Receiver
}

var grpcCodes = map[int]codes.Code{
	http.StatusBadRequest: codes.InvalidArgument, http.StatusTooManyRequests: codes.ResourceExhausted,
	http.StatusInternalServerError: codes.Internal, http.StatusBadGateway: codes.Unavailable,
	http.StatusServiceUnavailable: codes.Unavailable, http.StatusGatewayTimeout: codes.Unavailable,
}

func (s *grpcServer) Export(ctx context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	resp := plogotlp.NewExportResponse()
	h := http.Header{}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		for k, vs := range md {
			for _, v := range vs {
				h.Add(k, v)
			}
		}
	}
	f := s.r.next(h)
	if f == nil {
		s.r.store(req.Logs(), 0)
		return resp, nil
	}
	switch {
	case f.Hang:
		s.r.hang(ctx)
		return resp, status.Error(codes.DeadlineExceeded, "hung")
	case f.StoreThenHang:
		s.r.store(req.Logs(), 0)
		s.r.hang(ctx)
		return resp, status.Error(codes.DeadlineExceeded, "hung")
	case f.Status != 0:
		code, ok := grpcCodes[f.Status]
		if !ok {
			code = codes.Unknown
		}
		st := status.New(code, f.Message)
		if f.RetryAfter > 0 {
			if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(f.RetryAfter) * time.Second)}); err == nil {
				st = d
			}
		}
		return resp, st.Err()
	}
	s.r.store(req.Logs(), f.Reject)
	if f.Reject > 0 {
		resp.PartialSuccess().SetRejectedLogRecords(int64(f.Reject))
		resp.PartialSuccess().SetErrorMessage(f.Message)
	}
	return resp, nil
}

// ServeGRPC serves OTLP/gRPC on l until the returned stop is called.
func (r *Receiver) ServeGRPC(l net.Listener) (stop func()) { return r.serveGRPC(l) }

// ServeGRPCTLS serves OTLP/gRPC over TLS on l until the returned stop is
// called.
func (r *Receiver) ServeGRPCTLS(l net.Listener, cfg *tls.Config) (stop func()) {
	return r.serveGRPC(l, grpc.Creds(credentials.NewTLS(cfg)))
}

func (r *Receiver) serveGRPC(l net.Listener, opts ...grpc.ServerOption) (stop func()) {
	srv := grpc.NewServer(opts...)
	plogotlp.RegisterGRPCServer(srv, &grpcServer{r: r})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	return func() {
		r.Close()
		srv.Stop()
		<-done
	}
}

// Containers groups records by "namespace/pod/container", in arrival order.
func Containers(recs []Record) map[string][]string {
	out := map[string][]string{}
	for _, rec := range recs {
		c := strings.Join([]string{rec.Resource["k8s.namespace.name"], rec.Resource["k8s.pod.name"], rec.Resource["k8s.container.name"]}, "/")
		out[c] = append(out[c], rec.Body)
	}
	return out
}
