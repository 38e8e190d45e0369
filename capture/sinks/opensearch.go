package sinks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/opensearch-project/opensearch-go/v4"
	"github.com/opensearch-project/opensearch-go/v4/opensearchapi"

	"github.com/log-capturer/log-capturer/capture"
)

// osPoster sends bulk bodies through the official OpenSearch client,
// opensearch-go: its bulk request (opensearchapi.BulkReq) over its
// transport (gzip, the Authorization header), without its retries. The
// answer is read here, as for Elasticsearch, so that both products share
// one reading of the per-item results.
type osPoster struct {
	api       *opensearchapi.Client
	transport *http.Transport
}

var ndjsonHeader = http.Header{"Content-Type": {"application/x-ndjson"}}

func newOSClient(c *capture.ElasticsearchConfig, eg egress) (*opensearchapi.Client, *http.Transport, error) {
	// As for Elasticsearch: the egress dialer and TLS, redirects not
	// followed.
	_, tr, err := newHTTPClient(c.TLS, 0, eg)
	if err != nil {
		return nil, nil, err
	}
	h := http.Header{}
	if c.APIKey != "" {
		h.Set("Authorization", "ApiKey "+c.APIKey)
	} else {
		authHeader(h, c.Credentials)
	}
	api, err := opensearchapi.NewClient(opensearchapi.Config{Client: opensearch.Config{
		Addresses:           []string{strings.TrimSuffix(c.URL, "/")},
		Header:              h,
		Transport:           tr,
		DisableRetry:        true, // the queued sink retries, with its backoff
		CompressRequestBody: true,
	}})
	if err != nil {
		return nil, nil, fmt.Errorf("opensearch client: %w", err)
	}
	return api, tr, nil
}

func newOSDeliverer(c *capture.ElasticsearchConfig, timeout time.Duration, eg egress) (*bulkDeliverer, error) {
	api, tr, err := newOSClient(c, eg)
	if err != nil {
		return nil, err
	}
	return newBulkDeliverer("OpenSearch", c, timeout, &osPoster{api: api, transport: tr}), nil
}

func (p *osPoster) post(ctx context.Context, body []byte) (*bulkAnswer, error) {
	req, err := opensearchapi.BulkReq{Body: bytes.NewReader(body), Header: ndjsonHeader.Clone()}.GetRequest(http.MethodPost)
	if err != nil {
		return nil, fmt.Errorf("bulk request: %w", err)
	}
	res, err := p.api.Client.Stream(req.WithContext(ctx))
	if res != nil {
		defer res.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("bulk request: %w", err)
	}
	return readBulkAnswer(res.StatusCode, res.Header, res.Body)
}

func (p *osPoster) close() error {
	err := p.api.Close()
	p.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("closing the opensearch client: %w", err)
	}
	return nil
}

// errNotOpenSearch is a probe's answer from a cluster that says it is
// another product.
var errNotOpenSearch = errors.New("the server is not OpenSearch")

// probeOS asks the cluster who it is (GET /) and refuses one that says it
// is Elasticsearch: its bulk API would take the documents, but its own
// sink type is the one tested against it. OpenSearch 1.x in compatibility
// mode answers without a distribution, and passes.
func probeOS(ctx context.Context, c *capture.ElasticsearchConfig, eg egress) error {
	api, tr, err := newOSClient(c, eg)
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	defer api.Close()
	info, err := api.Info(ctx, nil)
	if err != nil {
		return fmt.Errorf("probing OpenSearch: GET /: %w", err)
	}
	res := info.Inspect().Response
	switch d := info.Version.Distribution; {
	case res != nil && res.Header.Get("X-Elastic-Product") != "":
		return fmt.Errorf("probing OpenSearch: %w: it answers as %s %s (use an elasticsearch sink)", errNotOpenSearch, res.Header.Get("X-Elastic-Product"), info.Version.Number)
	case d != "" && d != "opensearch":
		return fmt.Errorf("probing OpenSearch: %w: its distribution is %q", errNotOpenSearch, d)
	}
	return nil
}
