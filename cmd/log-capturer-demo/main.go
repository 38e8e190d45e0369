// Command log-capturer-demo runs log-capturer end to end on one machine: a
// source-built control plane, the operator, a simulated node and the sample
// pipeline (`make demo`). It is a binary of its own so that the operator's
// binary and image link neither envtest nor the simulated node.
//
// Usage:
//
//	log-capturer-demo [flags]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/log-capturer/log-capturer/internal/demo"
)

func main() {
	if err := demo.Command(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "log-capturer-demo:", err)
		}
		os.Exit(2)
	}
}
