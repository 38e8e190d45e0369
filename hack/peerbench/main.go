// Command peerbench reads the same CRI corpus with log-capturer and with the
// OpenTelemetry Collector's filelog receiver, one after the other in one
// run, and prints records/s, CPU-seconds per GiB, peak RSS, the ratios and
// issue 14's goals (`make bench-peer`). Each side runs as its own process,
// measured from outside the same way: wall time until every record of the
// corpus's manifest was delivered, utime + stime, VmHWM.
//
// Our sides are the bare CRI file follower (capture/crifile) into a null
// sink, and the capture engine (capture/workers reading the kubelet's
// files, one pipeline per namespace) into a null sink, the product's File
// sink and its Loki sink to an in-process Loki receiver. The collector's
// are filelog → batch → nop and → file.
//
//	peerbench -work bin/peerbench -state bin/peerbench-state -otelcol bin/otelcol-peer-v0.165.0
//	peerbench follow DIR                  (the follower's side, run by the above)
//	peerbench engine -sink null|file|loki [-cpuprofile FILE] DIR   (the engine's)
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
		Path     string `json:"path"`
		Records  int64  `json:"records"`
		MsgBytes int64  `json:"message_bytes"`
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
	if len(os.Args) > 1 && os.Args[1] == "engine" {
		if err := engine(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "peerbench engine:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.StringVar(&o.work, "work", "bin/peerbench", "the directory holding the corpus (pods/)")
	flag.StringVar(&o.state, "state", "", "the collector's working directory (its storage and the file exporter's output); -work when empty")
	flag.StringVar(&o.otelcol, "otelcol", "", "the OpenTelemetry Collector binary built from hack/peerbench/otelcol-builder.yaml")
	flag.StringVar(&o.configNull, "config-null", "hack/peerbench/otelcol-null.yaml", "the collector's configuration with the nop exporter")
	flag.StringVar(&o.configFile, "config-file", "hack/peerbench/otelcol-file.yaml", "the collector's configuration with the file exporter")
	sides := flag.String("sides", strings.Join(allSides, ","), "the sides to run, comma-separated")
	flag.Parse()
	o.sides = strings.Split(*sides, ",")
	for _, s := range o.sides {
		if !slices.Contains(allSides, s) {
			fmt.Fprintf(os.Stderr, "peerbench: unknown side %q (%s)\n", s, strings.Join(allSides, ", "))
			os.Exit(2)
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
}

type options struct {
	work, state, otelcol, configNull, configFile string
	sides                                        []string
}

// The sides, in the order they run: each of ours next to the collector's
// with the same kind of sink, so that a change of the machine's load
// between them is less likely.
const (
	sideFollow     = "follow"
	sideEngineNull = "engine-null"
	sideOtelNull   = "otelcol-null"
	sideEngineFile = "engine-file"
	sideOtelFile   = "otelcol-file"
	sideEngineLoki = "engine-loki"
)

var allSides = []string{sideFollow, sideEngineNull, sideOtelNull, sideEngineFile, sideOtelFile, sideEngineLoki}

var sideNames = map[string]string{
	sideFollow:     "follower alone → null",
	sideEngineNull: "engine → null",
	sideEngineFile: "engine → File (raw)",
	sideEngineLoki: "engine → Loki receiver",
	sideOtelNull:   "collector → nop",
	sideOtelFile:   "collector → file",
}

// result is one side's measurement.
type result struct {
	name    string
	wall    time.Duration
	cpu     time.Duration
	rssKiB  int64
	records int64
	// others is the CPU time the rest of the machine used meanwhile.
	others time.Duration
	// corpusBytes is what the side read.
	corpusBytes int64
	err         error
}

func (r result) perSecond() float64 { return float64(r.records) / r.wall.Seconds() }

func (r result) cpuPerGiB() float64 { return r.cpu.Seconds() / (float64(r.corpusBytes) / (1 << 30)) }

func run(o options) error {
	corpus := filepath.Join(o.work, "pods")
	m, err := readManifest(corpus)
	if err != nil {
		return fmt.Errorf("the corpus (make bench-peer generates it): %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding myself: %w", err)
	}
	state := o.state
	if state == "" {
		state = o.work
	}
	results := map[string]result{}
	for _, side := range o.sides {
		// What the side before wrote goes to disk now, not during this
		// side (the kernel's writeback would count against it).
		syscall.Sync()
		var r result
		switch side {
		case sideFollow:
			r, err = measure(exec.Command(self, "follow", corpus), nil, m.Total.Records)
		case sideEngineNull, sideEngineFile, sideEngineLoki:
			r, err = measure(exec.Command(self, "engine", "-sink", strings.TrimPrefix(side, "engine-"), corpus), nil, m.Total.Records)
		case sideOtelNull:
			r, err = runCollector(state, o.otelcol, o.configNull, corpus, "otelcol_processor_batch_batch_send_size_sum", m.Total.Records)
		case sideOtelFile:
			r, err = runCollector(state, o.otelcol, o.configFile, corpus, "otelcol_exporter_sent_log_records", m.Total.Records)
		}
		r.name, r.err, r.corpusBytes = sideNames[side], err, m.Total.Bytes
		if err != nil {
			fmt.Fprintf(os.Stderr, "peerbench: %s: %v\n", r.name, err)
		}
		results[side] = r
	}
	printTable(m, o.sides, results)
	printGoals(results)
	return nil
}

func printTable(m manifest, sides []string, results map[string]result) {
	mib := float64(m.Total.Bytes) / (1 << 20)
	fmt.Printf("corpus: %d files, %d records, %d message bytes, %.1f MiB; %s\n", len(m.Files), m.Total.Records,
		m.Total.MsgBytes, mib, time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("%-26s %12s %9s %10s %8s %7s %8s\n", "side", "records/s", "MiB/s", "CPU-s/GiB", "RSS MiB", "wall s", "others")
	for _, s := range sides {
		r := results[s]
		if r.err != nil {
			fmt.Printf("%-26s failed: %v\n", r.name, r.err)
			continue
		}
		fmt.Printf("%-26s %12.0f %9.1f %10.2f %8.1f %7.2f %7.2fs\n", r.name, r.perSecond(), mib/r.wall.Seconds(),
			r.cpuPerGiB(), float64(r.rssKiB)/1024, r.wall.Seconds(), r.others.Seconds())
	}
	fmt.Println(`("others": CPU-seconds the rest of the machine used during the side. Our sides are checked byte-exact against the manifest; the collector trims trailing whitespace.)`)
	if r, ran := results[sideEngineLoki]; ran && r.err == nil {
		fmt.Println("(engine → Loki receiver: its CPU and RSS include the in-process receiver, which decodes and checks every push and counts its entries per namespace.)")
	}
}

// goal is one of issue 14's goals: a measured value against a target.
type goal struct {
	what    string
	value   float64
	unit    string
	target  float64
	atLeast bool
	missing string // why it was not measured
}

func printGoals(results map[string]result) {
	ok := func(sides ...string) string {
		for _, s := range sides {
			r, ran := results[s]
			switch {
			case !ran:
				return sideNames[s] + " not run"
			case r.err != nil:
				return sideNames[s] + " failed"
			}
		}
		return ""
	}
	var goals []goal
	g := goal{what: "engine → null records/s ÷ collector → nop", unit: "×", target: 2, atLeast: true,
		missing: ok(sideEngineNull, sideOtelNull)}
	if g.missing == "" {
		g.value = results[sideEngineNull].perSecond() / results[sideOtelNull].perSecond()
	}
	goals = append(goals, g)
	g = goal{what: "engine → null CPU-s per GiB", unit: " CPU-s/GiB", target: 2, missing: ok(sideEngineNull)}
	if g.missing == "" {
		g.value = results[sideEngineNull].cpuPerGiB()
	}
	goals = append(goals, g)
	g = goal{what: "engine → null peak RSS", unit: " MiB", target: 128, missing: ok(sideEngineNull)}
	if g.missing == "" {
		g.value = float64(results[sideEngineNull].rssKiB) / 1024
	}
	goals = append(goals, g)
	g = goal{what: "engine → File records/s ÷ collector → file", unit: "×", target: 3, atLeast: true,
		missing: ok(sideEngineFile, sideOtelFile)}
	if g.missing == "" {
		g.value = results[sideEngineFile].perSecond() / results[sideOtelFile].perSecond()
	}
	goals = append(goals, g)
	g = goal{what: "engine → Loki receiver lines/s", unit: " lines/s", target: 300000, atLeast: true, missing: ok(sideEngineLoki)}
	if g.missing == "" {
		g.value = results[sideEngineLoki].perSecond()
	}
	goals = append(goals, g)

	fmt.Println("goals (issue 14):")
	for _, g := range goals {
		cmp := "≤"
		if g.atLeast {
			cmp = "≥"
		}
		target := fmt.Sprintf("%s %s%s", cmp, num(g.target), g.unit)
		if g.missing != "" {
			fmt.Printf("  %-44s %-18s %-22s NOT MEASURED (%s)\n", g.what, "–", target, g.missing)
			continue
		}
		verdict := "PASS"
		if pass := g.value >= g.target; g.atLeast && !pass {
			verdict = fmt.Sprintf("MISS: %s%s short (%.0f%% of the goal)", num(g.target-g.value), g.unit, 100*g.value/g.target)
		} else if !g.atLeast && g.value > g.target {
			verdict = fmt.Sprintf("MISS: %s%s over (%.0f%% of the limit)", num(g.value-g.target), g.unit, 100*g.value/g.target)
		}
		fmt.Printf("  %-44s %-18s %-22s %s\n", g.what, num(g.value)+g.unit, target, verdict)
	}
}

// num prints a goal's number: thousands without decimals, small ones with two.
func num(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
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
// is nil, until cmd prints "records N" having delivered and checked them),
// and reads its CPU time and peak RSS from /proc before it is gone, and
// how much CPU the rest of the machine used meanwhile.
func measure(cmd *exec.Cmd, done func() (int64, error), want int64) (result, error) {
	var r result
	out, err := cmd.StdoutPipe()
	if err != nil {
		return r, err //nolint:wrapcheck // the caller names the side
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	var stdin io.WriteCloser
	if done == nil {
		// Kept open until it is measured: our side waits for it to close.
		if stdin, err = cmd.StdinPipe(); err != nil {
			return r, err //nolint:wrapcheck // the caller names the side
		}
	}
	busy0, err := machineBusy()
	if err != nil {
		return r, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("starting it: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if stdin != nil {
			// Our side cleans up (the File sink's output) once its stdin
			// closes, and exits.
			_ = stdin.Close()
			select {
			case err := <-exited:
				exited <- err
			case <-time.After(30 * time.Second):
			}
		}
		_ = cmd.Process.Kill()
		<-exited //nolint:errcheck // killed: its exit status says only that
	}()
	if done == nil {
		// Our side: it reads everything, checks it, prints its count, then
		// waits for its stdin to close.
		sc := bufio.NewScanner(out)
		if !sc.Scan() {
			return r, errors.New("it printed nothing")
		}
		r.wall = time.Since(start)
		f := strings.Fields(sc.Text())
		if len(f) != 2 || f[0] != "records" {
			return r, fmt.Errorf("it printed %q", sc.Text())
		}
		r.records, _ = strconv.ParseInt(f[1], 10, 64)
	} else {
		go func() { _, _ = io.Copy(io.Discard, out) }()
		// It fails when a minute passes without progress (a metric that
		// never appears, a stuck exporter).
		var last int64
		progress := time.Now()
		for {
			select {
			case err := <-exited:
				exited <- err // for the deferred wait
				return r, fmt.Errorf("it exited before it delivered every record: %w", err)
			default:
			}
			n, err := done()
			if err == nil && n >= want {
				r.wall, r.records = time.Since(start), n
				break
			}
			if n != last {
				last, progress = n, time.Now()
			}
			if time.Since(progress) > time.Minute {
				if err == nil {
					err = errors.New("it stopped short")
				}
				return r, fmt.Errorf("it delivered %d of %d records, none for a minute: %w", n, want, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	cpu, rss, err := procStats(cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	busy1, err := machineBusy()
	if err != nil {
		return r, err
	}
	r.cpu, r.rssKiB, r.others = cpu, rss, max(busy1-busy0-cpu, 0)
	if r.records != want {
		return r, fmt.Errorf("it delivered %d records, the corpus has %d", r.records, want)
	}
	return r, nil
}

// machineBusy is the CPU time all of the machine's CPUs spent busy since
// boot (user, nice, system, irq, softirq, steal), from /proc/stat.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("reading /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat begins %q", line)
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

const userHZ = 100 // USER_HZ on Linux

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
	cpu := time.Duration(ut+st) * time.Second / userHZ
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
// the records it delivered from one of its own metrics (summed over its
// series).
func runCollector(state, otelcol, config, corpus, metric string, want int64) (result, error) {
	if otelcol == "" {
		return result{}, errors.New("-otelcol is required")
	}
	run, out := filepath.Join(state, "run"), filepath.Join(state, "out")
	_ = os.RemoveAll(run)
	_ = os.RemoveAll(out)
	defer os.RemoveAll(out) // the file exporter's output: as large as the corpus
	for _, d := range []string{filepath.Join(run, "otel-storage"), out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return result{}, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	tmpl, err := os.ReadFile(config)
	if err != nil {
		return result{}, fmt.Errorf("reading %s: %w", config, err)
	}
	cfgPath := filepath.Join(run, "otelcol.yaml")
	abs, err := filepath.Abs(state)
	if err != nil {
		return result{}, fmt.Errorf("resolving %s: %w", state, err)
	}
	if err := os.WriteFile(cfgPath, []byte(strings.ReplaceAll(string(tmpl), "@PEERS@", abs)), 0o644); err != nil {
		return result{}, fmt.Errorf("writing %s: %w", cfgPath, err)
	}
	if c, err := collectorSent(metric); err == nil {
		return result{}, fmt.Errorf("something already answers on the collector's metrics port (%d records): another collector?", c)
	}
	cmd := exec.Command(otelcol, "--config", cfgPath)
	logFile, err := os.Create(filepath.Join(run, "otelcol.log"))
	if err != nil {
		return result{}, fmt.Errorf("creating the collector's log: %w", err)
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	absCorpus, _ := filepath.Abs(corpus)
	cmd.Env = append(os.Environ(), "OTEL_INCLUDE="+filepath.Join(absCorpus, "*", "*", "*.log"))
	return measure(cmd, func() (int64, error) { return collectorSent(metric) }, want)
}

// collectorSent reads a counter of records from the collector's Prometheus
// endpoint.
func collectorSent(metric string) (int64, error) {
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
		f := strings.Fields(l)
		if len(f) < 2 || strings.HasPrefix(l, "#") {
			continue
		}
		if name, _, _ := strings.Cut(f[0], "{"); name == metric || name == metric+"_total" {
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
