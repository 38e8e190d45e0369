package demo

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Command runs `log-capturer demo` with its flags until Ctrl-C or --duration.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("bin", "k8s")
	}
	o := Options{Out: stdout}
	fs.DurationVar(&o.Duration, "duration", 0, "How long lines flow before the run checks them and stops (0: until Ctrl-C; the story takes about 30s).")
	fs.StringVar(&o.AssetsDir, "assets", assets, "Directory with kube-apiserver and etcd (make envtest builds them).")
	fs.StringVar(&o.OutputDir, "output", "demo-output", "Where runs write: each run's File sink output is in a run-<time> directory of its own (the last 5 are kept).")
	fs.StringVar(&o.Kubeconfig, "kubeconfig-out", filepath.Join("bin", "demo.kubeconfig"), "Where to write a kubeconfig for kubectl.")
	fs.DurationVar(&o.Rotation, "rotation", 10*time.Second, "Rotation interval of the sample pipeline in the demo.")
	fs.DurationVar(&o.TableEvery, "table-every", 5*time.Second, "How often to print the live table (0: never).")
	fs.BoolVar(&o.Quiet, "quiet", false, "Print only the summary: no live table, no story narration (for CI).")
	verbose := fs.Bool("v", false, "Log the operator's messages to stderr.")
	if err := fs.Parse(args); err != nil {
		return err //nolint:wrapcheck // flag errors are already user-facing
	}
	if *verbose {
		ctrl.SetLogger(zap.New(zap.WriteTo(stderr)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	}
	abs, err := filepath.Abs(o.OutputDir)
	if err != nil {
		return fmt.Errorf("resolving --output: %w", err)
	}
	o.OutputDir = abs
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := Run(ctx, o)
	if err != nil {
		return err
	}
	return check(sum)
}

// check is the run's verdict: nil when every line of the run arrived exactly
// once, else ErrIncomplete naming each container and count.
func check(sum Summary) error {
	if p := sum.Problems(); len(p) > 0 {
		return fmt.Errorf("%w: %s", ErrIncomplete, strings.Join(p, "; "))
	}
	return nil
}
