package sinks_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
)

// esDoc is one document the bulk receiver stored.
type esDoc struct {
	Index      string
	Timestamp  string `json:"@timestamp"`
	Message    string `json:"message"`
	Kubernetes struct {
		Namespace string
		Pod       struct{ Name string }
		Container struct{ Name string }
		Node      struct{ Name string }
		Labels    map[string]string
	}
}

// bulkReceiver is a strict bulk API of Elasticsearch or, with opensearch
// set, OpenSearch: POST /_bulk with NDJSON (gzip or not), each action a
// create with an _index, each document JSON with @timestamp; it answers
// every item by a schedule (item status for the n-th attempt of a message)
// and keeps the items it stored. GET / answers as the product does:
// Elasticsearch with the product header its client checks, OpenSearch with
// "distribution":"opensearch" and no such header.
type bulkReceiver struct {
	opensearch bool
	mu         sync.Mutex
	docs       []esDoc
	attempts   map[string]int
	problems   []string
	requests   int
	auth       []string
	// item returns the status of a message's attempt (1, 2, ...); 0 stores it.
	item func(message string, attempt int) int
	// request, when it returns a status, answers the whole request so; -1
	// hangs until the client gives up.
	request func(n int) int
	// retryAfter is sent with a whole request's 429 or 503.
	retryAfter string
	hang       chan struct{}
}

func newBulkReceiver(t *testing.T) (*bulkReceiver, *httptest.Server) {
	t.Helper()
	return startBulkReceiver(t, &bulkReceiver{})
}

// newOpenSearchReceiver is the receiver answering as OpenSearch.
func newOpenSearchReceiver(t *testing.T) (*bulkReceiver, *httptest.Server) {
	t.Helper()
	return startBulkReceiver(t, &bulkReceiver{opensearch: true})
}

func startBulkReceiver(t *testing.T, b *bulkReceiver) (*bulkReceiver, *httptest.Server) {
	t.Helper()
	b.attempts, b.hang = map[string]int{}, make(chan struct{})
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(b.hang) })
	return b, srv
}

func (b *bulkReceiver) problem(format string, args ...any) {
	b.problems = append(b.problems, fmt.Sprintf(format, args...))
}

func (b *bulkReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !b.opensearch {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
	}
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodGet && r.URL.Path == "/" {
		if b.opensearch {
			_, _ = io.WriteString(w, `{"name":"bulk","cluster_name":"test","cluster_uuid":"x","version":{"distribution":"opensearch","number":"3.7.0",`+
				`"build_type":"tar","lucene_version":"10.3.1"},"tagline":"The OpenSearch Project: https://opensearch.org/"}`)
			return
		}
		_, _ = io.WriteString(w, `{"name":"bulk","cluster_name":"test","version":{"number":"8.19.7"},"tagline":"You Know, for Search"}`)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests++
	b.auth = append(b.auth, r.Header.Get("Authorization"))
	if r.Method != http.MethodPost || r.URL.Path != "/_bulk" {
		b.problem("%s %s", r.Method, r.URL.Path)
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if b.request != nil {
		if st := b.request(b.requests); st == -1 {
			b.mu.Unlock()
			select {
			case <-r.Context().Done():
			case <-b.hang:
			}
			b.mu.Lock()
			return
		} else if st != 0 {
			if b.retryAfter != "" {
				w.Header().Set("Retry-After", b.retryAfter)
			}
			w.WriteHeader(st)
			_, _ = fmt.Fprintf(w, `{"error":{"type":"test","reason":"answered %d"},"status":%d}`, st, st)
			return
		}
	}
	// Elasticsearch takes bulk bodies as application/x-ndjson or
	// application/json (what its client sends), and their vendor forms;
	// the OpenSearch sink says x-ndjson, as OpenSearch documents.
	ct := r.Header.Get("Content-Type")
	switch {
	case b.opensearch && !strings.HasPrefix(ct, "application/x-ndjson"):
		b.problem("Content-Type %q", ct)
	case !b.opensearch && !strings.HasPrefix(ct, "application/x-ndjson") && !strings.HasPrefix(ct, "application/json") &&
		!strings.HasPrefix(ct, "application/vnd.elasticsearch+"):
		b.problem("Content-Type %q", ct)
	}
	body := io.Reader(r.Body)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			b.problem("gzip: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 64<<20)
	var items []string
	for sc.Scan() {
		var action map[string]struct {
			Index string `json:"_index"`
		}
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil || len(action) != 1 {
			b.problem("action %q", sc.Text())
			http.Error(w, "bad action", http.StatusBadRequest)
			return
		}
		create, ok := action["create"]
		if !ok || create.Index == "" {
			b.problem("action %q is not a create with an _index", sc.Text())
		}
		if !sc.Scan() {
			b.problem("an action without a document")
			http.Error(w, "truncated", http.StatusBadRequest)
			return
		}
		var doc esDoc
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil || doc.Timestamp == "" {
			b.problem("document %q: %v", sc.Text(), err)
		}
		doc.Index = create.Index
		key := doc.Kubernetes.Pod.Name + " " + doc.Message
		b.attempts[key]++
		status := 0
		if b.item != nil {
			status = b.item(doc.Message, b.attempts[key])
		}
		switch status {
		case 0:
			b.docs = append(b.docs, doc)
			items = append(items, `{"create":{"_index":"`+doc.Index+`","status":201,"result":"created"}}`)
		default:
			items = append(items, fmt.Sprintf(`{"create":{"_index":%q,"status":%d,"error":{"type":"test_%d","reason":"scheduled %d"}}}`, doc.Index, status, status, status))
		}
	}
	if err := sc.Err(); err != nil {
		b.problem("reading the body: %v", err)
	}
	errors := false
	for _, it := range items {
		if !strings.Contains(it, `"status":201`) {
			errors = true
		}
	}
	_, _ = fmt.Fprintf(w, `{"took":1,"errors":%v,"items":[%s]}`, errors, strings.Join(items, ","))
}

func (b *bulkReceiver) stored() []esDoc {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]esDoc(nil), b.docs...)
}

func esConfig(url string) capture.SinkConfig {
	c := sinkConfig("es")
	c.Kind = capture.SinkElasticsearch
	c.Elasticsearch = &capture.ElasticsearchConfig{URL: url, Index: "logs-{namespace}-{date}", DataStream: true,
		APIKey: "a2V5OnNlY3JldA=="}
	return c
}

func osConfig(url string) capture.SinkConfig {
	c := sinkConfig("opensearch")
	c.Kind = capture.SinkOpenSearch
	c.OpenSearch = &capture.ElasticsearchConfig{URL: url, Index: "logs-{namespace}-{date}", DataStream: true,
		Credentials: capture.Credentials{Username: "logs", Password: "s3cret"}}
	return c
}

// bulkProduct is what the bulk tests need of Elasticsearch or OpenSearch.
type bulkProduct struct {
	name     string
	receiver func(*testing.T) (*bulkReceiver, *httptest.Server)
	config   func(url string) capture.SinkConfig
	// bulk is the config's part that both products share.
	bulk func(*capture.SinkConfig) *capture.ElasticsearchConfig
}

var (
	elasticsearch = bulkProduct{name: "Elasticsearch", receiver: newBulkReceiver, config: esConfig,
		bulk: func(c *capture.SinkConfig) *capture.ElasticsearchConfig { return c.Elasticsearch }}
	opensearch = bulkProduct{name: "OpenSearch", receiver: newOpenSearchReceiver, config: osConfig,
		bulk: func(c *capture.SinkConfig) *capture.ElasticsearchConfig { return c.OpenSearch }}
)

// seqOf is the number of a line of records(): "web-1 seq=12" is 12.
func seqOf(line string) int {
	var pod string
	var n int
	_, _ = fmt.Sscanf(line, "%s seq=%d", &pod, &n)
	return n
}

// deliversEveryLineOnceAsECSDocuments writes 3000 lines to a strict
// receiver and checks each stored once as the document it should be, and
// the probe.
func deliversEveryLineOnceAsECSDocuments(t *testing.T, p bulkProduct) *bulkReceiver {
	t.Helper()
	e := newEnv(t)
	rcv, srv := p.receiver(t)
	s := e.start(t, p.config(srv.URL))
	recs := records(3000)
	write(t, s, recs)
	s.stop(t)
	if len(rcv.problems) > 0 {
		t.Fatalf("protocol problems: %v", rcv.problems)
	}
	docs := rcv.stored()
	seen := map[string]int{}
	for _, d := range docs {
		seen[d.Kubernetes.Pod.Name+" "+d.Message]++
	}
	for _, r := range recs {
		if seen[r.Pod+" "+r.Line] != 1 {
			t.Fatalf("%q arrived %d times", r.Line, seen[r.Pod+" "+r.Line])
		}
	}
	d := docs[0]
	if d.Index != "logs-shop-2026.11.27" || d.Kubernetes.Namespace != "shop" || d.Kubernetes.Container.Name != "main" ||
		d.Kubernetes.Node.Name != "node-1" || d.Kubernetes.Labels["app_kubernetes_io/name"] != "shop" || d.Timestamp != recs[0].Time.Format(time.RFC3339Nano) {
		t.Fatalf("document %+v", d)
	}
	if err := e.factory.Probe(context.Background(), p.config(srv.URL)); err != nil {
		t.Fatalf("probe: %v", err)
	}
	return rcv
}

func TestElasticsearchDeliversEveryLineOnceAsECSDocuments(t *testing.T) {
	rcv := deliversEveryLineOnceAsECSDocuments(t, elasticsearch)
	if scheme, key, _ := strings.Cut(rcv.auth[0], " "); !strings.EqualFold(scheme, "ApiKey") || key != "a2V5OnNlY3JldA==" {
		t.Fatalf("Authorization %q", rcv.auth[0])
	}
}

// retriesTheRetriableItemsOnly: on a schedule, some items are answered
// 429 (twice) or 503, others 400; a whole request is answered 503 once.
// Every retriable line arrives once, the 400 ones are counted as rejected,
// nothing else is lost or sent twice.
func retriesTheRetriableItemsOnly(t *testing.T, p bulkProduct) {
	t.Helper()
	e := newEnv(t)
	rcv, srv := p.receiver(t)
	rcv.item = func(msg string, attempt int) int {
		n := seqOf(msg)
		switch {
		case n%10 == 3:
			return 400
		case n%7 == 0 && attempt <= 2:
			return 429
		case n%11 == 5 && attempt == 1:
			return 503
		}
		return 0
	}
	rcv.request = func(n int) int {
		if n == 2 {
			return 503
		}
		return 0
	}
	c := p.config(srv.URL)
	c.BatchMaxBytes = 16 << 10
	s := e.start(t, c)
	recs := records(3000)
	acked := acks(recs)
	write(t, s, recs)
	eventually(t, "every line acknowledged", func() bool { return acked() == len(recs) })
	s.stop(t)
	if len(rcv.problems) > 0 {
		t.Fatalf("protocol problems: %v", rcv.problems)
	}
	seen := map[string]int{}
	for _, d := range rcv.stored() {
		seen[d.Kubernetes.Pod.Name+" "+d.Message]++
	}
	wantRejected := 0
	for _, r := range recs {
		want := 1
		if seqOf(r.Line)%10 == 3 {
			want, wantRejected = 0, wantRejected+1
		}
		if seen[r.Pod+" "+r.Line] != want {
			t.Fatalf("%q stored %d times, want %d", r.Line, seen[r.Pod+" "+r.Line], want)
		}
	}
	st := s.Sink.(capture.StatsReporter).Stats()
	if st.RejectedLines != int64(wantRejected) || st.SentLines != int64(len(recs)-wantRejected) || st.Retries == 0 ||
		!strings.Contains(st.LastRejection, "test_400") {
		t.Fatalf("want %d rejected; stats %+v", wantRejected, st)
	}
	if dups := sum(t, e.reg, "log_capturer_sink_possible_duplicate_lines_total"); dups != 0 {
		t.Fatalf("%v possible duplicates counted for answered items", dups)
	}
	t.Logf("%s: %d lines, %d rejected (400), %d requests, %d retries, %d failed sends", p.name, len(recs), st.RejectedLines,
		rcv.requests, st.Retries, st.FailedBatches)
}

func TestElasticsearchRetriesTheRetriableItemsOnly(t *testing.T) {
	retriesTheRetriableItemsOnly(t, elasticsearch)
}

// requestFailures: whole requests answered 400, 500, 429 with
// Retry-After, or never; an index too long once filled in; the egress
// rules.
func requestFailures(t *testing.T, p bulkProduct) {
	t.Helper()
	t.Run("400 rejects the batch", func(t *testing.T) {
		e := newEnv(t)
		rcv, srv := p.receiver(t)
		rcv.request = func(n int) int {
			if n == 1 {
				return 400
			}
			return 0
		}
		s := e.start(t, p.config(srv.URL))
		write(t, s, records(30))
		eventually(t, "the rejection", func() bool { return s.Sink.(capture.StatsReporter).Stats().RejectedLines == 30 })
		write(t, s, records(60)[30:])
		s.stop(t)
		if n := len(rcv.stored()); n != 30 {
			t.Fatalf("%d stored after a rejected batch, want 30", n)
		}
	})
	t.Run("500s and a 429 with Retry-After are retried, nothing doubled", func(t *testing.T) {
		e := newEnv(t)
		rcv, srv := p.receiver(t)
		rcv.retryAfter = "0"
		rcv.request = func(n int) int {
			switch n {
			case 1, 2:
				return 500
			case 3:
				return 429
			}
			return 0
		}
		s := e.start(t, p.config(srv.URL))
		recs := records(300)
		write(t, s, recs)
		s.stop(t)
		st := s.Sink.(capture.StatsReporter).Stats()
		if n := len(rcv.stored()); n != 300 || st.Retries < 3 || st.SentLines != 300 || st.DroppedLines != 0 ||
			sum(t, e.reg, "log_capturer_sink_possible_duplicate_lines_total") != 0 {
			t.Fatalf("%d stored; stats %+v", n, st)
		}
	})
	t.Run("a hang is retried and counted as possible duplicates", func(t *testing.T) {
		e := newEnv(t)
		rcv, srv := p.receiver(t)
		rcv.request = func(n int) int {
			if n == 1 {
				return -1
			}
			return 0
		}
		s := e.start(t, p.config(srv.URL))
		write(t, s, records(30))
		s.stop(t)
		if n := len(rcv.stored()); n != 30 || sum(t, e.reg, "log_capturer_sink_possible_duplicate_lines_total") != 30 {
			t.Fatalf("%d stored", n)
		}
	})
	t.Run("an index too long once filled in rejects its lines", func(t *testing.T) {
		e := newEnv(t)
		rcv, srv := p.receiver(t)
		c := p.config(srv.URL)
		p.bulk(&c).Index = strings.Repeat("i", 200) + "-{namespace}"
		s := e.start(t, c)
		recs := records(10)
		recs[0].Namespace = strings.Repeat("n", 63)
		write(t, s, recs)
		s.stop(t)
		if st := s.Sink.(capture.StatsReporter).Stats(); st.RejectedLines != 1 || len(rcv.stored()) != 9 || !strings.Contains(st.LastRejection, p.name+"'s 255") {
			t.Fatalf("stats %+v, stored %d", st, len(rcv.stored()))
		}
	})
	t.Run("egress", func(t *testing.T) {
		_, srv := p.receiver(t)
		f := sinks.NewFactory(sinks.Options{RequestTimeout: time.Second})
		if err := f.Probe(context.Background(), p.config(srv.URL)); err == nil || !strings.Contains(err.Error(), "destination not allowed") {
			t.Fatalf("probe through the egress rules: %v", err)
		}
		s, err := f.New("ns/p", p.config(srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go s.Run(ctx)
		write(t, s, records(3))
		eventually(t, "a refused send", func() bool {
			return strings.Contains(s.(capture.StatsReporter).Stats().LastError, "destination not allowed")
		})
		cancel()
		closeCtx, done := context.WithTimeout(context.Background(), time.Second)
		defer done()
		_ = s.Close(closeCtx)
	})
}

func TestElasticsearchRequestFailures(t *testing.T) {
	requestFailures(t, elasticsearch)
	t.Run("a server that is not Elasticsearch is refused, not retried", func(t *testing.T) {
		e := newEnv(t)
		var requests atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, `{"errors":false,"items":[]}`)
		}))
		defer srv.Close()
		s := e.start(t, esConfig(srv.URL))
		write(t, s, records(10))
		eventually(t, "the rejection", func() bool { return s.Sink.(capture.StatsReporter).Stats().RejectedLines == 10 })
		s.stop(t)
		if st := s.Sink.(capture.StatsReporter).Stats(); requests.Load() != 1 || !strings.Contains(st.LastRejection, "X-Elastic-Product") {
			t.Fatalf("%d requests; stats %+v", requests.Load(), st)
		}
	})
	t.Run("the probe refuses OpenSearch", func(t *testing.T) {
		_, srv := newOpenSearchReceiver(t)
		if err := newEnv(t).factory.Probe(context.Background(), esConfig(srv.URL)); err == nil {
			t.Fatal("an Elasticsearch probe passed against OpenSearch")
		}
	})
}
