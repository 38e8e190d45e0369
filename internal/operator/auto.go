package operator

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/log-capturer/log-capturer/agent/control"
	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/workers"
)

// autoWorkers are the controllers' Workers in auto capture mode: every
// pipeline runs in the API engine, for the pods of the nodes no agent
// serves, and in the Book, for the agents of the others; its numbers are
// the sum of both.
type autoWorkers struct {
	engine *workers.Manager
	agents *control.Workers
}

func (w *autoWorkers) Apply(ctx context.Context, key types.NamespacedName, cfg capture.PipelineConfig) error {
	if err := w.engine.Apply(ctx, key, cfg); err != nil {
		return err //nolint:wrapcheck // Apply names the pipeline
	}
	return w.agents.Apply(ctx, key, cfg)
}

func (w *autoWorkers) Remove(ctx context.Context, key types.NamespacedName) error {
	if err := w.engine.Remove(ctx, key); err != nil {
		return err //nolint:wrapcheck // Remove names the pipeline
	}
	return w.agents.Remove(ctx, key)
}

func (w *autoWorkers) Delete(ctx context.Context, key types.NamespacedName) error {
	if err := w.engine.Delete(ctx, key); err != nil {
		return err //nolint:wrapcheck // Delete names the pipeline
	}
	return w.agents.Delete(ctx, key)
}

// Snapshot sums the API engine's numbers (the containers it reads) and the
// agents' (theirs): the workers run when both sides do.
func (w *autoWorkers) Snapshot(key types.NamespacedName) (capture.Snapshot, bool) {
	api, ok1 := w.engine.Snapshot(key)
	files, ok2 := w.agents.Snapshot(key)
	if !ok1 && !ok2 {
		return capture.Snapshot{}, false
	}
	s := control.Merge(map[string]capture.Snapshot{"api": api, "agents": files})
	s.Running = api.Running && files.Running
	s.HandingOver = api.HandingOver
	s.Agents = files.Agents
	return s, true
}

// SinkStats sums a SinkTarget's numbers of the operator and of the agents.
func (w *autoWorkers) SinkStats(namespace, name string) (capture.SinkStats, bool) {
	api, ok1 := w.engine.SinkStats(namespace, name)
	files, ok2 := w.agents.SinkStats(namespace, name)
	switch {
	case ok1 && ok2:
		return api.PlusOtherBudget(files), true
	case ok2:
		return files, true
	}
	return api, ok1
}

// handOver moves a node between the API engine and its agent as Modes
// sees it turn. To the agent: the engine releases the node's containers
// and the Book sends the agent each pipeline once they are released, with
// their positions. Back to the API: the engine takes the positions of the
// agent's last report (its final one when it stopped in order: exact) and
// reads the node's containers from there.
// Only positions of containers whose pods are on the node are taken: an
// agent speaks for its own node's containers, never another's.
func handOver(engine *workers.Manager, book *control.Book, fleet *control.Fleet, pods control.Pods) func(ctx context.Context, node string, agent bool) {
	return func(ctx context.Context, node string, agent bool) {
		log := ctrl.LoggerFrom(ctx).WithName("handover")
		if agent {
			log.Info("a node agent serves the node: its containers move from the API to the agent", "node", node)
			engine.Resync()
			book.Notify()
			return
		}
		onNode := map[string]bool{}
		podsOn, err := pods.PodsOnNode(ctx, node)
		if err != nil {
			log.Error(err, "listing the node's pods failed; its containers resume from the API engine's own positions", "node", node)
		}
		for i := range podsOn {
			onNode[string(podsOn[i].UID)] = true
		}
		final := true
		for _, key := range book.Keys() {
			pos, fin := fleet.Positions(node, key)
			final = final && (fin || len(pos) == 0)
			engine.Offer(key, ownPositions(pos, onNode))
		}
		log.Info("no node agent serves the node any more: its containers move to the API, from the agent's last positions",
			"node", node, "finalReport", final)
		fleet.ForgetNode(node)
		book.ForgetNode(node)
		engine.Resync()
	}
}

// ownPositions keeps the positions of the containers of the pods in onNode
// (by UID): those the reporting agent read.
func ownPositions(pos []capture.ContainerPosition, onNode map[string]bool) []capture.ContainerPosition {
	var own []capture.ContainerPosition
	for _, cp := range pos {
		if onNode[cp.UID] {
			own = append(own, cp)
		}
	}
	return own
}
