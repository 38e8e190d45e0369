package sinks

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcgzip "google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/log-capturer/log-capturer/capture"
)

// The resource attributes an OTLP sink sets from the pod, named as the
// OpenTelemetry semantic conventions name them.
const (
	otlpNamespace = "k8s.namespace.name"
	otlpPod       = "k8s.pod.name"
	otlpContainer = "k8s.container.name"
	otlpNode      = "k8s.node.name"
	// otlpPodLabel is followed by the pod label's key.
	otlpPodLabel = "k8s.pod.label."
	// otlpIOStream is the log record attribute of the stream (stdout or stderr).
	otlpIOStream = "log.iostream"
	// otlpScope is the instrumentation scope of every record.
	otlpScope = "github.com/log-capturer/log-capturer"
)

// otlpEncoder turns batches into OTLP logs: one resource per container
// (namespace, pod, container, node and the pod's labels the pipeline
// copies), its records in the batch's order, the line as the body and the
// container runtime's timestamp as the time.
type otlpEncoder struct {
	// static are the user's resource attributes, in key order.
	static [][2]string
	now    func() time.Time
}

func newOTLPEncoder(c *capture.OTLPConfig) *otlpEncoder {
	e := &otlpEncoder{now: time.Now}
	for k, v := range c.ResourceAttributes {
		e.static = append(e.static, [2]string{k, v})
	}
	slices.SortFunc(e.static, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return e
}

type otlpResourceKey struct{ namespace, pod, container, node string }

func (e *otlpEncoder) encode(batch []*capture.Record) plog.Logs {
	ld := plog.NewLogs()
	rls := ld.ResourceLogs()
	byContainer := make(map[otlpResourceKey]plog.LogRecordSlice, 8)
	observed := pcommon.NewTimestampFromTime(e.now())
	var labelKeys []string
	for _, r := range batch {
		k := otlpResourceKey{r.Namespace, r.Pod, r.Container, r.Node}
		lrs, ok := byContainer[k]
		if !ok {
			rl := rls.AppendEmpty()
			attrs := rl.Resource().Attributes()
			attrs.EnsureCapacity(len(e.static) + 4 + len(r.Labels))
			for _, kv := range e.static {
				attrs.PutStr(kv[0], kv[1])
			}
			attrs.PutStr(otlpNamespace, r.Namespace)
			attrs.PutStr(otlpPod, r.Pod)
			attrs.PutStr(otlpContainer, r.Container)
			if r.Node != "" {
				attrs.PutStr(otlpNode, r.Node)
			}
			labelKeys = labelKeys[:0]
			for lk := range r.Labels {
				labelKeys = append(labelKeys, lk)
			}
			slices.Sort(labelKeys)
			for _, lk := range labelKeys {
				attrs.PutStr(otlpPodLabel+lk, r.Labels[lk])
			}
			sl := rl.ScopeLogs().AppendEmpty()
			sl.Scope().SetName(otlpScope)
			lrs = sl.LogRecords()
			byContainer[k] = lrs
		}
		lr := lrs.AppendEmpty()
		if !r.Time.IsZero() {
			lr.SetTimestamp(pcommon.NewTimestampFromTime(r.Time))
		}
		lr.SetObservedTimestamp(observed)
		if r.Stream != "" {
			// Known when read from the kubelet's files.
			lr.Attributes().PutStr(otlpIOStream, r.Stream)
		}
		if utf8.ValidString(r.Line) {
			lr.Body().SetStr(r.Line)
		} else {
			// A protobuf string must be UTF-8: other bytes go as they were
			// written, as a bytes body.
			lr.Body().SetEmptyBytes().FromRaw([]byte(r.Line))
		}
	}
	return ld
}

// otlpPartial turns an export response's partial success into a
// *partialError, nil when nothing was rejected (an error message alone is
// a warning, the records were accepted).
func otlpPartial(resp plogotlp.ExportResponse) error {
	ps := resp.PartialSuccess()
	if ps.RejectedLogRecords() <= 0 {
		return nil
	}
	return &partialError{rejected: int(ps.RejectedLogRecords()), message: ps.ErrorMessage()}
}

// otlpHTTPDeliverer posts OTLP/HTTP binary protobuf export requests to
// <url>/v1/logs.
type otlpHTTPDeliverer struct {
	client    *http.Client
	transport *http.Transport
	url       string
	header    http.Header
	enc       *otlpEncoder
	gzip      bool
	buf       bytes.Buffer
	gz        *gzip.Writer
}

func newOTLPHTTPDeliverer(c *capture.OTLPConfig, timeout time.Duration, eg egress) (*otlpHTTPDeliverer, error) {
	client, tr, err := newHTTPClient(c.TLS, timeout, eg)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	for k, v := range c.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/x-protobuf")
	h.Set("User-Agent", "log-capturer")
	authHeader(h, c.Credentials)
	d := &otlpHTTPDeliverer{client: client, transport: tr, url: strings.TrimSuffix(c.URL, "/") + "/v1/logs",
		header: h, enc: newOTLPEncoder(c), gzip: c.Gzip}
	if c.Gzip {
		h.Set("Content-Encoding", "gzip")
		d.gz = gzip.NewWriter(&d.buf)
	}
	return d, nil
}

func (d *otlpHTTPDeliverer) deliver(ctx context.Context, batch []*capture.Record) error {
	body, err := plogotlp.NewExportRequestFromLogs(d.enc.encode(batch)).MarshalProto()
	if err != nil {
		return fmt.Errorf("encoding OTLP export request: %w", err)
	}
	if d.gzip {
		d.buf.Reset()
		d.gz.Reset(&d.buf)
		_, _ = d.gz.Write(body)
		if err := d.gz.Close(); err != nil {
			return fmt.Errorf("compressing OTLP export request: %w", err)
		}
		body = d.buf.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return &sendError{message: err.Error()}
	}
	req.Header = d.header.Clone()
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("exporting to %s: %w", redactURL(d.url), err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	json := strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
	if resp.StatusCode/100 == 2 {
		if len(answer) == 0 {
			return nil
		}
		er := plogotlp.NewExportResponse()
		if json {
			err = er.UnmarshalJSON(answer)
		} else {
			err = er.UnmarshalProto(answer)
		}
		if err != nil {
			// The status says the data was accepted; an answer that does not
			// parse cannot take that back.
			return nil //nolint:nilerr // see above
		}
		return otlpPartial(er)
	}
	se := &sendError{status: resp.StatusCode, message: otlpHTTPMessage(answer, json)}
	if resp.StatusCode/100 == 3 {
		se.message = "redirects are not followed (Location: " + remoteMessage([]byte(redactURL(resp.Header.Get("Location")))) + ")"
	}
	// OTLP/HTTP: only these are retried; every other 4xx and 5xx must not be.
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		se.retryable = true
		se.retryAfter = retryAfter(resp.Header.Get("Retry-After"))
	}
	return se
}

// otlpHTTPMessage is the message of an OTLP/HTTP failure: the
// google.rpc.Status the server should answer with, or the body as text.
func otlpHTTPMessage(answer []byte, json bool) string {
	if !json {
		st := &rpcstatus.Status{}
		if err := proto.Unmarshal(answer, st); err == nil && st.GetMessage() != "" {
			return remoteMessage([]byte(st.GetMessage()))
		}
	}
	return remoteMessage(answer)
}

func (d *otlpHTTPDeliverer) close(context.Context) error {
	d.transport.CloseIdleConnections()
	return nil
}

// otlpGRPCDeliverer calls the OTLP LogsService over gRPC.
type otlpGRPCDeliverer struct {
	conn    *grpc.ClientConn
	client  plogotlp.GRPCClient
	target  string
	md      metadata.MD
	timeout time.Duration
	enc     *otlpEncoder
	opts    []grpc.CallOption
}

func newOTLPGRPCDeliverer(c *capture.OTLPConfig, timeout time.Duration, eg egress) (*otlpGRPCDeliverer, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("otlp url: %w", err)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	target := net.JoinHostPort(u.Hostname(), port)
	creds := insecure.NewCredentials()
	if u.Scheme == "https" {
		cfg, err := tlsConfig(c.TLS)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(cfg)
	}
	md := metadata.MD{}
	for k, v := range c.Headers {
		if !printableASCII(v) {
			return nil, fmt.Errorf("otlp header %s: gRPC metadata values must be printable ASCII", k)
		}
		md.Set(k, v)
	}
	h := http.Header{}
	authHeader(h, c.Credentials)
	if a := h.Get("Authorization"); a != "" {
		if !printableASCII(a) {
			return nil, errors.New("otlp auth: gRPC metadata values must be printable ASCII")
		}
		md.Set("authorization", a)
	}
	dialer := eg.dialer()
	// passthrough: the egress dialer resolves the name and checks every
	// address it connects to.
	conn, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent("log-capturer"),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		return nil, fmt.Errorf("otlp gRPC client for %s: %w", target, err)
	}
	d := &otlpGRPCDeliverer{conn: conn, client: plogotlp.NewGRPCClient(conn), target: target, md: md,
		timeout: timeout, enc: newOTLPEncoder(c)}
	if c.Gzip {
		d.opts = append(d.opts, grpc.UseCompressor(grpcgzip.Name))
	}
	return d, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func (d *otlpGRPCDeliverer) deliver(ctx context.Context, batch []*capture.Record) error {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, d.md)
	resp, err := d.client.Export(ctx, plogotlp.NewExportRequestFromLogs(d.enc.encode(batch)), d.opts...)
	if err != nil {
		return d.classify(err)
	}
	return otlpPartial(resp)
}

// classify turns a failed call into a *sendError by OTLP/gRPC's rules: the
// retryable codes are retried (ResourceExhausted only when the server says
// when, in RetryInfo), every other code refuses the batch for good. A call
// that timed out or was cancelled has an unknown outcome and is retried as
// such (possible duplicates). Unavailable is taken as a known outcome, as
// the server's answer or a connection that could not be made; gRPC does not
// tell these from a connection lost after the request was written.
func (d *otlpGRPCDeliverer) classify(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.DeadlineExceeded || st.Code() == codes.Canceled {
		return fmt.Errorf("exporting over gRPC to %s: %w", d.target, err)
	}
	se := &sendError{code: st.Code().String(), message: remoteMessage([]byte(st.Message()))}
	var wait time.Duration
	hasRetryInfo := false
	for _, det := range st.Details() {
		if ri, ok := det.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			wait, hasRetryInfo = max(ri.GetRetryDelay().AsDuration(), 0), true
		}
	}
	switch st.Code() {
	case codes.Unavailable, codes.Aborted, codes.OutOfRange, codes.DataLoss:
		se.retryable, se.retryAfter = true, wait
	case codes.ResourceExhausted:
		se.retryable, se.retryAfter = hasRetryInfo, wait
	}
	return se
}

func (d *otlpGRPCDeliverer) close(context.Context) error {
	if err := d.conn.Close(); err != nil {
		return fmt.Errorf("closing the gRPC connection to %s: %w", d.target, err)
	}
	return nil
}
