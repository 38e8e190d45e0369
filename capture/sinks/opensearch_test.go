package sinks_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

func TestOpenSearchDeliversEveryLineOnceAsECSDocuments(t *testing.T) {
	rcv := deliversEveryLineOnceAsECSDocuments(t, opensearch)
	if u, p, ok := (&http.Request{Header: http.Header{"Authorization": {rcv.auth[0]}}}).BasicAuth(); !ok || u != "logs" || p != "s3cret" {
		t.Fatalf("Authorization %q", rcv.auth[0])
	}
	t.Run("with an API key", func(t *testing.T) {
		e := newEnv(t)
		rcv, srv := newOpenSearchReceiver(t)
		c := osConfig(srv.URL)
		c.OpenSearch.Credentials.Username, c.OpenSearch.Credentials.Password, c.OpenSearch.APIKey = "", "", "os_test-token"
		s := e.start(t, c)
		write(t, s, records(10))
		s.stop(t)
		if len(rcv.stored()) != 10 || rcv.auth[0] != "ApiKey os_test-token" {
			t.Fatalf("%d stored, Authorization %q", len(rcv.stored()), rcv.auth[0])
		}
	})
}

func TestOpenSearchRetriesTheRetriableItemsOnly(t *testing.T) {
	retriesTheRetriableItemsOnly(t, opensearch)
}

func TestOpenSearchRequestFailures(t *testing.T) {
	requestFailures(t, opensearch)
	t.Run("the probe refuses Elasticsearch", func(t *testing.T) {
		_, srv := newBulkReceiver(t)
		err := newEnv(t).factory.Probe(context.Background(), osConfig(srv.URL))
		if err == nil || !strings.Contains(err.Error(), "not OpenSearch") || !strings.Contains(err.Error(), "use an elasticsearch sink") {
			t.Fatalf("probe against Elasticsearch: %v", err)
		}
	})
}
