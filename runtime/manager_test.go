package runtime

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func TestManagerApplyIsIdempotentByHash(t *testing.T) {
	m := NewManager()
	key := types.NamespacedName{Namespace: "ns", Name: "p"}
	cfg := PipelineConfig{Namespace: "ns", Name: "p", RotationInterval: time.Minute, MaxStreams: 5,
		Sinks: []SinkConfig{{Name: "out", Kind: SinkStdout, Stdout: &StdoutConfig{}}}}
	tests := []struct {
		name        string
		mutate      func(*PipelineConfig)
		wantChanged bool
	}{
		{"first apply", func(*PipelineConfig) {}, true},
		{"same config", func(*PipelineConfig) {}, false},
		{"new pool size", func(c *PipelineConfig) { c.MaxStreams = 6 }, true},
		{"rotated credential", func(c *PipelineConfig) {
			c.Sinks = []SinkConfig{{Name: "out", Kind: SinkLoki, Loki: &LokiConfig{Credentials: Credentials{BearerToken: "new"}}}}
		}, true},
		{"same again", func(*PipelineConfig) {}, false},
	}
	for _, tc := range tests {
		tc.mutate(&cfg)
		changed, err := m.Apply(context.Background(), key, cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if changed != tc.wantChanged {
			t.Fatalf("%s: changed = %v, want %v", tc.name, changed, tc.wantChanged)
		}
	}
	if _, ok := m.Snapshot(key); !ok {
		t.Fatal("applied pipeline has no snapshot")
	}
	if err := m.Remove(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Snapshot(key); ok {
		t.Fatal("removed pipeline still has a snapshot")
	}
}

func TestCredentialsAreRedacted(t *testing.T) {
	c := LokiConfig{Credentials: Credentials{Password: "hunter2"}}
	if s := fmt.Sprintf("%v %+v", c, c); strings.Contains(s, "hunter2") {
		t.Fatalf("credentials leak into formatting: %s", s)
	}
}
