package sinks

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/klauspost/compress/s2"

	"github.com/log-capturer/log-capturer/capture"
)

// newHTTPClient returns a client with its own transport, configured for TLS.
func newHTTPClient(t *capture.TLSConfig, timeout time.Duration, eg egress) (*http.Client, *http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = eg.dialer().DialContext
	tr.MaxIdleConnsPerHost = 4
	if t != nil {
		cfg, err := tlsConfig(t)
		if err != nil {
			return nil, nil, err
		}
		tr.TLSClientConfig = cfg
	}
	return &http.Client{Transport: tr, Timeout: timeout, CheckRedirect: refuseRedirect}, tr, nil
}

// tlsConfig is the client TLS configuration of t; nil t trusts the
// system's certificate authorities.
func tlsConfig(t *capture.TLSConfig) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t == nil {
		return cfg, nil
	}
	cfg.ServerName = t.ServerName
	cfg.InsecureSkipVerify = t.InsecureSkipVerify //nolint:gosec // only when the user asks for it
	if len(t.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(t.CAPEM) {
			return nil, errors.New("tls.ca holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if len(t.CertPEM) > 0 {
		pair, err := tls.X509KeyPair(t.CertPEM, t.KeyPEM)
		if err != nil {
			return nil, fmt.Errorf("tls.cert and tls.key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// refuseRedirect follows no redirect: a destination that answers 3xx gets
// that answer as the outcome, so that credentials sent to it never travel on
// to another host (or another port of this one).
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// maxRemoteMessage bounds what a destination's answer may put into status,
// Events and logs.
const maxRemoteMessage = 256

// remoteMessage makes a destination's answer safe to show: valid UTF-8,
// control characters (terminal escapes included) replaced, whitespace
// collapsed, and at most maxRemoteMessage bytes, marked when cut.
func remoteMessage(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	var sb strings.Builder
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = true
			continue
		case unicode.IsControl(r) || !unicode.IsPrint(r):
			r = '?'
		}
		if space && sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		space = false
		if sb.Len()+utf8.RuneLen(r) > maxRemoteMessage {
			sb.WriteString(" …[cut]")
			break
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

// redactURL is u without the password of its userinfo, for messages.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(an unparsable URL)"
	}
	return p.Redacted()
}

// post sends body and classifies the answer: 2xx succeeds; 429 and 5xx are
// retried (honouring Retry-After); other statuses are permanent.
func post(ctx context.Context, c *http.Client, url string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return &sendError{status: 0, message: err.Error()}
	}
	req.Header = header
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("posting to %s: %w", redactURL(url), err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4*maxRemoteMessage))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	se := &sendError{status: resp.StatusCode, message: remoteMessage(msg)}
	if resp.StatusCode/100 == 3 {
		se.message = "redirects are not followed (Location: " + remoteMessage([]byte(redactURL(resp.Header.Get("Location")))) + ")"
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		se.retryable = true
		se.retryAfter = retryAfter(resp.Header.Get("Retry-After"))
	}
	return se
}

// retryAfter parses a Retry-After header in seconds or as an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

func authHeader(h http.Header, c capture.Credentials) {
	switch {
	case c.BearerToken != "":
		h.Set("Authorization", "Bearer "+c.BearerToken)
	case c.Username != "" || c.Password != "":
		r := &http.Request{Header: h}
		r.SetBasicAuth(c.Username, c.Password)
	}
}

// lokiDeliverer pushes batches to Loki's /loki/api/v1/push.
type lokiDeliverer struct {
	client    *http.Client
	transport *http.Transport
	url       string
	json      bool
	header    http.Header
	enc       *lokiEncoder
	snappyBuf []byte
	truncated func(n int)
}

func newLokiDeliverer(c *capture.LokiConfig, timeout time.Duration, eg egress, truncated func(n int)) (*lokiDeliverer, error) {
	client, tr, err := newHTTPClient(c.TLS, timeout, eg)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	if c.JSON {
		h.Set("Content-Type", "application/json")
	} else {
		h.Set("Content-Type", "application/x-protobuf")
		h.Set("Content-Encoding", "snappy")
	}
	h.Set("User-Agent", "log-capturer")
	if c.TenantID != "" {
		h.Set("X-Scope-OrgID", c.TenantID)
	}
	authHeader(h, c.Credentials)
	return &lokiDeliverer{client: client, transport: tr, url: strings.TrimSuffix(c.URL, "/") + "/loki/api/v1/push",
		json: c.JSON, header: h, enc: newLokiEncoder(c), truncated: truncated}, nil
}

func (d *lokiDeliverer) deliver(ctx context.Context, batch []*capture.Record) error {
	before := d.enc.truncated
	var body []byte
	if d.json {
		body = d.enc.encodeJSON(batch)
	} else {
		// klauspost/compress's snappy-compatible encoder (s2), the same
		// block format Loki decodes.
		raw := d.enc.encodeProto(batch)
		// EncodeSnappy allocates unless dst has room for the worst case.
		if n := s2.MaxEncodedLen(len(raw)); n > cap(d.snappyBuf) {
			d.snappyBuf = make([]byte, n)
		}
		d.snappyBuf = s2.EncodeSnappy(d.snappyBuf[:cap(d.snappyBuf)], raw)
		body = d.snappyBuf
	}
	err := post(ctx, d.client, d.url, body, d.header.Clone())
	if err == nil && d.enc.truncated > before {
		d.truncated(d.enc.truncated - before)
	}
	d.enc.truncated = before
	return err
}

func (d *lokiDeliverer) close(context.Context) error {
	d.transport.CloseIdleConnections()
	return nil
}

// httpDeliverer posts batches as NDJSON.
type httpDeliverer struct {
	client    *http.Client
	transport *http.Transport
	url       string
	gzip      bool
	header    http.Header
	buf       bytes.Buffer
	raw       []byte
	gz        *gzip.Writer
}

func newHTTPDeliverer(c *capture.HTTPConfig, timeout time.Duration, eg egress) (*httpDeliverer, error) {
	client, tr, err := newHTTPClient(c.TLS, timeout, eg)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("User-Agent", "log-capturer")
	for k, v := range c.Headers {
		h.Set(k, v)
	}
	authHeader(h, c.Credentials)
	d := &httpDeliverer{client: client, transport: tr, url: c.URL, gzip: c.Gzip, header: h}
	if c.Gzip {
		h.Set("Content-Encoding", "gzip")
		d.gz = gzip.NewWriter(&d.buf)
	}
	return d, nil
}

func (d *httpDeliverer) deliver(ctx context.Context, batch []*capture.Record) error {
	d.raw = appendBatch(d.raw[:0], batch, false)
	body := d.raw
	if d.gzip {
		d.buf.Reset()
		d.gz.Reset(&d.buf)
		_, _ = d.gz.Write(d.raw)
		if err := d.gz.Close(); err != nil {
			return fmt.Errorf("compressing batch: %w", err)
		}
		body = d.buf.Bytes()
	}
	return post(ctx, d.client, d.url, body, d.header.Clone())
}

func (d *httpDeliverer) close(context.Context) error {
	d.transport.CloseIdleConnections()
	return nil
}
