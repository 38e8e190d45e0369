package demo

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
)

// lockedWriter lets the table and the story print whole lines side by side.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b) //nolint:wrapcheck // a pass-through
}

// liveTable prints the table every period until ctx ends.
func liveTable(ctx context.Context, c client.Client, out io.Writer, period time.Duration) {
	every(ctx, period, func() { printTable(ctx, c, out) })
}

// printTable prints what each pipeline's status says, read through the API
// as `kubectl get lp` reads it.
func printTable(ctx context.Context, c client.Client, out io.Writer) {
	list := &logsv1alpha1.LogPipelineList{}
	if err := c.List(ctx, list); err != nil {
		return
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tPIPELINE\tREADY\tREASON\tFLOW\tSTREAMS\tLINES/S\tRECONNECTS\tGOROUTINES\tFDS\n", time.Now().Format("15:04:05"))
	for _, p := range list.Items {
		reason := func(t string) (string, string) {
			if c := meta.FindStatusCondition(p.Status.Conditions, t); c != nil {
				return string(c.Status), c.Reason
			}
			return "Unknown", ""
		}
		ready, why := reason(logsv1alpha1.ConditionReady)
		_, flow := reason(logsv1alpha1.ConditionFlowHealthy)
		w := workers(&p)
		fmt.Fprintf(tw, "\t%s/%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", p.Namespace, p.Name, ready, why, flow,
			w.ActiveStreams, w.LinesPerSecond, w.Reconnects, w.Goroutines, w.OpenFileDescriptors)
	}
	_ = tw.Flush()
	_, _ = io.WriteString(out, b.String())
}

// printSummary prints the per-container accounting, the story and the proof line.
func printSummary(out io.Writer, s Summary) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tGENERATED\tDELIVERED\tMISSING\tDUPLICATED")
	generated := 0
	for _, c := range s.File {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", c.Container, c.Generated, c.Delivered, c.Missing, c.Duplicated)
		generated += c.Generated
	}
	fmt.Fprintf(tw, "Loki (all containers)\t%d\t%d\t%d\t%d\n", s.Loki.Generated, s.Loki.Delivered, s.Loki.Missing, s.Loki.Duplicated)
	_ = tw.Flush()
	for _, st := range s.Story {
		mark := "✓"
		if !st.Observed {
			mark = "✗"
		}
		fmt.Fprintf(&b, "%s %s: %s\n", mark, st.Name, st.Detail)
	}
	fmt.Fprintf(&b, "rotations=%d ready=%v goroutines=%d fds=%d output=%s\n", s.Rotations, s.Ready, s.Goroutines, s.OpenFDs, s.RunDir)
	if p := s.Problems(); len(p) > 0 {
		fmt.Fprintf(&b, "FAILED: %s\n", strings.Join(p, "; "))
	} else {
		fmt.Fprintf(&b, "PROOF: all %d lines of this run arrived exactly once at the File sink and at Loki (0 missing, 0 duplicated).\n", generated)
	}
	_, _ = io.WriteString(out, b.String())
}
