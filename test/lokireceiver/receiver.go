// Package lokireceiver is a Loki-compatible push receiver for tests, the demo
// and e2e: it decodes /loki/api/v1/push in protobuf with snappy and in JSON,
// checks label-set syntax and per-stream ordering, keeps every entry, and
// can be told to fail (status codes, Retry-After, hangs).
package lokireceiver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/log-capturer/log-capturer/test/faults"
)

// Entry is one received log line.
type Entry struct {
	Labels   map[string]string
	Time     time.Time
	Line     string
	Metadata map[string]string
	Tenant   string
	// size is the line's length when a summarizing receiver did not keep it.
	size int
}

// Fault is what the next requests get instead of a 204.
type Fault struct {
	Status     int
	RetryAfter string
	Body       string
	// Hang holds the request until the client gives up.
	Hang bool
	// StoreThenHang keeps the entries, then hangs: the client cannot know
	// that the push succeeded, like a server that dies before it answers.
	StoreThenHang bool
}

// Receiver is an http.Handler for Loki pushes. Its faults.Schedule
// (FailNext, FailAll, Recover, Close) says which pushes fail.
type Receiver struct {
	faults.Schedule[Fault]
	mu       sync.Mutex
	entries  []Entry
	requests int
	problems []string
	headers  []http.Header
	// tallyBy, when set, makes the receiver count entries and line bytes
	// per value of that label instead of keeping them.
	tallyBy string
	tally   map[string]Tally
	count   int
}

// Tally is what a summarizing receiver kept of the entries of one label value.
type Tally struct {
	Entries, Bytes int64
}

// Summarize makes the receiver keep, from now on, only the count and line
// bytes of the entries per value of label (benchmarks: every push is still
// decoded and checked); Summary returns them.
func (r *Receiver) Summarize(label string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tallyBy, r.tally = label, map[string]Tally{}
}

// keeps tells whether entries are kept (not only counted).
func (r *Receiver) keeps() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tallyBy == ""
}

// Summary returns the tallies of a summarizing receiver.
func (r *Receiver) Summary() map[string]Tally {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]Tally, len(r.tally))
	for k, v := range r.tally {
		out[k] = v
	}
	return out
}

// New returns an empty Receiver.
func New() *Receiver { return &Receiver{} }

// Entries returns a copy of every accepted entry, in arrival order.
func (r *Receiver) Entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Entry(nil), r.entries...)
}

// Len is how many entries were accepted.
func (r *Receiver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries) + r.count
}

// Problems lists protocol violations seen: bad label sets, unsorted streams,
// undecodable bodies.
func (r *Receiver) Problems() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.problems...)
}

// Headers returns the headers of every request.
func (r *Receiver) Headers() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.headers...)
}

// Requests is how many push requests arrived.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

func (r *Receiver) fault() *Fault {
	r.mu.Lock()
	r.requests++
	r.mu.Unlock()
	if f, ok := r.Take(); ok {
		return &f
	}
	return nil
}

// ServeHTTP handles GET /ready and POST /loki/api/v1/push.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	switch {
	case req.Method == http.MethodGet && req.URL.Path == "/ready":
		_, _ = io.WriteString(w, "ready\n")
		return
	case req.Method != http.MethodPost || req.URL.Path != "/loki/api/v1/push":
		http.NotFound(w, req)
		return
	}
	r.mu.Lock()
	r.headers = append(r.headers, req.Header.Clone())
	r.mu.Unlock()
	f := r.fault()
	if f != nil && !f.StoreThenHang {
		if f.Hang {
			select {
			case <-req.Context().Done():
			case <-r.Released():
				http.Error(w, "receiver closed", http.StatusServiceUnavailable)
			}
			return
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		http.Error(w, f.Body, f.Status)
		return
	}
	bufs := bodyPool.Get().(*[2][]byte)
	defer bodyPool.Put(bufs)
	raw := bytes.NewBuffer(bufs[0][:0])
	if req.ContentLength > 0 && req.ContentLength < 64<<20 {
		raw.Grow(int(req.ContentLength))
	}
	_, err := raw.ReadFrom(req.Body)
	bufs[0] = raw.Bytes()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	body := bufs[0]
	var (
		entries []Entry
		tallies []streamTally
	)
	switch req.Header.Get("Content-Type") {
	case "application/json":
		entries, err = decodeJSON(body)
	default:
		if req.Header.Get("Content-Encoding") == "snappy" || req.Header.Get("Content-Encoding") == "" {
			if n, derr := s2.DecodedLen(body); derr == nil && n > cap(bufs[1]) && n < 256<<20 {
				bufs[1] = make([]byte, n)
			}
			body, err = s2.Decode(bufs[1][:cap(bufs[1])], body) // decodes snappy too
			bufs[1] = body
		}
		if err == nil {
			entries, tallies, err = decodeProto(body, r.keeps())
		}
	}
	tenant := req.Header.Get("X-Scope-OrgID")
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.problems = append(r.problems, "undecodable push: "+err.Error())
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.tallyBy != "" {
		for _, st := range tallies {
			t := r.tally[st.labels[r.tallyBy]]
			t.Entries += st.entries
			t.Bytes += st.bytes
			r.tally[st.labels[r.tallyBy]] = t
			r.count += int(st.entries)
		}
		for _, e := range entries {
			t := r.tally[e.Labels[r.tallyBy]]
			t.Entries++
			t.Bytes += int64(len(e.Line) + e.size)
			r.tally[e.Labels[r.tallyBy]] = t
		}
		r.count += len(entries)
		entries = nil
	}
	for i := range entries {
		entries[i].Tenant = tenant
	}
	r.entries = append(r.entries, entries...)
	if f != nil && f.StoreThenHang {
		r.mu.Unlock()
		select {
		case <-req.Context().Done():
		case <-r.Released():
		}
		r.mu.Lock()
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// bodyPool reuses the buffers of a push's body, compressed and not: every
// decoded string is a copy, so nothing refers to them after the decode.
var bodyPool = sync.Pool{New: func() any { return new([2][]byte) }}

var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// ParseLabels parses Prometheus label-set text, {a="x", b="y"}.
func ParseLabels(s string) (map[string]string, error) {
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return nil, fmt.Errorf("label set %q is not in braces", s)
	}
	body := s[1 : len(s)-1]
	out := map[string]string{}
	for body != "" {
		eq := strings.IndexByte(body, '=')
		if eq < 0 {
			return nil, fmt.Errorf("label set %q: missing '='", s)
		}
		name := strings.TrimSpace(body[:eq])
		if !labelNameRE.MatchString(name) {
			return nil, fmt.Errorf("label set %q: invalid label name %q", s, name)
		}
		rest := body[eq+1:]
		if !strings.HasPrefix(rest, `"`) {
			return nil, fmt.Errorf("label set %q: value of %s is not quoted", s, name)
		}
		end := 1
		for ; end < len(rest) && rest[end] != '"'; end++ {
			if rest[end] == '\\' {
				end++
			}
		}
		if end >= len(rest) {
			return nil, fmt.Errorf("label set %q: unterminated value of %s", s, name)
		}
		v, err := strconv.Unquote(rest[:end+1])
		if err != nil {
			return nil, fmt.Errorf("label set %q: value of %s: %w", s, name, err)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("label set %q: duplicate label %s", s, name)
		}
		out[name] = v
		body = rest[end+1:]
		if body != "" {
			if !strings.HasPrefix(body, ",") {
				return nil, fmt.Errorf("label set %q: expected ',' after %s", s, name)
			}
			body = strings.TrimSpace(body[1:])
		}
	}
	return out, nil
}

// streamTally is what a summarizing receiver keeps of one stream of a push.
type streamTally struct {
	labels         map[string]string
	entries, bytes int64
}

// decodeProto decodes a PushRequest. With keep, it returns the entries;
// without, every entry is decoded and checked the same, but only counted
// per stream (a summarizing receiver allocates nothing per entry).
func decodeProto(b []byte, keep bool) ([]Entry, []streamTally, error) {
	var (
		out     []Entry
		tallies []streamTally
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			return nil, nil, fmt.Errorf("unexpected PushRequest field %d", num)
		}
		stream, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, nil, protowire.ParseError(n)
		}
		b = b[n:]
		es, t, err := decodeStream(stream, keep)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, es...)
		if !keep {
			tallies = append(tallies, t)
		}
	}
	return out, tallies, nil
}

// decodeStream decodes one stream: its entries with keep, else its tally.
func decodeStream(b []byte, keep bool) ([]Entry, streamTally, error) {
	var (
		t       streamTally
		entries []Entry
		last    time.Time
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, t, protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, t, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, t, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			l, err := ParseLabels(string(v))
			if err != nil {
				return nil, t, err
			}
			t.labels = l
		case 2:
			e, err := decodeEntry(v, keep)
			if err != nil {
				return nil, t, err
			}
			if t.entries > 0 && e.Time.Before(last) {
				return nil, t, fmt.Errorf("stream %v: entries out of order", t.labels)
			}
			last = e.Time
			t.entries++
			t.bytes += int64(len(e.Line) + e.size)
			if keep {
				entries = append(entries, e)
			}
		}
	}
	if t.labels == nil {
		return nil, t, errors.New("stream without labels")
	}
	for i := range entries {
		entries[i].Labels = t.labels
	}
	return entries, t, nil
}

func decodeEntry(b []byte, keep bool) (Entry, error) {
	var e Entry
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return e, protowire.ParseError(n)
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if typ != protowire.BytesType || n < 0 {
			return e, fmt.Errorf("unexpected entry field %d", num)
		}
		b = b[n:]
		switch num {
		case 1:
			ts, err := decodeTimestamp(v)
			if err != nil {
				return e, err
			}
			e.Time = ts
		case 2:
			if !keep {
				e.size = len(v)
				continue
			}
			e.Line = string(v)
		case 3:
			name, value, err := decodePair(v)
			if err != nil {
				return e, err
			}
			if !keep {
				continue
			}
			if e.Metadata == nil {
				e.Metadata = map[string]string{}
			}
			e.Metadata[name] = value
		}
	}
	return e, nil
}

func decodeTimestamp(b []byte) (time.Time, error) {
	var sec, nanos uint64
	for len(b) > 0 {
		num, _, n := protowire.ConsumeTag(b)
		if n < 0 {
			return time.Time{}, protowire.ParseError(n)
		}
		b = b[n:]
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return time.Time{}, protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1:
			sec = v
		case 2:
			nanos = v
		}
	}
	return time.Unix(int64(sec), int64(nanos)).UTC(), nil //nolint:gosec // protobuf int64 wire form
}

func decodePair(b []byte) (string, string, error) {
	var name, value string
	for len(b) > 0 {
		num, _, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", "", protowire.ParseError(n)
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", "", protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 {
			name = string(v)
		} else {
			value = string(v)
		}
	}
	return name, value, nil
}

type jsonPush struct {
	Streams []struct {
		Stream map[string]string `json:"stream"`
		Values []json.RawMessage `json:"values"`
	} `json:"streams"`
}

func decodeJSON(b []byte) ([]Entry, error) {
	var p jsonPush
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decoding JSON push: %w", err)
	}
	var out []Entry
	for _, s := range p.Streams {
		var prev time.Time
		for _, raw := range s.Values {
			var v []json.RawMessage
			if err := json.Unmarshal(raw, &v); err != nil || len(v) < 2 {
				return nil, fmt.Errorf("invalid value %s", raw)
			}
			var tsStr, line string
			if err := json.Unmarshal(v[0], &tsStr); err != nil {
				return nil, fmt.Errorf("invalid timestamp %s", v[0])
			}
			if err := json.Unmarshal(v[1], &line); err != nil {
				return nil, fmt.Errorf("invalid line %s", v[1])
			}
			ns, err := strconv.ParseInt(tsStr, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("invalid timestamp %q", tsStr)
			}
			e := Entry{Labels: s.Stream, Time: time.Unix(0, ns).UTC(), Line: line}
			if len(v) > 2 {
				if err := json.Unmarshal(v[2], &e.Metadata); err != nil {
					return nil, fmt.Errorf("invalid structured metadata %s", v[2])
				}
			}
			if e.Time.Before(prev) {
				return nil, fmt.Errorf("stream %v: entries out of order", s.Stream)
			}
			prev = e.Time
			out = append(out, e)
		}
	}
	return out, nil
}
