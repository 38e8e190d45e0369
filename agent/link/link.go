// Package link is the agent's side of the link to the operator: it follows
// its node's configuration with long-polled GETs (package control serves
// them) and applies each new revision to the workers. When the operator is
// away the workers keep the last configuration they were given.
package link

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/agent/control"
	"github.com/log-capturer/log-capturer/capture"
)

// Workers runs pipelines (the engine's Manager is one).
type Workers interface {
	Apply(ctx context.Context, key types.NamespacedName, cfg capture.PipelineConfig) error
	Remove(ctx context.Context, key types.NamespacedName) error
}

// Deleter deletes a deleted pipeline's workers and stored positions (the
// engine's Manager is one); Workers that are not one keep the positions.
type Deleter interface {
	Delete(ctx context.Context, key types.NamespacedName) error
}

// MaxConfigBytes bounds an answer of the operator.
const MaxConfigBytes = 16 << 20

// Follower fetches the node's configuration and applies it. Run is its
// only goroutine; Status may be called from any other.
type Follower struct {
	// URL is the operator's agent endpoint, e.g. https://log-capturer-agents.log-capturer-system.svc:8443.
	URL string
	// Client is configured for the endpoint's TLS.
	Client *http.Client
	// Token returns the agent's current token; it is called for every
	// request, so a rotated projected token is picked up.
	Token func() (string, error)
	// Workers receive the pipelines.
	Workers Workers
	// Wait is how long one request may wait for a change (30s when zero).
	Wait time.Duration
	// MinBackoff and MaxBackoff bound the pause after a failure (1s and
	// 30s when zero).
	MinBackoff, MaxBackoff time.Duration

	revision string
	applied  map[types.NamespacedName]bool
	// deleted are the announced deletions done, by pipeline and UID.
	deleted map[capture.PipelineRef]bool

	mu     sync.Mutex
	status Status
}

// Status is what the Follower knows of the link.
type Status struct {
	// Revision is the configuration the workers run.
	Revision string
	// Pipelines is how many pipelines it holds; Keys names them.
	Pipelines int
	Keys      []types.NamespacedName
	// LastContact is when the operator last answered.
	LastContact time.Time
	// LastError is the last failure, empty after a success.
	LastError string
	// Failures counts failed fetches and applies.
	Failures int64
}

// Status returns the link's state.
func (f *Follower) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

// TokenFile returns a Token function reading path (a projected
// ServiceAccount token) each time.
func TokenFile(path string) func() (string, error) {
	return func() (string, error) {
		b, err := os.ReadFile(path) //nolint:gosec // the agent's own token file
		if err != nil {
			return "", fmt.Errorf("reading the agent's token: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
}

// Run follows the configuration until ctx ends.
func (f *Follower) Run(ctx context.Context) error {
	minB, maxB := f.MinBackoff, f.MaxBackoff
	if minB <= 0 {
		minB = time.Second
	}
	if maxB < minB {
		maxB = max(30*time.Second, minB)
	}
	if f.applied == nil {
		f.applied = map[types.NamespacedName]bool{}
	}
	backoff := minB
	for {
		err := f.step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			backoff = minB
			continue
		}
		f.mu.Lock()
		f.status.LastError, f.status.Failures = err.Error(), f.status.Failures+1
		f.mu.Unlock()
		logr.FromContextOrDiscard(ctx).Error(err, "following the node's configuration; the workers keep the last one", "retryIn", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxB)
	}
}

// step makes one request and applies what it brought.
func (f *Follower) step(ctx context.Context) error {
	nc, changed, err := f.fetch(ctx)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.status.LastContact, f.status.LastError = time.Now(), ""
	f.mu.Unlock()
	if !changed {
		return nil
	}
	if err := f.apply(ctx, nc); err != nil {
		f.revision = "" // ask for the whole configuration again
		return err
	}
	f.revision = nc.Revision
	f.mu.Lock()
	f.status.Revision, f.status.Pipelines = nc.Revision, len(f.applied)
	f.status.Keys = slices.SortedFunc(maps.Keys(f.applied), func(a, b types.NamespacedName) int {
		return strings.Compare(a.String(), b.String())
	})
	f.mu.Unlock()
	return nil
}

// fetch asks for the configuration; changed is false on Not Modified.
func (f *Follower) fetch(ctx context.Context) (control.NodeConfig, bool, error) {
	var nc control.NodeConfig
	token, err := f.Token()
	if err != nil {
		return nc, false, err
	}
	wait := f.Wait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	q := url.Values{}
	if f.revision != "" {
		q.Set("wait", wait.String())
	}
	rctx, cancel := context.WithTimeout(ctx, wait+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, strings.TrimSuffix(f.URL, "/")+"/v1/config?"+q.Encode(), nil)
	if err != nil {
		return nc, false, fmt.Errorf("asking the operator for the configuration: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if f.revision != "" {
		req.Header.Set("If-None-Match", `"`+f.revision+`"`)
	}
	resp, err := f.Client.Do(req)
	if err != nil {
		return nc, false, fmt.Errorf("asking the operator for the configuration: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxConfigBytes+1))
	if err != nil {
		return nc, false, fmt.Errorf("reading the operator's answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotModified:
		return nc, false, nil
	case resp.StatusCode != http.StatusOK:
		return nc, false, fmt.Errorf("the operator answered %s: %s", resp.Status, firstLine(body))
	case len(body) > MaxConfigBytes:
		return nc, false, fmt.Errorf("the operator's answer is over %d bytes", MaxConfigBytes)
	}
	if err := json.Unmarshal(body, &nc); err != nil {
		return nc, false, fmt.Errorf("decoding the operator's answer: %w", err)
	}
	if nc.Revision == "" {
		return nc, false, errors.New("the operator's answer has no revision")
	}
	return nc, true, nil
}

// apply makes the workers run exactly nc's pipelines: Apply for each (the
// workers skip an unchanged one), Remove for those no longer there (their
// positions stay in the journal, for a pod that comes back).
func (f *Follower) apply(ctx context.Context, nc control.NodeConfig) error {
	want := map[types.NamespacedName]capture.PipelineConfig{}
	for _, p := range nc.Pipelines {
		want[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
	}
	var errs []error
	// Deletions first: a pipeline deleted and made again under its name
	// is in Pipelines, not in Deleted, so nothing applied below is undone.
	done := make(map[capture.PipelineRef]bool, len(nc.Deleted))
	for _, ref := range nc.Deleted {
		key := types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}
		if _, live := want[key]; live {
			continue
		}
		if f.deleted[ref] {
			done[ref] = true
			continue
		}
		var err error
		if d, ok := f.Workers.(Deleter); ok {
			err = d.Delete(ctx, key)
		} else {
			err = f.Workers.Remove(ctx, key)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("deleting pipeline %s: %w", key, err))
			continue
		}
		delete(f.applied, key)
		done[ref] = true
	}
	// What is no longer announced needs no memory.
	f.deleted = done
	for key, p := range want {
		if err := f.Workers.Apply(ctx, key, p); err != nil {
			errs = append(errs, fmt.Errorf("applying pipeline %s: %w", key, err))
			continue
		}
		f.applied[key] = true
	}
	// A pending pipeline (the operator has not yet settled the node's
	// handover, as after its restart) keeps running as it is.
	pending := make(map[string]bool, len(nc.Pending))
	for _, k := range nc.Pending {
		pending[k] = true
	}
	if len(nc.Pending) > 0 {
		logr.FromContextOrDiscard(ctx).Info("pipelines wait for the operator to release this node's containers", "pending", nc.Pending)
	}
	for key := range f.applied {
		if _, ok := want[key]; ok || pending[key.String()] {
			continue
		}
		if err := f.Workers.Remove(ctx, key); err != nil {
			errs = append(errs, fmt.Errorf("removing pipeline %s: %w", key, err))
			continue
		}
		delete(f.applied, key)
	}
	return errors.Join(errs...)
}

// firstLine is the start of an error body, for a message.
func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.ToValidUTF8(s, "?")
}
