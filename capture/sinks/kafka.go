package sinks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/log-capturer/log-capturer/capture"
)

// maxKafkaTopic is the longest topic name Kafka accepts.
const maxKafkaTopic = 249

// defaultKafkaMessage is Kafka's default largest record batch, the
// brokers' message.max.bytes and the topics' max.message.bytes.
const defaultKafkaMessage = 1048588

// kafkaRecordOverhead is the most a record batch of one record adds to its
// key and value, as franz-go counts it against ProducerBatchMaxBytes
// (before compression): the batch's header with its length prefix (65
// bytes) and the record's framing (its length, attributes, timestamp and
// offset deltas, key and value lengths as varints and an empty header
// count: at most 32 bytes).
const kafkaRecordOverhead = 65 + 32

// kafkaDeliverer produces every record of a batch with franz-go, acks=all
// and the idempotent producer, and tells the queued sink which records to
// send again.
type kafkaDeliverer struct {
	client *kgo.Client
	topic  string
	// templated tells that topic holds placeholders.
	templated bool
	key       string
	recs      []*kgo.Record
	index     map[*kgo.Record]int
	timeout   time.Duration
	conns     *kafkaConns
	// maxMessage is the largest record batch of one record; truncated is
	// told of the lines cut to fit in it.
	maxMessage int
	truncated  func(n int)
}

// kafkaConns remembers the last failed connection to a broker: franz-go
// retries those itself, and a send that ran out of time says only that.
type kafkaConns struct{ last atomic.Pointer[string] }

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (k *kafkaConns) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		k.last.Store(nil)
		return
	}
	msg := fmt.Sprintf("connecting to broker %s:%d: %v", meta.Host, meta.Port, err)
	k.last.Store(&msg)
}

// lastError is the last failed connection's error, "" when the last
// connection succeeded.
func (k *kafkaConns) lastError() string {
	if p := k.last.Load(); p != nil {
		return *p
	}
	return ""
}

// kafkaOpts are the client options of a Kafka sink's producer and probe:
// the brokers, the egress dialer (TLS on top of it), SASL, and conns told
// of every connection.
func kafkaOpts(c *capture.KafkaConfig, eg egress, conns *kafkaConns) ([]kgo.Opt, error) {
	var tlsCfg *tls.Config
	if c.TLS != nil {
		var err error
		if tlsCfg, err = tlsConfig(c.TLS); err != nil {
			return nil, err
		}
	}
	dial := eg.dialer().DialContext
	dialer := func(ctx context.Context, network, host string) (net.Conn, error) {
		conn, err := dial(ctx, network, host)
		if err != nil || tlsCfg == nil {
			return conn, err //nolint:wrapcheck // franz-go names the broker
		}
		cfg := tlsCfg.Clone()
		if cfg.ServerName == "" {
			if h, _, err := net.SplitHostPort(host); err == nil {
				cfg.ServerName = h
			}
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("TLS with %s: %w", host, err)
		}
		return tc, nil
	}
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.Dialer(dialer), kgo.ClientID("log-capturer"), kgo.WithHooks(conns)}
	if c.SASLMechanism != "" {
		var m sasl.Mechanism
		switch c.SASLMechanism {
		case "PLAIN":
			m = plain.Auth{User: c.Credentials.Username, Pass: c.Credentials.Password}.AsMechanism()
		case "SCRAM-SHA-256":
			m = scram.Auth{User: c.Credentials.Username, Pass: c.Credentials.Password}.AsSha256Mechanism()
		case "SCRAM-SHA-512":
			m = scram.Auth{User: c.Credentials.Username, Pass: c.Credentials.Password}.AsSha512Mechanism()
		default:
			return nil, fmt.Errorf("unknown SASL mechanism %q", c.SASLMechanism)
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func newKafkaDeliverer(c *capture.KafkaConfig, timeout time.Duration, eg egress, truncated func(n int)) (*kafkaDeliverer, error) {
	conns := &kafkaConns{}
	opts, err := kafkaOpts(c, eg, conns)
	if err != nil {
		return nil, err
	}
	var codec kgo.CompressionCodec
	switch c.Compression {
	case "None":
		codec = kgo.NoCompression()
	case "Gzip":
		codec = kgo.GzipCompression()
	case "LZ4":
		codec = kgo.Lz4Compression()
	case "Zstd":
		codec = kgo.ZstdCompression()
	default:
		codec = kgo.SnappyCompression()
	}
	maxMessage := int(c.MaxMessageBytes)
	if maxMessage <= 0 {
		maxMessage = defaultKafkaMessage
	}
	opts = append(opts,
		// Acknowledged by every in-sync replica, produced idempotently (the
		// default, said here because the guarantee rests on it): the
		// client's own retries across broker failures and leader changes
		// do not duplicate.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(codec),
		// Not RecordDeliveryTimeout: franz-go measures it from the record's
		// timestamp, the line's own time, so an old line would time out at
		// once. deliver bounds each send with its context instead.
		kgo.ProduceRequestTimeout(timeout),
		// franz-go's own default (1,000,012 bytes) is below the brokers'
		// (1,048,588): the sink's bound is the one it cuts lines to.
		kgo.ProducerBatchMaxBytes(int32(maxMessage)),
	)
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return &kafkaDeliverer{client: client, topic: c.Topic, templated: strings.Contains(c.Topic, "{"), key: c.Key,
		index: map[*kgo.Record]int{}, timeout: timeout, conns: conns, maxMessage: maxMessage, truncated: truncated}, nil
}

// topicFor fills the topic's placeholders from r.
func (d *kafkaDeliverer) topicFor(r *capture.Record) string {
	if !d.templated {
		return d.topic
	}
	return strings.NewReplacer("{namespace}", r.Namespace, "{pod}", r.Pod, "{container}", r.Container).Replace(d.topic)
}

func (d *kafkaDeliverer) keyFor(r *capture.Record) []byte {
	switch d.key {
	case "None":
		return nil
	case "Pod":
		return []byte(r.Namespace + "/" + r.Pod)
	default:
		return []byte(r.Namespace + "/" + r.Pod + "/" + r.Container)
	}
}

func (d *kafkaDeliverer) deliver(ctx context.Context, batch []*capture.Record) error {
	d.recs = d.recs[:0]
	clear(d.index)
	rejected, why, truncated := 0, "", 0
	for i, r := range batch {
		topic := d.topicFor(r)
		if len(topic) > maxKafkaTopic {
			rejected++
			why = fmt.Sprintf("topic %.40q… is %d characters long, over Kafka's %d", topic, len(topic), maxKafkaTopic)
			continue
		}
		key := d.keyFor(r)
		v := appendRecordJSON(nil, r)
		v = v[:len(v)-1]
		if room := d.maxMessage - kafkaRecordOverhead - len(key); len(v) > room {
			var ok bool
			if v, ok = cutRecordJSON(r, room); !ok {
				rejected++
				why = fmt.Sprintf("the message's key and metadata alone are over maxMessageBytes (%d bytes)", d.maxMessage)
				continue
			}
			truncated++
		}
		rec := &kgo.Record{Topic: topic, Key: key, Value: v, Timestamp: r.Time}
		d.recs = append(d.recs, rec)
		d.index[rec] = i
	}
	if truncated > 0 && d.truncated != nil {
		d.truncated(truncated)
	}
	var (
		retry   []int
		unknown bool
		retried error
	)
	// When the context ends, franz-go fails the records only where that is
	// safe (never sent, or answered): a failed record was not stored. A
	// request a broker never answers keeps its records until franz-go's
	// request timeout gives the connection up and it sends them again in
	// the same idempotent sequence.
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	for _, res := range d.client.ProduceSync(ctx, d.recs...) {
		if res.Err == nil {
			continue
		}
		var ke *kerr.Error
		if errors.As(res.Err, &ke) && !ke.Retriable {
			// The broker refused it for good (too large, not authorized,
			// an invalid topic): sending it again cannot succeed.
			rejected++
			why = ke.Message
			if why == "" {
				why = ke.Error()
			}
			continue
		}
		retry = append(retry, d.index[res.Record])
		retried = res.Err
		if kafkaOutcomeUnknown(res.Err) {
			unknown = true
		}
	}
	if rejected == 0 && len(retry) == 0 {
		return nil
	}
	pe := &partialError{rejected: rejected, retry: retry, unknown: unknown, message: why}
	if retried != nil {
		pe.retryMessage = retried.Error()
		if errors.Is(retried, context.DeadlineExceeded) {
			// franz-go was still retrying (a missing topic, a leader
			// election) when the send's time was up: say how long it had.
			pe.retryMessage = fmt.Sprintf("not stored within %s: %v", d.timeout, retried)
		}
		if last := d.conns.lastError(); last != "" {
			pe.retryMessage += "; " + last
		}
	}
	return pe
}

// cutRecordJSON returns the JSON object of r (without its newline) with
// its line cut at a UTF-8 boundary and ending in capture.TruncatedMarker,
// so that the object is at most room bytes; false when even an empty line
// would not fit.
func cutRecordJSON(r *capture.Record, room int) ([]byte, bool) {
	cut := *r
	cut.Line = ""
	empty := len(appendRecordJSON(nil, &cut)) - 1
	budget := room - empty - len(capture.TruncatedMarker)
	if budget < 0 {
		return nil, false
	}
	cut.Line = r.Line[:jsonPrefixFitting(r.Line, budget)] + capture.TruncatedMarker
	v := appendRecordJSON(nil, &cut)
	return v[:len(v)-1], true
}

// kafkaOutcomeUnknown tells whether a record that failed may have been
// written all the same: franz-go gave it up after a request went out (a
// record timeout or retry limit, which this sink does not set; a context's
// end fails only records that were not stored).
func kafkaOutcomeUnknown(err error) bool {
	return errors.Is(err, kgo.ErrRecordTimeout) || errors.Is(err, kgo.ErrRecordRetries)
}

func (d *kafkaDeliverer) close(context.Context) error {
	d.client.Close()
	return nil
}

// probeKafka asks a broker for the cluster's metadata.
func probeKafka(ctx context.Context, c *capture.KafkaConfig, eg egress) error {
	conns := &kafkaConns{}
	opts, err := kafkaOpts(c, eg, conns)
	if err != nil {
		return err
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("probing Kafka: %w", err)
	}
	defer client.Close()
	if err := client.Ping(ctx); err != nil {
		if last := conns.lastError(); last != "" {
			return fmt.Errorf("probing Kafka: %w; %s", err, last)
		}
		return fmt.Errorf("probing Kafka: %w", err)
	}
	return nil
}
