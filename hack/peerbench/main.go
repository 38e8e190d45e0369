// Command peerbench reads the same CRI corpus with log-capturer's CRI file
// follower and with the OpenTelemetry Collector's filelog receiver, one
// after the other in one run, and prints records/s, CPU-seconds per GiB,
// peak RSS and their ratios (`make bench-peer`). Each side runs as its own
// process, measured from outside the same way: wall time until every
// record of the corpus's manifest was delivered to a null sink, utime +
// stime, VmHWM.
//
//	peerbench -work bin/peerbench -otelcol bin/otelcol-peer-v0.165.0
//	peerbench follow DIR   (the log-capturer side, run by the above)
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/log-capturer/log-capturer/capture/crifile"
)

type manifest struct {
	Total struct {
		Bytes    int64 `json:"bytes"`
		Records  int64 `json:"records"`
		MsgBytes int64 `json:"message_bytes"`
	} `json:"total"`
	Files []struct {
		Path string `json:"path"`
	} `json:"files"`
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "follow" {
		if err := follow(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "peerbench follow:", err)
			os.Exit(1)
		}
		return
	}
	work := flag.String("work", "bin/peerbench", "working directory (corpus, collector state)")
	otelcol := flag.String("otelcol", "", "the OpenTelemetry Collector binary built from hack/peerbench/otelcol-builder.yaml")
	config := flag.String("config", "hack/peerbench/otelcol-null.yaml", "the collector's configuration")
	flag.Parse()
	if err := run(*work, *otelcol, *config); err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
}

// result is one side's measurement.
type result struct {
	name    string
	wall    time.Duration
	cpu     time.Duration
	rssKiB  int64
	records int64
}

func run(work, otelcol, config string) error {
	corpus := filepath.Join(work, "pods")
	m, err := readManifest(corpus)
	if err != nil {
		return fmt.Errorf("the corpus (make bench-peer generates it): %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding myself: %w", err)
	}
	ours, err := measure("log-capturer crifile", exec.Command(self, "follow", corpus), nil, m.Total.Records)
	if err != nil {
		return err
	}
	peer, err := runCollector(work, otelcol, config, corpus, m.Total.Records)
	if err != nil {
		return err
	}
	gib := float64(m.Total.Bytes) / (1 << 30)
	fmt.Printf("corpus: %d files, %d records, %.1f MiB\n", len(m.Files), m.Total.Records, float64(m.Total.Bytes)/(1<<20))
	fmt.Printf("%-24s %12s %10s %12s %10s\n", "tool", "records/s", "MiB/s", "CPU-s/GiB", "RSS MiB")
	for _, r := range []result{ours, peer} {
		fmt.Printf("%-24s %12.0f %10.1f %12.2f %10.1f\n", r.name, float64(r.records)/r.wall.Seconds(),
			float64(m.Total.Bytes)/(1<<20)/r.wall.Seconds(), r.cpu.Seconds()/gib, float64(r.rssKiB)/1024)
	}
	fmt.Printf("ratio (log-capturer / collector): records/s %.2fx, CPU per GiB %.2fx, RSS %.2fx\n",
		peer.wall.Seconds()/ours.wall.Seconds(), ours.cpu.Seconds()/peer.cpu.Seconds(), float64(ours.rssKiB)/float64(peer.rssKiB))
	return nil
}

func readManifest(dir string) (manifest, error) {
	var m manifest
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return m, fmt.Errorf("reading the manifest: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("reading the manifest: %w", err)
	}
	return m, nil
}

// measure runs cmd until done reports every record delivered (or, when done
// is nil, until cmd exits having printed "records N"), and reads its CPU
// time and peak RSS from /proc before it is gone.
func measure(name string, cmd *exec.Cmd, done func() (int64, error), want int64) (result, error) {
	r := result{name: name}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return r, fmt.Errorf("%s: %w", name, err)
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	var stdin io.WriteCloser
	if done == nil {
		// Kept open until it is measured: our side waits for it to close.
		if stdin, err = cmd.StdinPipe(); err != nil {
			return r, fmt.Errorf("%s: %w", name, err)
		}
		defer stdin.Close()
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("starting %s: %w", name, err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if done == nil {
		// Our side: it reads everything, prints its count and its own
		// numbers, then waits for its stdin to close.
		sc := bufio.NewScanner(out)
		if !sc.Scan() {
			return r, fmt.Errorf("%s printed nothing", name)
		}
		r.wall = time.Since(start)
		f := strings.Fields(sc.Text())
		if len(f) != 2 || f[0] != "records" {
			return r, fmt.Errorf("%s printed %q", name, sc.Text())
		}
		r.records, _ = strconv.ParseInt(f[1], 10, 64)
	} else {
		go func() { _, _ = io.Copy(io.Discard, out) }()
		deadline := time.Now().Add(10 * time.Minute)
		for {
			n, err := done()
			if err == nil && n >= want {
				r.wall, r.records = time.Since(start), n
				break
			}
			if time.Now().After(deadline) {
				if err == nil {
					err = errors.New("it stopped short")
				}
				return r, fmt.Errorf("%s delivered %d of %d records in 10 minutes: %w", name, n, want, err)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	cpu, rss, err := procStats(cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	r.cpu, r.rssKiB = cpu, rss
	if r.records != want {
		return r, fmt.Errorf("%s delivered %d records, the corpus has %d", name, r.records, want)
	}
	return r, nil
}

// procStats reads a process's utime+stime and VmHWM.
func procStats(pid int) (time.Duration, int64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("reading /proc/%d/stat: %w", pid, err)
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th of the whole line.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	cpu := time.Duration(ut+st) * time.Second / hz
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("reading /proc/%d/status: %w", pid, err)
	}
	var rss int64
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			rss, _ = strconv.ParseInt(strings.Fields(l)[1], 10, 64)
		}
	}
	return cpu, rss, nil
}

// runCollector runs the OpenTelemetry Collector on the corpus and counts
// the records its batch processor sent on, from its own metrics.
func runCollector(work, otelcol, config, corpus string, want int64) (result, error) {
	if otelcol == "" {
		return result{}, errors.New("-otelcol is required")
	}
	state := filepath.Join(work, "run")
	_ = os.RemoveAll(state)
	if err := os.MkdirAll(filepath.Join(state, "otel-storage"), 0o755); err != nil {
		return result{}, fmt.Errorf("creating %s: %w", state, err)
	}
	tmpl, err := os.ReadFile(config)
	if err != nil {
		return result{}, fmt.Errorf("reading %s: %w", config, err)
	}
	cfgPath := filepath.Join(state, "otelcol.yaml")
	abs, _ := filepath.Abs(work)
	if err := os.WriteFile(cfgPath, []byte(strings.ReplaceAll(string(tmpl), "@PEERS@", abs)), 0o644); err != nil {
		return result{}, fmt.Errorf("writing %s: %w", cfgPath, err)
	}
	cmd := exec.Command(otelcol, "--config", cfgPath)
	logFile, err := os.Create(filepath.Join(state, "otelcol.log"))
	if err != nil {
		return result{}, fmt.Errorf("creating the collector's log: %w", err)
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	absCorpus, _ := filepath.Abs(corpus)
	cmd.Env = append(os.Environ(), "OTEL_INCLUDE="+filepath.Join(absCorpus, "*", "*", "*.log"))
	return measure("OpenTelemetry Collector", cmd, collectorSent, want)
}

// collectorSent reads the records the batch processor sent from the
// collector's Prometheus endpoint.
func collectorSent() (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:8888/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scraping the collector: %w", err)
	}
	defer resp.Body.Close()
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "otelcol_processor_batch_batch_send_size_sum") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return int64(total), nil
}

// follow is the log-capturer side: every file of the corpus read by a
// follower, two at a time (the machine's cores), records counted and their
// bytes summed into a null sink; then it prints "records N", checks the
// message bytes against the manifest and waits to be measured and killed.
func follow(dir string) error {
	m, err := readManifest(dir)
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*", "*", "0.log"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRI files under %s", dir)
	}
	var (
		records, msgBytes atomic.Int64
		wg                sync.WaitGroup
		firstErr          atomic.Value
	)
	next := make(chan string)
	for range 2 {
		wg.Go(func() {
			for path := range next {
				f, _, err := crifile.Open(filepath.Dir(path), "0.log", crifile.Position{}, crifile.Options{MaxRecordBytes: 1 << 20})
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				var n, b int64
				for {
					e, _, err := f.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						break
					}
					n++
					b += int64(len(e.Line))
				}
				_ = f.Close()
				records.Add(n)
				msgBytes.Add(b)
			}
		})
	}
	for _, f := range files {
		next <- f
	}
	close(next)
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	if msgBytes.Load() != m.Total.MsgBytes {
		return fmt.Errorf("%d message bytes read, the manifest says %d: not byte-exact", msgBytes.Load(), m.Total.MsgBytes)
	}
	fmt.Printf("records %d\n", records.Load())
	_, _ = io.Copy(io.Discard, os.Stdin) // measured, then killed
	return nil
}
