package sinks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/sinks"
)

// newKafka runs a kfake cluster of n brokers on loopback with the topic
// logs-shop of 6 partitions, until the test ends.
func newKafka(t *testing.T, n int, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(n), kfake.SeedTopics(6, "logs-shop")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func kafkaConfig(brokers []string) capture.SinkConfig {
	c := sinkConfig("kafka")
	c.Kind = capture.SinkKafka
	c.Kafka = &capture.KafkaConfig{Brokers: brokers, Topic: "logs-{namespace}", Key: "Container", Compression: "Zstd"}
	return c
}

// kafkaEnv is an env whose sends may take long enough for franz-go to ride
// out a leader change within one attempt.
func kafkaEnv(t *testing.T) *env {
	t.Helper()
	return kafkaEnvTimeout(t, 10*time.Second)
}

// kafkaEnvTimeout is kafkaEnv with sends given timeout each.
func kafkaEnvTimeout(t *testing.T, timeout time.Duration) *env {
	t.Helper()
	e := &env{reg: prometheus.NewRegistry(), root: t.TempDir(), stdout: &bytes.Buffer{}}
	e.factory = sinks.NewFactory(sinks.Options{AllowLoopbackEgress: true, RequestTimeout: timeout,
		OnReject: func(_, sink, msg string) {
			e.mu.Lock()
			e.rejected = append(e.rejected, sink+": "+msg)
			e.mu.Unlock()
		}})
	e.reg.MustRegister(e.factory)
	return e
}

// kafkaMessage is one consumed message.
type kafkaMessage struct {
	key, topic string
	partition  int32
	value      struct{ TS, Namespace, Pod, Container, Node, Line string }
	timestamp  time.Time
}

// consume reads topic from the start until want messages arrived (then a
// little longer, to see extra ones) or 20 s passed.
func consume(t *testing.T, brokers []string, topic string, want int) []kafkaMessage {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []kafkaMessage
	deadline := time.Now().Add(20 * time.Second)
	extra := time.Time{}
	for time.Now().Before(deadline) && (extra.IsZero() || time.Now().Before(extra)) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			m := kafkaMessage{key: string(r.Key), topic: r.Topic, partition: r.Partition, timestamp: r.Timestamp}
			if err := json.Unmarshal(r.Value, &m.value); err != nil {
				t.Errorf("message %q is not the JSON record: %v", r.Value, err)
			}
			out = append(out, m)
		})
		if len(out) >= want && extra.IsZero() {
			extra = time.Now().Add(500 * time.Millisecond)
		}
	}
	return out
}

// kafkaExactlyOnce checks every line of recs arrived once, in order per
// container, keyed by the container and in one partition each.
func kafkaExactlyOnce(t *testing.T, recs []*capture.Record, got []kafkaMessage) {
	t.Helper()
	want := map[string][]string{}
	for _, r := range recs {
		k := r.Namespace + "/" + r.Pod + "/" + r.Container
		want[k] = append(want[k], r.Line)
	}
	have := map[string][]string{}
	partition := map[string]int32{}
	for _, m := range got {
		if p, ok := partition[m.key]; ok && p != m.partition {
			t.Fatalf("key %s in partitions %d and %d", m.key, p, m.partition)
		}
		partition[m.key] = m.partition
		if k := m.value.Namespace + "/" + m.value.Pod + "/" + m.value.Container; k != m.key {
			t.Fatalf("message of %s keyed %s", k, m.key)
		}
		have[m.key] = append(have[m.key], m.value.Line)
	}
	if len(got) != len(recs) {
		t.Fatalf("%d messages for %d lines", len(got), len(recs))
	}
	for k, lines := range want {
		if fmt.Sprint(have[k]) != fmt.Sprint(lines) {
			t.Fatalf("%s: got %d lines, want %d exactly once in order", k, len(have[k]), len(lines))
		}
	}
}

func TestKafkaDeliversEveryLineOnceInOrderPerContainer(t *testing.T) {
	for _, codec := range []string{"Zstd", "Snappy", "Gzip", "LZ4", "None"} {
		t.Run(codec, func(t *testing.T) {
			kc := newKafka(t, 3)
			e := kafkaEnv(t)
			c := kafkaConfig(kc.ListenAddrs())
			c.Kafka.Compression = codec
			s := e.start(t, c)
			recs := records(3000)
			acked := acks(recs)
			write(t, s, recs)
			eventually(t, "every line acknowledged", func() bool { return acked() == len(recs) })
			s.stop(t)
			got := consume(t, kc.ListenAddrs(), "logs-shop", len(recs))
			kafkaExactlyOnce(t, recs, got)
			for _, m := range got {
				if m.value.Line == recs[0].Line && m.value.Pod == recs[0].Pod {
					if m.value.TS != recs[0].Time.Format(time.RFC3339Nano) || !m.timestamp.Equal(recs[0].Time) || m.value.Node != "node-1" {
						t.Fatalf("message %+v, want the record of %v", m, recs[0].Time)
					}
				}
			}
			if n := sum(t, e.reg, "log_capturer_sink_sent_lines_total"); n != 3000 {
				t.Fatalf("sent lines metric %v", n)
			}
		})
	}
}

// TestKafkaBrokerFailureAndLeaderChangesMidRun moves every partition's
// leader twice, holds a random election and removes the broker that leads
// partition 0 while lines flow: franz-go follows the
// leaders with its idempotent producer, and every line arrives once, in
// order per container, with no send counted as a possible duplicate.
func TestKafkaBrokerFailureAndLeaderChangesMidRun(t *testing.T) {
	kc := newKafka(t, 3)
	brokers := kc.ListenAddrs()
	e := kafkaEnv(t)
	c := kafkaConfig(brokers)
	c.BatchMaxBytes = 4 << 10 // many small batches, so that the faults land mid-run
	// Which brokers each partition's produce requests went to: the
	// producer must follow the leaders as they move.
	var mu sync.Mutex
	nodes := map[int32]map[int32]bool{}
	kc.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		for _, rt := range kreq.(*kmsg.ProduceRequest).Topics {
			for _, rp := range rt.Partitions {
				if nodes[rp.Partition] == nil {
					nodes[rp.Partition] = map[int32]bool{}
				}
				nodes[rp.Partition][kc.CurrentNode()] = true
			}
		}
		return nil, nil, false
	})
	s := e.start(t, c)
	recs := records(9000)
	sent := func() int64 { return s.Sink.(capture.StatsReporter).Stats().SentLines }
	gone := int32(-1)
	for i := range 9 {
		write(t, s, recs[i*1000:(i+1)*1000])
		// Each fault while the sink is sending what was just written.
		eventually(t, "lines on their way", func() bool { return sent() >= int64(i*1000+200) })
		switch i {
		case 2, 5:
			// Every partition's leader moves to another live broker.
			for p := range int32(6) {
				leader := kc.LeaderFor("logs-shop", p)
				for _, n := range []int32{(leader + 1) % 3, (leader + 2) % 3} {
					if n != gone {
						if err := kc.MoveTopicPartition("logs-shop", p, n); err != nil {
							t.Fatal(err)
						}
						break
					}
				}
			}
		case 3:
			kc.ShufflePartitionLeaders()
		case 4:
			// The broker that leads partition 0 goes away; the partitions
			// it led move to the others.
			gone = kc.LeaderFor("logs-shop", 0)
			if err := kc.RemoveNode(gone); err != nil {
				t.Fatal(err)
			}
			if kc.LeaderFor("logs-shop", 0) == gone {
				t.Fatal("partition 0 kept its removed leader")
			}
		}
	}
	s.stop(t)
	got := consume(t, kc.ListenAddrs(), "logs-shop", len(recs))
	kafkaExactlyOnce(t, recs, got)
	mu.Lock()
	moved := 0
	for _, n := range nodes {
		if len(n) > 1 {
			moved++
		}
	}
	if len(nodes) == 0 || moved != len(nodes) {
		t.Fatalf("produce requests per partition went to brokers %v: the producer did not follow the leaders", nodes)
	}
	mu.Unlock()
	st := s.Sink.(capture.StatsReporter).Stats()
	if dups := sum(t, e.reg, "log_capturer_sink_possible_duplicate_lines_total"); dups != 0 || st.DroppedLines != 0 || st.SentLines != 9000 {
		t.Fatalf("possible duplicates %v, stats %+v", dups, st)
	}
	t.Logf("kafka: 9000 lines while every leader moved twice, an election and a removed broker: %d failed sends, %d retries", st.FailedBatches, st.Retries)
}

// TestKafkaRejectedRecordsAreCountedAndTheRestDelivered: a message the
// broker refuses as too large (MESSAGE_TOO_LARGE: here maxMessageBytes is
// set above the broker's default 1048588, so the sink does not cut the
// line, and nothing is compressed, so the broker sees it whole) and lines whose topic is too long once filled in are counted as
// rejected and acknowledged; every other line arrives once.
func TestKafkaRejectedRecordsAreCountedAndTheRestDelivered(t *testing.T) {
	kc := newKafka(t, 1, kfake.SeedTopics(6, "logs-web-0", "logs-web-1", "logs-web-2", "logs-big"))
	e := kafkaEnv(t)
	c := kafkaConfig(kc.ListenAddrs())
	c.Kafka.Topic = "logs-{pod}"
	c.Kafka.MaxMessageBytes, c.Kafka.Compression = 4<<20, "None"
	c.BatchMaxBytes, c.BufferMaxBytes = 4<<20, 16<<20
	s := e.start(t, c)
	recs := records(300)
	long := strings.Repeat("p", 250)
	for _, r := range recs[:3] {
		r.Pod = long // logs-ppp… is over 249 characters
	}
	// Alone in its topic, so that the batch the broker refuses holds it only.
	recs[100].Pod, recs[100].Line = "big", strings.Repeat("x", 1_100_000)
	acked := acks(recs)
	write(t, s, recs)
	eventually(t, "every line acknowledged", func() bool { return acked() == len(recs) })
	s.stop(t)
	st := s.Sink.(capture.StatsReporter).Stats()
	if st.RejectedLines != 4 || st.SentLines != 296 || st.Retries != 0 || !strings.Contains(st.LastRejection, "rejected") ||
		sum(t, e.reg, "log_capturer_sink_truncated_lines_total") != 0 {
		t.Fatalf("stats %+v", st)
	}
	var delivered []*capture.Record
	for i, r := range recs {
		if r.Pod != long && i != 100 {
			delivered = append(delivered, r)
		}
	}
	var got []kafkaMessage
	for _, topic := range []string{"logs-web-0", "logs-web-1", "logs-web-2"} {
		got = append(got, consume(t, kc.ListenAddrs(), topic, 98)...)
	}
	kafkaExactlyOnce(t, delivered, got)
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.rejected) == 0 {
		t.Fatal("no rejection reported")
	}
}

// TestKafkaCutsALineOverMaxMessageBytes: a line of the pipeline's default
// cap (1 MiB), whose JSON message is over Kafka's default 1048588 bytes,
// is cut at a character boundary and marked so that its message fits, is
// counted as truncated, and arrives; so do the lines around it. With
// compression off and the broker's limit equal to maxMessageBytes, lines
// escaped at every cost land at the limit and the broker takes them.
func TestKafkaCutsALineOverMaxMessageBytes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxMessage int64
		broker     map[string]string
		compress   string
		lines      []string
	}{
		{name: "1 MiB line, the defaults, zstd", compress: "Zstd",
			lines: []string{strings.Repeat("é\"x", 1<<18)}}, // 1 MiB of 2-byte runes and quotes (escaped to 1.25 MiB)
		{name: "64Ki on both sides, no compression", maxMessage: 64 << 10, broker: map[string]string{"message.max.bytes": "65536"}, compress: "None",
			lines: []string{strings.Repeat("a", 100_000), strings.Repeat("\x01", 100_000), strings.Repeat("\xff", 70_000),
				strings.Repeat("🎉", 30_000), strings.Repeat("ab\n", 40_000)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []kfake.Opt
			if tc.broker != nil {
				opts = append(opts, kfake.BrokerConfigs(tc.broker))
			}
			kc := newKafka(t, 1, opts...)
			e := kafkaEnv(t)
			c := kafkaConfig(kc.ListenAddrs())
			c.Kafka.MaxMessageBytes, c.Kafka.Compression = tc.maxMessage, tc.compress
			c.BatchMaxBytes, c.BufferMaxBytes = 4<<20, 32<<20
			s := e.start(t, c)
			recs := records(30)
			for i, l := range tc.lines {
				recs[3*i+1].Line = l
			}
			acked := acks(recs)
			write(t, s, recs)
			eventually(t, "every line acknowledged", func() bool { return acked() == len(recs) })
			s.stop(t)
			st := s.Sink.(capture.StatsReporter).Stats()
			if st.RejectedLines != 0 || st.SentLines != int64(len(recs)) || sum(t, e.reg, "log_capturer_sink_truncated_lines_total") != float64(len(tc.lines)) {
				t.Fatalf("truncated %v; stats %+v", sum(t, e.reg, "log_capturer_sink_truncated_lines_total"), st)
			}
			limit := int(tc.maxMessage)
			if limit == 0 {
				limit = 1048588
			}
			got := consumeValues(t, kc.ListenAddrs(), "logs-shop", len(recs), limit)
			lines := map[string]int{}
			for _, l := range got {
				lines[l]++
			}
			if len(got) != len(recs) {
				t.Fatalf("%d messages for %d lines", len(got), len(recs))
			}
			for i, r := range recs {
				if i%3 == 1 && i/3 < len(tc.lines) {
					continue
				}
				if lines[r.Line] != 1 {
					t.Fatalf("%q arrived %d times", r.Line, lines[r.Line])
				}
			}
			cut := 0
			for _, l := range got {
				if !strings.HasSuffix(l, capture.TruncatedMarker) {
					continue
				}
				cut++
				prefix := strings.TrimSuffix(l, capture.TruncatedMarker)
				found := false
				for _, orig := range tc.lines {
					// Each invalid byte arrives as U+FFFD, as every JSON sink writes it.
					if strings.HasPrefix(strings.Map(func(r rune) rune { return r }, orig), prefix) {
						found = true
					}
				}
				if !found || !utf8.ValidString(l) {
					t.Fatalf("a cut line (%d bytes) is not a prefix of a written line at a character boundary", len(l))
				}
			}
			if cut != len(tc.lines) {
				t.Fatalf("%d cut lines arrived, want %d", cut, len(tc.lines))
			}
			t.Logf("kafka %s: %d lines cut to fit messages of %d bytes, every line delivered once", tc.name, cut, limit)
		})
	}
}

// consumeValues reads want messages of topic from the start and returns
// their lines, checking that every message with its key fits in limit
// bytes as a record batch of its own, and that a cut one is no more than
// a character short of it.
func consumeValues(t *testing.T, brokers []string, topic string, want, limit int) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []string
	deadline := time.Now().Add(20 * time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			var v struct{ Line string }
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Errorf("message is not JSON: %v", err)
			}
			size := len(r.Key) + len(r.Value) + 97 // the sink's bound on a batch of one record's overhead
			if size > limit {
				t.Errorf("a message of %d bytes with a key of %d is over %d", len(r.Value), len(r.Key), limit)
			}
			if strings.HasSuffix(v.Line, capture.TruncatedMarker) && size < limit-6 {
				t.Errorf("a cut message of %d bytes with a key of %d was cut shorter than %d needs", len(r.Value), len(r.Key), limit)
			}
			out = append(out, v.Line)
		})
	}
	return out
}

// TestKafkaRetriesOnlyTheRecordsThatFailed: the topic of one pod does not
// exist yet, so franz-go fails its records (UNKNOWN_TOPIC_OR_PARTITION,
// retriable) while the others are stored. The others are acknowledged and
// never sent again; the failed ones are, until the topic exists.
func TestKafkaRetriesOnlyTheRecordsThatFailed(t *testing.T) {
	kc := newKafka(t, 1, kfake.SeedTopics(3, "logs-web-0", "logs-web-2"))
	e := kafkaEnv(t)
	c := kafkaConfig(kc.ListenAddrs())
	c.Kafka.Topic = "logs-{pod}"
	c.BatchMaxBytes = 1 << 20
	c.MinBackoff, c.MaxBackoff = 100*time.Millisecond, 200*time.Millisecond
	s := e.start(t, c)
	recs := records(300)
	acked := acks(recs)
	write(t, s, recs)
	eventually(t, "the lines of the existing topics acknowledged", func() bool { return acked() == 200 })
	// franz-go gives the missing topic's records up after its own
	// retries; on a loaded machine a send's 10 s can end first ("not
	// stored within 10s"), and the next send reports the broker's reason.
	var st capture.SinkStats
	deadline := time.Now().Add(90 * time.Second)
	for {
		st = s.Sink.(capture.StatsReporter).Stats()
		if strings.Contains(st.LastError, "UNKNOWN_TOPIC_OR_PARTITION") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.SentLines != 200 || st.FailedBatches == 0 || !strings.Contains(st.LastError, "UNKNOWN_TOPIC_OR_PARTITION") {
		t.Fatalf("before the topic exists: stats %+v", st)
	}
	createTopic(t, kc.ListenAddrs(), "logs-web-1", 3)
	eventually(t, "every line acknowledged", func() bool { return acked() == 300 })
	s.stop(t)
	var got []kafkaMessage
	for _, topic := range []string{"logs-web-0", "logs-web-1", "logs-web-2"} {
		got = append(got, consume(t, kc.ListenAddrs(), topic, 100)...)
	}
	kafkaExactlyOnce(t, recs, got)
	if st := s.Sink.(capture.StatsReporter).Stats(); st.SentLines != 300 || st.Retries == 0 || st.DroppedLines != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestKafkaSaysHowLongASendHad: the pipeline's topic does not exist yet and
// each send has 1s, less than franz-go's own retries for a missing topic
// take (about 3s): the sink's error says the records were not stored
// within 1s, and once the topic exists every line arrives once.
func TestKafkaSaysHowLongASendHad(t *testing.T) {
	kc := newKafka(t, 1)
	e := kafkaEnvTimeout(t, time.Second)
	c := kafkaConfig(kc.ListenAddrs())
	c.Kafka.Topic = "logs-late"
	c.MinBackoff, c.MaxBackoff = 100*time.Millisecond, 200*time.Millisecond
	s := e.start(t, c)
	recs := records(500)
	acked := acks(recs)
	write(t, s, recs)
	const want = "500 records failed, to be sent again: not stored within 1s: context deadline exceeded"
	eventually(t, "a send given up at its deadline", func() bool {
		return strings.Contains(s.Sink.(capture.StatsReporter).Stats().LastError, want)
	})
	if n := acked(); n != 0 {
		t.Fatalf("%d lines acknowledged before their topic existed", n)
	}
	createTopic(t, kc.ListenAddrs(), "logs-late", 3)
	eventually(t, "every line acknowledged", func() bool { return acked() == len(recs) })
	s.stop(t)
	kafkaExactlyOnce(t, recs, consume(t, kc.ListenAddrs(), "logs-late", len(recs)))
}

// createTopic creates topic with partitions on the cluster of brokers.
func createTopic(t *testing.T, brokers []string, topic string, partitions int32) {
	t.Helper()
	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, partitions, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range resp.Topics {
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			t.Fatalf("creating topic %s: %v", rt.Topic, err)
		}
	}
}

func TestKafkaSASLOverTLS(t *testing.T) {
	pki := newPKI(t)
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			kc := newKafka(t, 1, kfake.EnableSASL(), kfake.Superuser(mech, "shipper", "s3cret"), kfake.TLS(pki.serverTLS(false)))
			e := kafkaEnv(t)
			bad := kafkaConfig(kc.ListenAddrs())
			bad.Name = "bad"
			bad.Kafka.SASLMechanism, bad.Kafka.Credentials = mech, capture.Credentials{Username: "shipper", Password: "wrong"}
			bad.Kafka.TLS = &capture.TLSConfig{CAPEM: pki.caPEM}
			sb := e.start(t, bad)
			write(t, sb, records(10))
			eventually(t, "a refused login", func() bool { return sb.Sink.(capture.StatsReporter).Stats().FailedBatches > 0 })
			sb.cancel()
			sb.stop(t)

			good := kafkaConfig(kc.ListenAddrs())
			good.Kafka.SASLMechanism, good.Kafka.Credentials = mech, capture.Credentials{Username: "shipper", Password: "s3cret"}
			good.Kafka.TLS = &capture.TLSConfig{CAPEM: pki.caPEM}
			s := e.start(t, good)
			recs := records(300)
			write(t, s, recs)
			s.stop(t)
			if st := s.Sink.(capture.StatsReporter).Stats(); st.SentLines != 300 {
				t.Fatalf("stats %+v", st)
			}
			if err := e.factory.Probe(context.Background(), good); err != nil {
				t.Fatalf("probe: %v", err)
			}
		})
	}
}

func TestKafkaProbeAndEgress(t *testing.T) {
	kc := newKafka(t, 1)
	e := kafkaEnv(t)
	if err := e.factory.Probe(context.Background(), kafkaConfig(kc.ListenAddrs())); err != nil {
		t.Fatalf("probe of a live cluster: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if err := e.factory.Probe(context.Background(), kafkaConfig([]string{addr})); err == nil {
		t.Fatal("probe of a closed port passed")
	}
	// Without --allow-loopback-egress, the brokers on loopback are refused
	// at dial time, by the producer and the probe.
	f := sinks.NewFactory(sinks.Options{RequestTimeout: time.Second})
	c := kafkaConfig(kc.ListenAddrs())
	if err := f.Probe(context.Background(), c); err == nil || !strings.Contains(err.Error(), "destination not allowed") {
		t.Fatalf("probe through the egress rules: %v", err)
	}
	s := startIn(t, f, "ns/p", c)
	write(t, s, records(10))
	eventually(t, "a refused dial", func() bool {
		st := s.Sink.(capture.StatsReporter).Stats()
		return st.FailedBatches > 0 && strings.Contains(st.LastError, "destination not allowed")
	})
	s.cancel()
	s.stop(t)
}
