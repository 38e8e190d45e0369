package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/log-capturer/log-capturer/capture"
)

// maxIndexName is the longest index name Elasticsearch accepts, in bytes.
const maxIndexName = 255

// esDeliverer sends batches with the bulk API through the official
// client, and tells the queued sink which items to send again.
type esDeliverer struct {
	client    *elasticsearch.Client
	transport *http.Transport
	index     string
	templated bool
	timeout   time.Duration
	body      []byte
	// sent maps a bulk item to its record's index in the batch.
	sent []int
}

func newESClient(c *capture.ElasticsearchConfig, eg egress) (*elasticsearch.Client, *http.Transport, error) {
	// newHTTPClient builds the transport: the egress dialer and TLS. The
	// Elasticsearch client uses it directly, so redirects are not followed.
	_, tr, err := newHTTPClient(c.TLS, 0, eg)
	if err != nil {
		return nil, nil, err
	}
	client, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: []string{strings.TrimSuffix(c.URL, "/")},
		Username:  c.Credentials.Username, Password: c.Credentials.Password, APIKey: c.APIKey,
		Transport:           tr,
		DisableRetry:        true, // the queued sink retries, with its backoff
		CompressRequestBody: true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	return client, tr, nil
}

func newESDeliverer(c *capture.ElasticsearchConfig, timeout time.Duration, eg egress) (*esDeliverer, error) {
	client, tr, err := newESClient(c, eg)
	if err != nil {
		return nil, err
	}
	return &esDeliverer{client: client, transport: tr, index: c.Index, templated: strings.Contains(c.Index, "{"), timeout: timeout}, nil
}

func (d *esDeliverer) indexFor(r *capture.Record) string {
	if !d.templated {
		return d.index
	}
	return strings.NewReplacer("{namespace}", r.Namespace, "{date}", r.Time.UTC().Format("2006.01.02")).Replace(d.index)
}

// appendESDocument appends the bulk action and the document of r: the
// Elastic Common Schema's @timestamp, message and kubernetes.* fields. Pod
// label keys have their dots replaced by '_', as Filebeat does, so that
// app and app.kubernetes.io/name do not collide as objects.
func appendESDocument(b []byte, index string, r *capture.Record) []byte {
	b = append(b, `{"create":{"_index":`...)
	b = appendJSONString(b, index)
	b = append(b, `}}`+"\n"+`{"@timestamp":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","message":`...)
	b = appendJSONString(b, r.Line)
	b = append(b, `,"kubernetes":{"namespace":`...)
	b = appendJSONString(b, r.Namespace)
	b = append(b, `,"pod":{"name":`...)
	b = appendJSONString(b, r.Pod)
	b = append(b, `},"container":{"name":`...)
	b = appendJSONString(b, r.Container)
	b = append(b, `},"node":{"name":`...)
	b = appendJSONString(b, r.Node)
	b = append(b, '}')
	if len(r.Labels) > 0 {
		dedotted := make(map[string]string, len(r.Labels))
		for k, v := range r.Labels {
			dedotted[strings.ReplaceAll(k, ".", "_")] = v
		}
		b = append(b, `,"labels":{`...)
		b = appendSortedMap(b, dedotted)
		b = append(b, '}')
	}
	return append(b, "}}\n"...)
}

// esBulkResponse is what the bulk API answers: one item per action, in
// order.
type esBulkResponse struct {
	Errors bool                       `json:"errors"`
	Items  []map[string]esBulkItemRes `json:"items"`
}

type esBulkItemRes struct {
	Status int `json:"status"`
	Error  struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"error"`
}

func (d *esDeliverer) deliver(ctx context.Context, batch []*capture.Record) error {
	d.body, d.sent = d.body[:0], d.sent[:0]
	rejected, why := 0, ""
	for i, r := range batch {
		index := d.indexFor(r)
		if len(index) > maxIndexName {
			rejected++
			why = fmt.Sprintf("index %.40q… is %d bytes long, over Elasticsearch's %d", index, len(index), maxIndexName)
			continue
		}
		d.body = appendESDocument(d.body, index, r)
		d.sent = append(d.sent, i)
	}
	if len(d.sent) == 0 {
		return &partialError{rejected: rejected, message: why}
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	res, err := d.client.Bulk(bytes.NewReader(d.body), d.client.Bulk.WithContext(ctx))
	if err != nil {
		if strings.Contains(err.Error(), "server is not Elasticsearch") {
			// The client's product check (no X-Elastic-Product header on a
			// 2xx, e.g. OpenSearch): the server may have stored the batch,
			// and sending it again would store it again, without end.
			return &sendError{code: "not Elasticsearch", message: "the server answered without the X-Elastic-Product header (OpenSearch is not supported); the batch may have been stored"}
		}
		return fmt.Errorf("bulk request: %w", err)
	}
	defer res.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the bulk answer: %w", err)
	}
	if res.StatusCode/100 != 2 {
		se := &sendError{status: res.StatusCode, message: remoteMessage(answer)}
		switch {
		case res.StatusCode/100 == 3:
			se.message = "redirects are not followed"
		case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500:
			se.retryable = true
			se.retryAfter = retryAfter(res.Header.Get("Retry-After"))
		}
		return se
	}
	var br esBulkResponse
	if err := json.Unmarshal(answer, &br); err != nil || len(br.Items) != len(d.sent) {
		// The request was taken but its items cannot be told apart: send
		// the batch again, counted as possible duplicates.
		return fmt.Errorf("bulk answered %d items for %d documents: %s", len(br.Items), len(d.sent), remoteMessage(answer))
	}
	if !br.Errors && rejected == 0 {
		return nil
	}
	var retry []int
	retried := ""
	for i, item := range br.Items {
		var st esBulkItemRes
		for _, v := range item {
			st = v
		}
		switch {
		case st.Status/100 == 2:
		case st.Status == http.StatusTooManyRequests || st.Status >= 500:
			retry = append(retry, d.sent[i])
			retried = fmt.Sprintf("%d %s: %s", st.Status, st.Error.Type, st.Error.Reason)
		default:
			rejected++
			why = fmt.Sprintf("%d %s: %s", st.Status, st.Error.Type, st.Error.Reason)
		}
	}
	if rejected == 0 && len(retry) == 0 {
		return nil
	}
	return &partialError{rejected: rejected, retry: retry, message: why, retryMessage: retried}
}

func (d *esDeliverer) close(context.Context) error {
	d.transport.CloseIdleConnections()
	return nil
}

// probeES asks the cluster who it is (GET /).
func probeES(ctx context.Context, c *capture.ElasticsearchConfig, eg egress) error {
	client, tr, err := newESClient(c, eg)
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	res, err := client.Info(client.Info.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("probing Elasticsearch: %w", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("probing Elasticsearch: GET / answered %d", res.StatusCode)
	}
	return nil
}
