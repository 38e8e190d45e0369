// Command log-capturer is the log-capturer operator: it reconciles LogPipeline
// and SinkTarget resources into capture workers that run in the same process.
//
// Usage:
//
//	log-capturer operator [flags]
//	log-capturer agent [flags]
//
// The demo is its own binary (cmd/log-capturer-demo, `make demo`), so that
// neither the simulated node nor the envtest control plane is linked here.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/log-capturer/log-capturer/internal/agent"
	"github.com/log-capturer/log-capturer/internal/operator"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "log-capturer:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errors.New("a subcommand is required")
	}
	switch args[0] {
	case "operator":
		return operator.Command(ctx, args[1:], stderr)
	case "agent":
		return agent.Command(ctx, args[1:], stderr)
	case "demo":
		return errors.New("the demo is its own binary: run `make demo`, or bin/log-capturer-demo after `make build-demo`")
	case "help", "-h", "--help":
		usage(stdout)
		return nil
	default:
		usage(stderr)
		return fmt.Errorf("unknown subcommand %q", args[0])
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `log-capturer captures Kubernetes pod logs into sinks.

Usage:
  log-capturer operator [flags]   run the controllers and capture workers
  log-capturer agent [flags]      run the node agent (one per node, a DaemonSet): read the
                                  kubelet's log files of the node with the operator's configuration
  log-capturer help               show this help

The demo (everything locally on a simulated node) is bin/log-capturer-demo: make demo.

Run "log-capturer operator -h" or "log-capturer agent -h" for their flags.
`)
}
