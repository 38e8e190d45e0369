package workers

import (
	"context"
	"path"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// resync compares the selected containers of the informer cache with the
// pipeline's and adds or retires containers.
func (p *pipeline) resync(ctx context.Context) {
	pods := &corev1.PodList{}
	if err := p.deps.pods.List(ctx, pods, client.InNamespace(p.cfg.Namespace),
		client.MatchingLabelsSelector{Selector: p.selector}); err != nil {
		if ctx.Err() == nil {
			p.log.Error(err, "listing pods")
		}
		return
	}
	first := !p.synced
	p.synced = true
	seen := map[containerKey]bool{}
	seenPods := map[types.UID]bool{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		seenPods[pod.UID] = true
		if pod.Spec.NodeName == "" {
			continue
		}
		if p.deps.elsewhere != nil && p.deps.elsewhere(pod.Spec.NodeName) {
			continue // read by its node's agent: released
		}
		file := p.deps.files != nil && pod.Spec.NodeName == p.deps.files.Node
		if !file && p.deps.source == nil {
			continue // another node's pod, and no API source
		}
		for _, ct := range pod.Spec.Containers {
			if !p.wants(ct.Name) {
				continue
			}
			k := containerKey{uid: pod.UID, name: ct.Name}
			if p.finished[k] {
				continue
			}
			seen[k] = true
			if c, ok := p.containers[k]; ok {
				c.labels = p.recordLabels(pod)
				continue
			}
			c := &container{key: k, namespace: pod.Namespace, pod: pod.Name, name: ct.Name,
				node: pod.Spec.NodeName, labels: p.recordLabels(pod), selected: true, file: file}
			var start Position
			if first && !p.cfg.StartFromBeginning {
				start = Position{Since: time.Now().Truncate(time.Second)}
			}
			c.pos, c.dupUntil, _ = p.tracker.resumeFrom(k, pod.Name, pod.Spec.NodeName, start)
			p.containers[k] = c
			p.enqueue(c, time.Time{})
		}
	}
	for k := range p.finished {
		if !seenPods[k.uid] {
			delete(p.finished, k)
		}
	}
	p.tracker.retain(seen, time.Now())
	for k, c := range p.containers {
		if seen[k] {
			continue
		}
		c.selected = false
		if !c.running {
			p.drop(c, false)
			continue
		}
		// A pod that still exists was deselected: stop now. A deleted
		// pod's stream runs to its end, so that its last lines arrive.
		if c.cancel != nil && seenPods[k.uid] {
			c.cancel()
		}
	}
	p.countSelected()
}

// countSelected publishes how many containers are selected, and how many
// of them are read from files.
func (p *pipeline) countSelected() {
	p.stats.selected.Store(int64(len(p.containers)))
	files := 0
	nodes := map[string]int{}
	for _, c := range p.containers {
		if c.file {
			files++
		}
		nodes[c.node]++
	}
	p.stats.fileContainers.Store(int64(files))
	p.nodesMu.Lock()
	p.nodes = nodes
	p.nodesMu.Unlock()
}

// containersOn is how many of the pipeline's containers (running or due)
// are on node.
func (p *pipeline) containersOn(node string) int {
	p.nodesMu.Lock()
	defer p.nodesMu.Unlock()
	return p.nodes[node]
}

func (p *pipeline) wants(name string) bool {
	if len(p.cfg.Include) > 0 && !matchAny(p.cfg.Include, name) {
		return false
	}
	return !matchAny(p.cfg.Exclude, name)
}

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

func (p *pipeline) recordLabels(pod *corev1.Pod) map[string]string {
	if len(p.cfg.PodLabels) == 0 {
		return nil
	}
	out := make(map[string]string, len(p.cfg.PodLabels))
	for _, k := range p.cfg.PodLabels {
		if v, ok := pod.Labels[k]; ok {
			out[k] = v
		}
	}
	return out
}

// podOf returns the container's pod instance from the cache, or false when
// that instance is gone.
func (p *pipeline) podOf(ctx context.Context, c *container) (*corev1.Pod, bool) {
	pod := &corev1.Pod{}
	if err := p.deps.pods.Get(ctx, client.ObjectKey{Namespace: c.namespace, Name: c.pod}, pod); err != nil {
		return nil, false
	}
	return pod, pod.UID == c.key.uid
}

// containerExists tells whether the container's pod instance is still in the cache.
func (p *pipeline) containerExists(ctx context.Context, c *container) bool {
	_, ok := p.podOf(ctx, c)
	return ok
}

// containerFinished tells whether a stream that ended at EOF will never
// have more lines: the pod is gone, or the container terminated for good.
func (p *pipeline) containerFinished(ctx context.Context, c *container) bool {
	pod, ok := p.podOf(ctx, c)
	if !ok {
		return true
	}
	if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		return false
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == c.name {
			return s.State.Terminated != nil
		}
	}
	return false
}
