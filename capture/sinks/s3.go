package sinks

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/log-capturer/log-capturer/capture"
)

// s3Deliverer writes each batch as one object with minio-go, the batch's
// key kept across its retries so that a repeated PUT overwrites instead of
// duplicating.
type s3Deliverer struct {
	client    *minio.Client
	transport *http.Transport
	bucket    string
	prefix    string
	gzip      bool
	timeout   time.Duration
	// token tells this deliverer's objects from those of an earlier one of
	// the same pipeline (a restart reads lines again from the positions).
	token string
	seq   uint64
	// pending is the batch whose key is key, until it is delivered.
	pendingFirst *capture.Record
	pendingLen   int
	key          string
	raw          []byte
	buf          bytes.Buffer
	gz           *gzip.Writer
}

func newS3Client(c *capture.S3Config, eg egress) (*minio.Client, *http.Transport, error) {
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return nil, nil, fmt.Errorf("s3 endpoint: %w", err)
	}
	_, tr, err := newHTTPClient(c.TLS, 0, eg)
	if err != nil {
		return nil, nil, err
	}
	if u.Scheme == "https" && tr.TLSClientConfig == nil {
		if tr.TLSClientConfig, err = tlsConfig(nil); err != nil {
			return nil, nil, err
		}
	}
	lookup := minio.BucketLookupAuto
	if c.PathStyle {
		lookup = minio.BucketLookupPath
	}
	var creds *credentials.Credentials
	if c.Credentials.Username != "" {
		creds = credentials.NewStaticV4(c.Credentials.Username, c.Credentials.Password, "")
	} else {
		creds = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
	}
	client, err := minio.New(u.Host, &minio.Options{Creds: creds, Secure: u.Scheme == "https", Transport: tr,
		Region: c.Region, BucketLookup: lookup,
		MaxRetries: 1, // the queued sink retries, with its backoff
	})
	if err != nil {
		return nil, nil, fmt.Errorf("s3 client: %w", err)
	}
	return client, tr, nil
}

func newS3Deliverer(pipeline string, c *capture.S3Config, timeout time.Duration, eg egress) (*s3Deliverer, error) {
	client, tr, err := newS3Client(c, eg)
	if err != nil {
		return nil, err
	}
	ns, name, _ := strings.Cut(pipeline, "/")
	prefix := strings.NewReplacer("{namespace}", ns, "{pipeline}", name).Replace(c.Prefix)
	if prefix != "" {
		prefix += "/"
	}
	var tok [4]byte
	_, _ = rand.Read(tok[:])
	d := &s3Deliverer{client: client, transport: tr, bucket: c.Bucket, prefix: prefix + name + "/", gzip: c.Gzip,
		timeout: timeout, token: hex.EncodeToString(tok[:])}
	if c.Gzip {
		d.gz = gzip.NewWriter(&d.buf)
	}
	return d, nil
}

// keyFor names the object of batch: the first line's hour window, its
// time, this deliverer's token and a sequence number, the same for every
// attempt at the batch.
func (d *s3Deliverer) keyFor(batch []*capture.Record) string {
	if d.pendingFirst == batch[0] && d.pendingLen == len(batch) {
		return d.key
	}
	d.seq++
	t := batch[0].Time.UTC()
	ext := ".ndjson"
	if d.gzip {
		ext += ".gz"
	}
	d.key = fmt.Sprintf("%s%s/%d-%s-%06d%s", d.prefix, t.Format("2006/01/02/15"), t.UnixNano(), d.token, d.seq, ext)
	d.pendingFirst, d.pendingLen = batch[0], len(batch)
	return d.key
}

func (d *s3Deliverer) deliver(ctx context.Context, batch []*capture.Record) error {
	if len(batch) == 0 {
		return nil
	}
	key := d.keyFor(batch)
	d.raw = appendBatch(d.raw[:0], batch, false)
	body := d.raw
	opts := minio.PutObjectOptions{ContentType: "application/x-ndjson"}
	if d.gzip {
		d.buf.Reset()
		d.gz.Reset(&d.buf)
		_, _ = d.gz.Write(d.raw)
		if err := d.gz.Close(); err != nil {
			return fmt.Errorf("compressing the object: %w", err)
		}
		body = d.buf.Bytes()
		opts.ContentEncoding = "gzip"
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	_, err := d.client.PutObject(ctx, d.bucket, key, bytes.NewReader(body), int64(len(body)), opts)
	if err == nil {
		d.pendingFirst, d.pendingLen = nil, 0
		return nil
	}
	er := minio.ToErrorResponse(err)
	if er.StatusCode == 0 {
		// No answer: the next attempt PUTs the same key, which cannot
		// store the batch twice.
		return &retrySafe{err: fmt.Errorf("putting %s/%s: %w", d.bucket, key, err)}
	}
	se := &sendError{status: er.StatusCode, message: remoteMessage([]byte(er.Code + ": " + er.Message))}
	if er.StatusCode == http.StatusTooManyRequests || er.StatusCode >= 500 || er.Code == "SlowDown" {
		se.retryable = true
	}
	return se
}

func (d *s3Deliverer) close(context.Context) error {
	d.transport.CloseIdleConnections()
	return nil
}

// probeS3 checks that the bucket exists and the credentials may see it.
func probeS3(ctx context.Context, c *capture.S3Config, eg egress) error {
	client, tr, err := newS3Client(c, eg)
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	ok, err := client.BucketExists(ctx, c.Bucket)
	if err != nil {
		return fmt.Errorf("probing S3 bucket %s: %w", c.Bucket, err)
	}
	if !ok {
		return fmt.Errorf("probing S3: bucket %s does not exist", c.Bucket)
	}
	return nil
}
