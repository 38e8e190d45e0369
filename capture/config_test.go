package capture

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestHashChangesWithEveryField(t *testing.T) {
	base := PipelineConfig{Namespace: "ns", Name: "p", RotationInterval: time.Minute, MaxStreams: 5,
		Sinks: []SinkConfig{{Name: "out", Kind: SinkStdout, Stdout: &StdoutConfig{}}}}
	tests := []struct {
		name   string
		mutate func(*PipelineConfig)
	}{
		{"pool size", func(c *PipelineConfig) { c.MaxStreams = 6 }},
		{"rotation", func(c *PipelineConfig) { c.RotationInterval = time.Second }},
		{"rotated credential", func(c *PipelineConfig) {
			c.Sinks = []SinkConfig{{Name: "out", Kind: SinkLoki, Loki: &LokiConfig{Credentials: Credentials{BearerToken: "new"}}}}
		}},
		{"include", func(c *PipelineConfig) { c.Include = []string{"web"} }},
	}
	h0, err := base.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := base.Hash(); again != h0 {
		t.Fatal("hash is not stable")
	}
	for _, tc := range tests {
		c := base
		tc.mutate(&c)
		if h, _ := c.Hash(); h == h0 {
			t.Errorf("%s: hash did not change", tc.name)
		}
	}
}

func TestCredentialsAreRedacted(t *testing.T) {
	c := LokiConfig{Credentials: Credentials{Password: "hunter2"}}
	if s := fmt.Sprintf("%v %+v", c, c); strings.Contains(s, "hunter2") {
		t.Fatalf("credentials leak into formatting: %s", s)
	}
}
