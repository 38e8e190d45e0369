package sinks

import (
	"slices"
	"time"
	"unicode/utf8"

	"github.com/log-capturer/log-capturer/capture"
)

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD
// and control characters are escaped, so the output is always valid JSON
// whatever bytes a container wrote.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonPrefixFitting returns the length of the longest prefix of s that
// ends on a character boundary (a valid rune, or one invalid byte) and that
// appendJSONString escapes into at most limit bytes, its quotes not
// counted.
func jsonPrefixFitting(s string, limit int) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		w, size := 1, 1
		switch {
		case c >= utf8.RuneSelf:
			if r, sz := utf8.DecodeRuneInString(s[i:]); r == utf8.RuneError && sz == 1 {
				w = len(`\ufffd`)
			} else {
				w, size = sz, sz
			}
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			w = 2
		case c < 0x20:
			w = len(`\u0000`)
		}
		if n+w > limit {
			return i
		}
		n += w
		i += size
	}
	return len(s)
}

// appendRecordJSON appends the JSON object File, HTTP and Stdout sinks
// write per record, and a newline:
// {"ts","namespace","pod","container","node","stream","line","labels"};
// stream only when the source knows it (the kubelet's files).
func appendRecordJSON(b []byte, r *capture.Record) []byte {
	b = append(b, `{"ts":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","namespace":`...)
	b = appendJSONString(b, r.Namespace)
	b = append(b, `,"pod":`...)
	b = appendJSONString(b, r.Pod)
	b = append(b, `,"container":`...)
	b = appendJSONString(b, r.Container)
	b = append(b, `,"node":`...)
	b = appendJSONString(b, r.Node)
	if r.Stream != "" {
		b = append(b, `,"stream":`...)
		b = appendJSONString(b, r.Stream)
	}
	b = append(b, `,"line":`...)
	b = appendJSONString(b, r.Line)
	if len(r.Labels) > 0 {
		b = append(b, `,"labels":{`...)
		b = appendSortedMap(b, r.Labels)
		b = append(b, '}')
	}
	return append(b, '}', '\n')
}

// appendSortedMap appends "k":"v" pairs sorted by key.
func appendSortedMap(b []byte, m map[string]string) []byte {
	var keysArr [16]string
	keys := keysArr[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return b
}

// appendRaw appends the line alone and a newline. A line is written as the
// container wrote it, invalid UTF-8 and NUL bytes included.
func appendRaw(b []byte, r *capture.Record) []byte {
	b = append(b, r.Line...)
	return append(b, '\n')
}

// appendBatch appends every record of a batch, raw or as JSON lines.
func appendBatch(b []byte, batch []*capture.Record, raw bool) []byte {
	for _, r := range batch {
		if raw {
			b = appendRaw(b, r)
		} else {
			b = appendRecordJSON(b, r)
		}
	}
	return b
}
