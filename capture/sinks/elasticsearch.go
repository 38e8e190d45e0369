package sinks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/log-capturer/log-capturer/capture"
)

// esPoster sends bulk bodies through the official Elasticsearch client.
type esPoster struct {
	client    *elasticsearch.Client
	transport *http.Transport
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

func newESDeliverer(c *capture.ElasticsearchConfig, timeout time.Duration, eg egress) (*bulkDeliverer, error) {
	client, tr, err := newESClient(c, eg)
	if err != nil {
		return nil, err
	}
	return newBulkDeliverer("Elasticsearch", c, timeout, &esPoster{client: client, transport: tr}), nil
}

func (p *esPoster) post(ctx context.Context, body []byte) (*bulkAnswer, error) {
	res, err := p.client.Bulk(bytes.NewReader(body), p.client.Bulk.WithContext(ctx))
	if err != nil {
		if strings.Contains(err.Error(), "server is not Elasticsearch") {
			// The client's product check (no X-Elastic-Product header on a
			// 2xx, e.g. OpenSearch): the server may have stored the batch,
			// and sending it again would store it again, without end.
			return nil, &sendError{code: "not Elasticsearch", message: "the server answered without the X-Elastic-Product header (for OpenSearch, use an openSearch sink); the batch may have been stored"}
		}
		return nil, fmt.Errorf("bulk request: %w", err)
	}
	defer res.Body.Close()
	return readBulkAnswer(res.StatusCode, res.Header, res.Body)
}

func (p *esPoster) close() error {
	p.transport.CloseIdleConnections()
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
