package controllers

import (
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/log-capturer/log-capturer/controllers/internal/fairqueue"
)

// namespaceFairQueue is a controller.Options.NewQueue that hands out
// requests round-robin between namespaces, FIFO within one, so that a
// namespace churning many objects cannot delay another namespace's
// reconciles. Deduplication, delays, rate limiting by rl and the workqueue
// metrics named controllerName stay client-go's. Setting it replaces
// controller-runtime's default priority queue, so request priorities
// (low priority for the initial list and resyncs, Result.Priority) are not
// applied.
func namespaceFairQueue(controllerName string, rl workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
	return fairqueue.NewRateLimitingQueue(controllerName, func(r reconcile.Request) string { return r.Namespace }, rl)
}
