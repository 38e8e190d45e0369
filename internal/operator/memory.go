package operator

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// DefaultMemoryBudgetWithoutLimit is the queue budget when the container has
// no memory limit to derive it from.
const DefaultMemoryBudgetWithoutLimit = 256 << 20

// cgroupMemoryFiles hold the container's memory limit, cgroup v2 first.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// containerMemoryLimit is the memory limit of the cgroup the process runs
// in, zero when there is none.
func containerMemoryLimit() int64 {
	for _, f := range cgroupMemoryFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 { // cgroup v1 says "no limit" with a huge number
			return 0
		}
		return n
	}
	return 0
}

// memorySettings derives the queue budget and the Go runtime's soft memory
// limit from the container's memory limit: the queues may hold 40% of it
// (records cost about their counted bytes, measured; the rest is the
// informer caches, stream buffers and the garbage collector's headroom) and
// the runtime collects harder from 90% of it on. An explicit budget wins;
// a negative one is unlimited (zero returned). GOMEMLIMIT set in the
// environment wins over the derived soft limit (zero returned then).
func memorySettings(budget, limit int64, envGOMEMLIMIT string) (queueBudget, softLimit int64) {
	switch {
	case budget > 0:
		queueBudget = budget
	case budget < 0:
		queueBudget = 0
	case limit > 0:
		queueBudget = limit * 2 / 5
	default:
		queueBudget = DefaultMemoryBudgetWithoutLimit
	}
	if limit > 0 && envGOMEMLIMIT == "" {
		softLimit = limit / 10 * 9
	}
	return queueBudget, softLimit
}

// applyMemoryLimit sets the Go runtime's soft memory limit when one was
// derived.
func applyMemoryLimit(softLimit int64) {
	if softLimit > 0 {
		debug.SetMemoryLimit(softLimit)
	}
}

// quantityFlag is a flag.Value for a byte quantity ("256Mi"); "auto" or
// empty is zero, and "unlimited" is -1.
type quantityFlag struct{ v *int64 }

func (q quantityFlag) String() string {
	if q.v == nil || *q.v == 0 {
		return "auto"
	}
	if *q.v < 0 {
		return "unlimited"
	}
	return resource.NewQuantity(*q.v, resource.BinarySI).String()
}

func (q quantityFlag) Set(s string) error {
	switch s {
	case "", "auto":
		*q.v = 0
		return nil
	case "unlimited":
		*q.v = -1
		return nil
	}
	v, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("%q is not a byte quantity such as 256Mi, auto or unlimited: %w", s, err)
	}
	if v.Sign() <= 0 {
		return fmt.Errorf("%q must be positive (or auto, or unlimited)", s)
	}
	*q.v = v.Value()
	return nil
}
