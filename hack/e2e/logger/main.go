// Command logger is the e2e workload: it writes numbered lines to stdout and
// stderr, so that the far end can tell every line of every container
// instance apart, then says how many it wrote and waits to be stopped.
//
//	<pod> inst=<random> stream=<stdout|stderr> seq=<n> <padding>
//	<pod> inst=<random> done lines=<n>
//
// A SIGTERM while it writes ends the writing the same way, with the number of
// lines written so far, so that a deleted pod's lines can be counted too.
//
// LINES lines are written at RATE lines per second, every fifth to stderr.
// With CRASH_AFTER and MARKER set, the first instance (MARKER, a file in an
// emptyDir, does not exist yet) creates MARKER and exits with status 1 after
// that many lines; the restarted instance runs to the end.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func env(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func main() {
	pod := os.Getenv("POD_NAME")
	lines, rate, crashAfter := env("LINES", 10000), env("RATE", 500), env("CRASH_AFTER", 0)
	marker := os.Getenv("MARKER")
	if crashAfter > 0 && marker != "" {
		if _, err := os.Stat(marker); err == nil {
			crashAfter = 0 // restarted: run to the end
		}
	} else {
		crashAfter = 0
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	inst := hex.EncodeToString(b[:])
	pad := strings.Repeat("x", env("PAD", 100))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	tick := time.Second / time.Duration(max(rate, 1))
	next := time.Now()
	written := 0
	for i := range lines {
		select {
		case <-stop:
			fmt.Fprintf(os.Stdout, "%s inst=%s done lines=%d\n", pod, inst, written)
			return
		default:
		}
		out, name := os.Stdout, "stdout"
		if i%5 == 4 {
			out, name = os.Stderr, "stderr"
		}
		fmt.Fprintf(out, "%s inst=%s stream=%s seq=%d %s\n", pod, inst, name, i, pad)
		if crashAfter > 0 && i+1 == crashAfter {
			_ = os.WriteFile(marker, nil, 0o600)
			os.Exit(1)
		}
		written++
		next = next.Add(tick)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
	}
	fmt.Fprintf(os.Stdout, "%s inst=%s done lines=%d\n", pod, inst, lines)
	<-stop
}
