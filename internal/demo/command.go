package demo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// ErrIncomplete is returned when a line generated in the demo was not delivered.
var ErrIncomplete = errors.New("not every generated line was delivered")

// Command runs `log-capturer demo` with its flags until Ctrl-C or --duration.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("bin", "k8s")
	}
	o := Options{Out: stdout}
	fs.DurationVar(&o.Duration, "duration", 0, "Stop by itself after this long and print a summary (0: run until Ctrl-C).")
	fs.StringVar(&o.AssetsDir, "assets", assets, "Directory with kube-apiserver and etcd (make envtest builds them).")
	fs.StringVar(&o.OutputDir, "output", "demo-output", "File sink root: the sample File sink writes under it.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig-out", filepath.Join("bin", "demo.kubeconfig"), "Where to write a kubeconfig for kubectl.")
	fs.DurationVar(&o.Rotation, "rotation", 10*time.Second, "Rotation interval of the sample pipeline in the demo.")
	fs.DurationVar(&o.TableEvery, "table-every", 5*time.Second, "How often to print the live table (0: never).")
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
	if !sum.Complete() {
		return ErrIncomplete
	}
	return nil
}
