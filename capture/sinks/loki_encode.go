package sinks

import (
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/log-capturer/log-capturer/capture"
)

// lokiMaxLine is Loki's default max_line_size; longer lines are truncated
// with capture.TruncatedMarker instead of being rejected whole.
const lokiMaxLine = 256 << 10

// lokiEncoder turns batches into Loki push requests. It keeps its buffers and
// per-container label sets between batches, so that a steady stream of
// batches allocates nothing per line.
type lokiEncoder struct {
	static         []labelPair
	metadataLabels []string
	podLabels      []string

	labelCache map[containerID]*labelEntry
	streams    map[string]*lokiStream
	order      []*lokiStream
	free       []*lokiStream
	buf        []byte
	truncated  int

	// scratch of sortStreamByTime
	sortIdx     []int
	sortEntries []*capture.Record
	sortMeta    [][]labelPair
}

type labelPair struct{ name, value string }

type containerID struct{ namespace, pod, container string }

type labelEntry struct {
	src    map[string]string // the record labels the set was built from
	node   string
	labels string
	pairs  []labelPair
	// metadata holds the structured metadata (pod and node unless they are labels).
	metadata []labelPair
}

type lokiStream struct {
	labels   string
	pairs    []labelPair
	entries  []*capture.Record
	metadata [][]labelPair
	// lines and sizes are scratch of encodeProto: each entry's line as
	// encoded and its message size.
	lines []string
	sizes []int
}

func newLokiEncoder(c *capture.LokiConfig) *lokiEncoder {
	e := &lokiEncoder{
		labelCache: map[containerID]*labelEntry{},
		streams:    map[string]*lokiStream{},
		podLabels:  c.PodLabelsAsLabels,
	}
	e.metadataLabels = c.MetadataLabels
	for k, v := range c.StaticLabels {
		e.static = append(e.static, labelPair{k, v})
	}
	return e
}

// identityLabels are the labels only the operator sets, from the record's
// own Kubernetes metadata.
var identityLabels = map[string]bool{"namespace": true, "pod": true, "container": true, "node": true}

// labelName turns a pod label key into a valid Prometheus label name.
func labelName(k string) string { return capture.LokiLabelName(k) }

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// entryFor returns the label set and structured metadata of a record's container.
func (e *lokiEncoder) entryFor(r *capture.Record) *labelEntry {
	id := containerID{r.Namespace, r.Pod, r.Container}
	if le, ok := e.labelCache[id]; ok && le.node == r.Node && sameLabels(le.src, r.Labels) {
		return le
	}
	if len(e.labelCache) > 50000 {
		clear(e.labelCache)
	}
	// The operator's own labels come first and win: a static label or a
	// pod label can never set namespace, pod, container or node (the schema
	// refuses them too; this holds whatever reached the encoder).
	pairs := make([]labelPair, 0, len(e.metadataLabels)+len(e.static)+len(e.podLabels))
	isLabel := map[string]bool{}
	for _, m := range e.metadataLabels {
		isLabel[m] = true
		switch m {
		case "namespace":
			pairs = append(pairs, labelPair{"namespace", r.Namespace})
		case "pod":
			pairs = append(pairs, labelPair{"pod", r.Pod})
		case "container":
			pairs = append(pairs, labelPair{"container", r.Container})
		case "node":
			pairs = append(pairs, labelPair{"node", r.Node})
		}
	}
	for _, p := range e.static {
		if !identityLabels[p.name] {
			pairs = append(pairs, p)
		}
	}
	for _, k := range e.podLabels {
		if v, ok := r.Labels[k]; ok && !identityLabels[labelName(k)] {
			pairs = append(pairs, labelPair{labelName(k), v})
		}
	}
	slices.SortStableFunc(pairs, func(a, b labelPair) int { return strings.Compare(a.name, b.name) })
	pairs = slices.CompactFunc(pairs, func(a, b labelPair) bool { return a.name == b.name })
	var sb strings.Builder
	sb.WriteByte('{')
	for i, p := range pairs {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(p.name)
		sb.WriteString("=")
		sb.WriteString(strconv.Quote(p.value))
	}
	sb.WriteByte('}')
	le := &labelEntry{src: r.Labels, node: r.Node, labels: sb.String(), pairs: pairs}
	if !isLabel["pod"] {
		le.metadata = append(le.metadata, labelPair{"pod", r.Pod})
	}
	if !isLabel["node"] && r.Node != "" {
		le.metadata = append(le.metadata, labelPair{"node", r.Node})
	}
	e.labelCache[id] = le
	return le
}

// group sorts a batch into streams by label set, each sorted by time.
func (e *lokiEncoder) group(batch []*capture.Record) {
	for _, s := range e.order {
		delete(e.streams, s.labels)
		clear(s.entries) // hold no record of an earlier batch
		s.entries = s.entries[:0]
		s.metadata = s.metadata[:0]
		e.free = append(e.free, s)
	}
	e.order = e.order[:0]
	for _, r := range batch {
		le := e.entryFor(r)
		s, ok := e.streams[le.labels]
		if !ok {
			if n := len(e.free); n > 0 {
				s = e.free[n-1]
				e.free = e.free[:n-1]
			} else {
				s = &lokiStream{}
			}
			s.labels, s.pairs = le.labels, le.pairs
			e.streams[le.labels] = s
			e.order = append(e.order, s)
		}
		s.entries = append(s.entries, r)
		s.metadata = append(s.metadata, le.metadata)
	}
	for _, s := range e.order {
		if !slices.IsSortedFunc(s.entries, byTime) {
			e.sortStreamByTime(s)
		}
	}
}

func byTime(a, b *capture.Record) int { return a.Time.Compare(b.Time) }

// sortStreamByTime sorts entries and their metadata together, stably, in
// the encoder's scratch.
func (e *lokiEncoder) sortStreamByTime(s *lokiStream) {
	idx := e.sortIdx[:0]
	for i := range s.entries {
		idx = append(idx, i)
	}
	slices.SortStableFunc(idx, func(a, b int) int { return byTime(s.entries[a], s.entries[b]) })
	entries, meta := e.sortEntries[:0], e.sortMeta[:0]
	for _, j := range idx {
		entries, meta = append(entries, s.entries[j]), append(meta, s.metadata[j])
	}
	copy(s.entries, entries)
	copy(s.metadata, meta)
	clear(entries)
	e.sortIdx, e.sortEntries, e.sortMeta = idx, entries[:0], meta[:0]
}

// cutLine returns the record's line, truncated to Loki's limit at a UTF-8
// boundary and marked; truncated tells whether it was cut.
func cutLine(r *capture.Record) (l string, truncated bool) {
	if len(r.Line) <= lokiMaxLine {
		return r.Line, false
	}
	cut := lokiMaxLine - len(capture.TruncatedMarker)
	for back := 0; back < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(r.Line[cut]); back++ {
		cut--
	}
	return r.Line[:cut] + capture.TruncatedMarker, true
}

// line is cutLine(r), counting a truncation.
func (e *lokiEncoder) line(r *capture.Record) string {
	l, cut := cutLine(r)
	if cut {
		e.truncated++
	}
	return l
}

// Protobuf field numbers of Loki's logproto push messages.
const (
	fieldPushStreams     = 1 // PushRequest.streams
	fieldStreamLabels    = 1 // StreamAdapter.labels
	fieldStreamEntries   = 2 // StreamAdapter.entries
	fieldEntryTimestamp  = 1 // EntryAdapter.timestamp
	fieldEntryLine       = 2 // EntryAdapter.line
	fieldEntryMetadata   = 3 // EntryAdapter.structuredMetadata
	fieldPairName        = 1 // LabelPairAdapter.name
	fieldPairValue       = 2 // LabelPairAdapter.value
	fieldTimestampSecond = 1 // google.protobuf.Timestamp.seconds
	fieldTimestampNanos  = 2 // google.protobuf.Timestamp.nanos
)

func timestampSize(r *capture.Record) int {
	n := 0
	if s := r.Time.Unix(); s != 0 {
		n += protowire.SizeTag(fieldTimestampSecond) + protowire.SizeVarint(uint64(s)) //nolint:gosec // protobuf int64 wire form
	}
	if ns := r.Time.Nanosecond(); ns != 0 {
		n += protowire.SizeTag(fieldTimestampNanos) + protowire.SizeVarint(uint64(ns))
	}
	return n
}

func pairSize(p labelPair) int {
	return protowire.SizeTag(fieldPairName) + protowire.SizeBytes(len(p.name)) +
		protowire.SizeTag(fieldPairValue) + protowire.SizeBytes(len(p.value))
}

func entrySize(r *capture.Record, meta []labelPair, line string) int {
	n := protowire.SizeTag(fieldEntryTimestamp) + protowire.SizeBytes(timestampSize(r)) +
		protowire.SizeTag(fieldEntryLine) + protowire.SizeBytes(len(line))
	for _, p := range meta {
		n += protowire.SizeTag(fieldEntryMetadata) + protowire.SizeBytes(pairSize(p))
	}
	return n
}

// encodeProto returns the batch as a protobuf PushRequest. The result is
// valid until the next call.
func (e *lokiEncoder) encodeProto(batch []*capture.Record) []byte {
	e.group(batch)
	b := e.buf[:0]
	for _, s := range e.order {
		// Each entry's line (cut to the limit) and size, once: the stream's
		// length prefix needs them all before the first entry is written.
		s.lines, s.sizes = s.lines[:0], s.sizes[:0]
		size := protowire.SizeTag(fieldStreamLabels) + protowire.SizeBytes(len(s.labels))
		for i, r := range s.entries {
			l := e.line(r)
			n := entrySize(r, s.metadata[i], l)
			s.lines, s.sizes = append(s.lines, l), append(s.sizes, n)
			size += protowire.SizeTag(fieldStreamEntries) + protowire.SizeBytes(n)
		}
		b = slices.Grow(b, size+binary.MaxVarintLen64+1)
		b = protowire.AppendTag(b, fieldPushStreams, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size)) //nolint:gosec // sizes are positive
		b = protowire.AppendTag(b, fieldStreamLabels, protowire.BytesType)
		b = protowire.AppendString(b, s.labels)
		for i, r := range s.entries {
			b = protowire.AppendTag(b, fieldStreamEntries, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(s.sizes[i])) //nolint:gosec // sizes are positive
			b = protowire.AppendTag(b, fieldEntryTimestamp, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(timestampSize(r))) //nolint:gosec // sizes are positive
			if sec := r.Time.Unix(); sec != 0 {
				b = protowire.AppendTag(b, fieldTimestampSecond, protowire.VarintType)
				b = protowire.AppendVarint(b, uint64(sec)) //nolint:gosec // protobuf int64 wire form
			}
			if ns := r.Time.Nanosecond(); ns != 0 {
				b = protowire.AppendTag(b, fieldTimestampNanos, protowire.VarintType)
				b = protowire.AppendVarint(b, uint64(ns))
			}
			b = protowire.AppendTag(b, fieldEntryLine, protowire.BytesType)
			b = protowire.AppendString(b, s.lines[i])
			for _, p := range s.metadata[i] {
				b = protowire.AppendTag(b, fieldEntryMetadata, protowire.BytesType)
				b = protowire.AppendVarint(b, uint64(pairSize(p))) //nolint:gosec // sizes are positive
				b = protowire.AppendTag(b, fieldPairName, protowire.BytesType)
				b = protowire.AppendString(b, p.name)
				b = protowire.AppendTag(b, fieldPairValue, protowire.BytesType)
				b = protowire.AppendString(b, p.value)
			}
		}
		clear(s.lines)
	}
	e.buf = b
	return b
}

// encodeJSON returns the batch in Loki's JSON push format.
func (e *lokiEncoder) encodeJSON(batch []*capture.Record) []byte {
	e.group(batch)
	b := e.buf[:0]
	b = append(b, `{"streams":[`...)
	for i, s := range e.order {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"stream":{`...)
		for k, p := range s.pairs {
			if k > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, p.name)
			b = append(b, ':')
			b = appendJSONString(b, p.value)
		}
		b = append(b, `},"values":[`...)
		for j, r := range s.entries {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, `["`...)
			b = strconv.AppendInt(b, r.Time.UnixNano(), 10)
			b = append(b, `",`...)
			b = appendJSONString(b, e.line(r))
			if meta := s.metadata[j]; len(meta) > 0 {
				b = append(b, ",{"...)
				for k, p := range meta {
					if k > 0 {
						b = append(b, ',')
					}
					b = appendJSONString(b, p.name)
					b = append(b, ':')
					b = appendJSONString(b, p.value)
				}
				b = append(b, '}')
			}
			b = append(b, ']')
		}
		b = append(b, "]}"...)
	}
	b = append(b, "]}"...)
	e.buf = b
	return b
}
