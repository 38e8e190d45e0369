// Package sinks implements the sinks log records are delivered to.
package sinks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	lcruntime "github.com/log-capturer/log-capturer/runtime"
)

// Options are what the sinks need from the process.
type Options struct {
	// Stdout receives the records of Stdout sinks.
	Stdout io.Writer
	// FileRoot is the only directory File sinks may write under.
	FileRoot string
}

// Factory returns the SinkFactory for the operator.
func Factory(o Options) lcruntime.SinkFactory {
	stdout := &lockedWriter{w: o.Stdout}
	return func(_ string, c lcruntime.SinkConfig) (lcruntime.Sink, error) {
		switch c.Kind {
		case lcruntime.SinkStdout:
			return &writerSink{w: stdout, raw: c.Stdout != nil && c.Stdout.Raw}, nil
		default:
			return nil, fmt.Errorf("sink kind %s is not supported by this version", c.Kind)
		}
	}
}

// lockedWriter serializes writes of whole lines from several sinks.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) write(b []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.w.Write(b)
	return err //nolint:wrapcheck // the caller names the sink
}

// JSONRecord is the JSON object File, HTTP and Stdout sinks write per record.
type JSONRecord struct {
	TS        string            `json:"ts"`
	Namespace string            `json:"namespace"`
	Pod       string            `json:"pod"`
	Container string            `json:"container"`
	Node      string            `json:"node,omitempty"`
	Line      string            `json:"line"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// AppendJSON appends r as one JSON line. Invalid UTF-8 in the line is
// replaced by U+FFFD, as encoding/json does, so the output stays valid JSON.
func AppendJSON(buf []byte, r *lcruntime.Record) ([]byte, error) {
	b, err := json.Marshal(JSONRecord{TS: r.Time.UTC().Format(time.RFC3339Nano), Namespace: r.Namespace, Pod: r.Pod,
		Container: r.Container, Node: r.Node, Line: r.Line, Labels: r.Labels})
	if err != nil {
		return buf, fmt.Errorf("encoding record: %w", err)
	}
	buf = append(buf, b...)
	return append(buf, '\n'), nil
}

// writerSink writes each record as a line to a shared writer.
type writerSink struct {
	w   *lockedWriter
	raw bool
	buf []byte
}

func (s *writerSink) Write(_ context.Context, r *lcruntime.Record) error {
	s.buf = s.buf[:0]
	if s.raw {
		s.buf = append(append(s.buf, r.Line...), '\n')
	} else {
		var err error
		if s.buf, err = AppendJSON(s.buf, r); err != nil {
			return err
		}
	}
	if err := s.w.write(s.buf); err != nil {
		return fmt.Errorf("writing to stdout: %w", err)
	}
	return nil
}

func (s *writerSink) Close(context.Context) error { return nil }
