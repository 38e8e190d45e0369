package sinks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/log-capturer/log-capturer/capture"
)

// maxIndexName is the longest index name Elasticsearch and OpenSearch
// accept, in bytes.
const maxIndexName = 255

// maxBulkAnswer bounds what is read of a bulk answer.
const maxBulkAnswer = 64 << 20

// bulkDeliverer sends batches with the bulk API that Elasticsearch and
// OpenSearch share, and tells the queued sink which items to send again.
// The body, the answer's per-item results and what follows from them are
// the same for both; post, which sends a body through the product's own
// client, is not.
type bulkDeliverer struct {
	// product names the destination in messages: Elasticsearch or OpenSearch.
	product   string
	index     string
	templated bool
	timeout   time.Duration
	post      bulkPoster
	body      []byte
	// sent maps a bulk item to its record's index in the batch.
	sent []int
}

// bulkPoster sends one bulk body and returns the answer it read, or an
// error when there was none (a *sendError for a failure the client itself
// decided, such as Elasticsearch's product check).
type bulkPoster interface {
	post(ctx context.Context, body []byte) (*bulkAnswer, error)
	close() error
}

// bulkAnswer is the answer to a bulk request, read to its end (at most
// maxBulkAnswer bytes).
type bulkAnswer struct {
	status     int
	retryAfter string
	body       []byte
}

// readBulkAnswer reads a response's status, Retry-After and body.
func readBulkAnswer(status int, h http.Header, body io.Reader) (*bulkAnswer, error) {
	b, err := io.ReadAll(io.LimitReader(body, maxBulkAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading the bulk answer: %w", err)
	}
	return &bulkAnswer{status: status, retryAfter: h.Get("Retry-After"), body: b}, nil
}

func newBulkDeliverer(product string, c *capture.ElasticsearchConfig, timeout time.Duration, p bulkPoster) *bulkDeliverer {
	return &bulkDeliverer{product: product, index: c.Index, templated: strings.Contains(c.Index, "{"), timeout: timeout, post: p}
}

func (d *bulkDeliverer) indexFor(r *capture.Record) string {
	if !d.templated {
		return d.index
	}
	return strings.NewReplacer("{namespace}", r.Namespace, "{date}", r.Time.UTC().Format("2006.01.02")).Replace(d.index)
}

// appendBulkDocument appends the bulk action and the document of r: the
// Elastic Common Schema's @timestamp, message and kubernetes.* fields. Pod
// label keys have their dots replaced by '_', as Filebeat does, so that
// app and app.kubernetes.io/name do not collide as objects.
func appendBulkDocument(b []byte, index string, r *capture.Record) []byte {
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

// bulkResponse is what the bulk API answers: one item per action, in
// order.
type bulkResponse struct {
	Errors bool                     `json:"errors"`
	Items  []map[string]bulkItemRes `json:"items"`
}

type bulkItemRes struct {
	Status int `json:"status"`
	Error  struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"error"`
}

func (d *bulkDeliverer) deliver(ctx context.Context, batch []*capture.Record) error {
	d.body, d.sent = d.body[:0], d.sent[:0]
	rejected, why := 0, ""
	for i, r := range batch {
		index := d.indexFor(r)
		if len(index) > maxIndexName {
			rejected++
			why = fmt.Sprintf("index %.40q… is %d bytes long, over %s's %d", index, len(index), d.product, maxIndexName)
			continue
		}
		d.body = appendBulkDocument(d.body, index, r)
		d.sent = append(d.sent, i)
	}
	if len(d.sent) == 0 {
		return &partialError{rejected: rejected, message: why}
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	res, err := d.post.post(ctx, d.body)
	if err != nil {
		return err
	}
	if res.status/100 != 2 {
		se := &sendError{status: res.status, message: remoteMessage(res.body)}
		switch {
		case res.status/100 == 3:
			se.message = "redirects are not followed"
		case res.status == http.StatusTooManyRequests || res.status >= 500:
			se.retryable = true
			se.retryAfter = retryAfter(res.retryAfter)
		}
		return se
	}
	var br bulkResponse
	if err := json.Unmarshal(res.body, &br); err != nil || len(br.Items) != len(d.sent) {
		// The request was taken but its items cannot be told apart: send
		// the batch again, counted as possible duplicates.
		return fmt.Errorf("bulk answered %d items for %d documents: %s", len(br.Items), len(d.sent), remoteMessage(res.body))
	}
	if !br.Errors && rejected == 0 {
		return nil
	}
	var retry []int
	retried := ""
	for i, item := range br.Items {
		var st bulkItemRes
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

func (d *bulkDeliverer) close(context.Context) error {
	return d.post.close()
}
