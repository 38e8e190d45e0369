package demo

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/test/kubeletsim"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

// Step is one scripted moment of the demo and what status showed of it.
type Step struct {
	Name string
	// Observed is true when the pipeline's status showed the step's effect,
	// read through the API as kubectl reads it; Detail says what it showed.
	Observed bool
	Detail   string
}

// story plays the scripted sequence that shows what sets log-capturer
// apart, each step judged by what the LogPipeline's status says.
type story struct {
	c       client.Client
	kubelet *kubeletsim.Kubelet
	loki    *lokireceiver.Receiver
	out     io.Writer
	quiet   bool
	key     client.ObjectKey

	mu    sync.Mutex
	steps []Step
}

// poll is how often the story reads the pipeline's status.
const poll = 500 * time.Millisecond

func (s *story) say(format string, args ...any) {
	if !s.quiet {
		fmt.Fprintf(s.out, format+"\n", args...)
	}
}

func (s *story) record(st Step) {
	s.mu.Lock()
	s.steps = append(s.steps, st)
	s.mu.Unlock()
	if st.Observed {
		s.say("   ✓ %s", st.Detail)
	} else {
		s.say("   ✗ %s", st.Detail)
	}
}

// Steps returns what the story observed so far.
func (s *story) Steps() []Step {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Step(nil), s.steps...)
}

// pipeline reads the LogPipeline as the API server has it.
func (s *story) pipeline(ctx context.Context) (*logsv1alpha1.LogPipeline, error) {
	p := &logsv1alpha1.LogPipeline{}
	return p, s.c.Get(ctx, s.key, p) //nolint:wrapcheck // the caller only polls
}

// await polls the pipeline until ok says so or timeout passes, and returns
// the last pipeline read.
func (s *story) await(ctx context.Context, timeout time.Duration, ok func(*logsv1alpha1.LogPipeline) bool) (*logsv1alpha1.LogPipeline, bool) {
	deadline := time.Now().Add(timeout)
	var last *logsv1alpha1.LogPipeline
	for {
		if p, err := s.pipeline(ctx); err == nil {
			last = p
			if ok(p) {
				return p, true
			}
		}
		if time.Now().After(deadline) {
			return last, false
		}
		select {
		case <-ctx.Done():
			return last, false
		case <-time.After(poll):
		}
	}
}

func flowReason(p *logsv1alpha1.LogPipeline) (string, string) {
	if p == nil {
		return "", ""
	}
	c := meta.FindStatusCondition(p.Status.Conditions, logsv1alpha1.ConditionFlowHealthy)
	if c == nil {
		return "", ""
	}
	return c.Reason, c.Message
}

func workers(p *logsv1alpha1.LogPipeline) logsv1alpha1.WorkerStatus {
	if p == nil || p.Status.Workers == nil {
		return logsv1alpha1.WorkerStatus{}
	}
	return *p.Status.Workers
}

// run plays every step in order until the story ends or ctx does.
func (s *story) run(ctx context.Context) {
	steps := []func(context.Context) Step{s.flow, s.cut, s.outage, s.newPod}
	for _, step := range steps {
		if ctx.Err() != nil {
			return
		}
		s.record(step(ctx))
	}
	s.say("▶ the story is told; lines keep flowing until the end of the run (Ctrl-C or --duration)")
}

// flow waits for lines to flow to both sinks.
func (s *story) flow(ctx context.Context) Step {
	s.say("▶ 1. lines flow from 3 containers to a File sink and a Loki sink")
	p, ok := s.await(ctx, 45*time.Second, func(p *logsv1alpha1.LogPipeline) bool {
		r, _ := flowReason(p)
		return r == logsv1alpha1.ReasonHealthy
	})
	r, msg := flowReason(p)
	return Step{Name: "flow", Observed: ok, Detail: fmt.Sprintf("FlowHealthy=%s: %s", r, msg)}
}

// cut breaks the kubelet connection of one container in the middle of a line.
func (s *story) cut(ctx context.Context) Step {
	p, _ := s.pipeline(ctx)
	before := workers(p).Reconnects
	s.say("▶ 2. the kubelet connection of demo/web-1 is cut in the middle of a line")
	s.kubelet.Container(Namespace, "web-1", "web").CutActive()
	p, ok := s.await(ctx, 30*time.Second, func(p *logsv1alpha1.LogPipeline) bool { return workers(p).Reconnects > before })
	detail := fmt.Sprintf("status.workers.reconnects %d → %d: the stream was reopened at its position (every line is checked at the end)",
		before, workers(p).Reconnects)
	if !ok {
		detail = fmt.Sprintf("status.workers.reconnects stayed at %d", before)
	}
	return Step{Name: "cut", Observed: ok, Detail: detail}
}

// outage takes the Loki receiver down until status reports it, then back up.
func (s *story) outage(ctx context.Context) Step {
	s.say("▶ 3. Loki answers 503 for a while")
	s.loki.FailAll(lokireceiver.Fault{Status: 503, Body: "demo outage: ingester unavailable"})
	p, down := s.await(ctx, 45*time.Second, func(p *logsv1alpha1.LogPipeline) bool {
		r, _ := flowReason(p)
		return r == logsv1alpha1.ReasonSinkUnavailable
	})
	_, downMsg := flowReason(p)
	if down {
		s.say("   ✓ FlowHealthy=SinkUnavailable: %s", downMsg)
	}
	s.loki.Recover()
	s.say("   Loki is back")
	p, up := s.await(ctx, 45*time.Second, func(p *logsv1alpha1.LogPipeline) bool {
		r, _ := flowReason(p)
		return r == logsv1alpha1.ReasonHealthy
	})
	r, msg := flowReason(p)
	if !down {
		return Step{Name: "outage", Detail: "FlowHealthy never showed SinkUnavailable; last: " + r + ": " + msg}
	}
	return Step{Name: "outage", Observed: up, Detail: fmt.Sprintf("FlowHealthy=%s again: %s", r, msg)}
}

// newPod creates a pod while the pipeline runs and waits until it is captured.
func (s *story) newPod(ctx context.Context) Step {
	p, _ := s.pipeline(ctx)
	before := workers(p).SelectedContainers
	s.say("▶ 4. a new pod, demo/cart-1, is created")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: "cart-1",
			Labels:      map[string]string{"app": "shop", "version": "v2"},
			Annotations: map[string]string{StyleAnnotation: string(StyleJSON)}},
		Spec: corev1.PodSpec{NodeName: NodeName, Containers: []corev1.Container{{Name: "cart", Image: "demo/cart"}}},
	}
	if err := s.c.Create(ctx, pod); err != nil {
		return Step{Name: "new pod", Detail: fmt.Sprintf("creating the pod failed: %v", err)}
	}
	p, ok := s.await(ctx, 30*time.Second, func(p *logsv1alpha1.LogPipeline) bool {
		return workers(p).SelectedContainers > before
	})
	w := workers(p)
	return Step{Name: "new pod", Observed: ok, Detail: fmt.Sprintf("status.workers: %d selected containers (was %d), %d streaming",
		w.SelectedContainers, before, w.ActiveStreams)}
}
