package control

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/log-capturer/log-capturer/capture"
)

func agentPodOn(name, node, sa string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "agents", Name: name},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: sa}}
}

func TestModes(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	done := agentPodOn("done", "node-c", "agent")
	done.Status.Phase = corev1.PodSucceeded
	pods := fake.NewClientBuilder().WithObjects(
		agentPodOn("a-1", "node-a", "agent"),
		agentPodOn("b-1", "node-b", "agent"),
		agentPodOn("other", "node-d", "someone-else"), // not the agents' identity
		done,
	).Build()
	m := &Modes{Pods: pods, Namespace: "agents", ServiceAccount: "agent", HandBackAfter: 10 * time.Second, Now: func() time.Time { return now }}

	if !m.Serves("node-a") || !m.Serves("node-b") || m.Serves("node-c") || m.Serves("node-d") {
		t.Fatalf("at start agents serve %v, want node-a and node-b", m.Nodes())
	}
	look := func() map[string]bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.computeLocked(ctx)
	}
	if d := look(); len(d) != 0 {
		t.Errorf("nothing changed, yet %v turned", d)
	}
	// node-b's agent pod goes: the node stays with it for HandBackAfter
	// (the DaemonSet recreates it meanwhile, or not).
	if err := pods.Delete(ctx, agentPodOn("b-1", "node-b", "agent")); err != nil {
		t.Fatal(err)
	}
	now = now.Add(9 * time.Second)
	if d := look(); len(d) != 0 || !m.Serves("node-b") {
		t.Errorf("within HandBackAfter node-b turned: %v", d)
	}
	now = now.Add(2 * time.Second)
	if d := look(); !cmp.Equal(d, map[string]bool{"node-b": false}) || m.Serves("node-b") {
		t.Errorf("after HandBackAfter: turned %v, serves node-b %v; want node-b back to the API", d, m.Serves("node-b"))
	}
	// An agent pod comes to node-e.
	if err := pods.Create(ctx, agentPodOn("e-1", "node-e", "agent")); err != nil {
		t.Fatal(err)
	}
	if d := look(); !cmp.Equal(d, map[string]bool{"node-e": true}) {
		t.Errorf("a new agent pod: turned %v, want node-e to its agent", d)
	}
	if got := m.Nodes(); !cmp.Equal(got, []string{"node-a", "node-e"}) {
		t.Errorf("Nodes() = %v", got)
	}
}

// handover is a Handover that releases what is in released.
type handover map[string][]capture.ContainerPosition

func (h handover) Handed(key types.NamespacedName, node string) ([]capture.ContainerPosition, bool) {
	p, ok := h[node+"/"+key.String()]
	return p, ok
}

type podsOn map[string][]corev1.Pod

func (p podsOn) PodsOnNode(_ context.Context, node string) ([]corev1.Pod, error) { return p[node], nil }

func TestBookInAutoMode(t *testing.T) {
	ctx := context.Background()
	key := types.NamespacedName{Namespace: "shop", Name: "web"}
	pods := podsOn{}
	for _, n := range []string{"node-a", "node-b"} {
		pods[n] = []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-" + n, UID: types.UID("uid-" + n), Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{NodeName: n}}}
	}
	h := handover{}
	serves := map[string]bool{"node-a": true}
	b := NewBook()
	b.Serves, b.Handover = func(n string) bool { return serves[n] }, h
	b.Apply(key, capture.PipelineConfig{Namespace: "shop", Name: "web", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}})

	forNode := func(n string) NodeConfig {
		t.Helper()
		nc, _, err := b.ForNode(ctx, pods, n)
		if err != nil {
			t.Fatal(err)
		}
		return nc
	}
	if nc := forNode("node-b"); len(nc.Pipelines) != 0 || len(nc.Pending) != 0 {
		t.Errorf("a node no agent serves got %d pipelines, %v pending", len(nc.Pipelines), nc.Pending)
	}
	nc := forNode("node-a")
	if len(nc.Pipelines) != 0 || !cmp.Equal(nc.Pending, []string{"shop/web"}) {
		t.Fatalf("before the API released node-a: %d pipelines, pending %v; want shop/web pending", len(nc.Pipelines), nc.Pending)
	}
	pending := nc.Revision
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	mine := capture.ContainerPosition{UID: "uid-node-a", Container: "main", Pod: "web-node-a", Since: at, Count: 7}
	// The engine's positions loaded from its store name no node: another
	// node's container is among them, and is not this agent's to hear of.
	h["node-a/shop/web"] = []capture.ContainerPosition{mine, {UID: "uid-node-b", Container: "main", Pod: "web-node-b", Since: at, Count: 9}}
	nc = forNode("node-a")
	if len(nc.Pipelines) != 1 || len(nc.Pending) != 0 || nc.Revision == pending {
		t.Fatalf("after the release: %d pipelines, pending %v, revision %s (was %s)", len(nc.Pipelines), nc.Pending, nc.Revision, pending)
	}
	if d := cmp.Diff([]capture.ContainerPosition{mine}, nc.Pipelines[0].Resume); d != "" {
		t.Errorf("the pipeline's Resume (-want +got):\n%s", d)
	}
	// The Book keeps what was released: the engine's later answers (it
	// prunes gone containers) do not change the agent's configuration.
	delete(h, "node-a/shop/web")
	if again := forNode("node-a"); again.Revision != nc.Revision {
		t.Error("the configuration changed after the engine forgot the released positions")
	}
	// Back to the API and again to the agent: a new release is awaited.
	b.ForgetNode("node-a")
	if nc := forNode("node-a"); len(nc.Pending) != 1 {
		t.Errorf("after ForgetNode the pipeline is not pending again: %+v", nc)
	}
}
