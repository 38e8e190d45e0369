package agent_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/internal/operator"
	"github.com/log-capturer/log-capturer/test/builders"
	"github.com/log-capturer/log-capturer/test/envtestutil"
	"github.com/log-capturer/log-capturer/test/kubeletsim"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

// The agent bench: a steady load of benchRate bytes a second over
// benchContainers containers, read once by the operator's API streams and
// once by the node agent from the files, each the real binary in its own
// process, measured over benchWindow after benchWarmup.
const (
	benchContainers = 20
	benchLineBytes  = 250
	benchRate       = 10_000_000 // bytes a second, all containers
	benchWarmup     = 10 * time.Second
	benchWindow     = 30 * time.Second
	benchRotateAt   = 10 << 20
)

// usage is a process's CPU time and memory, from /proc.
type usage struct {
	cpu      time.Duration
	rss, hwm int64
}

func procUsage(pid int) (usage, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, err
	}
	// After the command's closing parenthesis: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	u := usage{cpu: time.Duration(ut+st) * 10 * time.Millisecond} // USER_HZ is 100 on Linux
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, err
	}
	for _, l := range strings.Split(string(s), "\n") {
		kb := func() int64 {
			v, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return v << 10
		}
		switch {
		case strings.HasPrefix(l, "VmRSS:"):
			u.rss = kb()
		case strings.HasPrefix(l, "VmHWM:"):
			u.hwm = kb()
		}
	}
	return u, nil
}

// apiServerPID is the envtest kube-apiserver this process started.
func apiServerPID() int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if !strings.Contains(string(cmd), "kube-apiserver") || len(stat) == 0 {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		if ppid, _ := strconv.Atoi(f[1]); ppid == os.Getpid() {
			return pid
		}
	}
	return 0
}

// benchLine is one line of benchLineBytes with its CRI prefix for container i.
func benchLine(i, n int) string {
	s := fmt.Sprintf("bench container %02d line %09d ", i, n)
	return s + strings.Repeat("x", benchLineBytes-len(s))
}

// steady calls write(tick) every 100 ms until ctx ends, for benchRate.
func steady(ctx context.Context, write func(perContainer int, now time.Time)) *sync.WaitGroup {
	perTick := benchRate / benchLineBytes / benchContainers / 10
	wg := &sync.WaitGroup{}
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				write(perTick, now)
			}
		}
	})
	return wg
}

// measured is one side's numbers over the window.
type measured struct {
	proc, api usage
	lines     int64
	wall      time.Duration
}

func (m measured) cores() float64 { return m.proc.cpu.Seconds() / m.wall.Seconds() }
func (m measured) cpuPerMillion() float64 {
	if m.lines == 0 {
		return 0
	}
	return m.proc.cpu.Seconds() / (float64(m.lines) / 1e6)
}

// measure samples pid and the API server over the window after the warmup.
func measure(pid int, delivered func() int64) measured {
	time.Sleep(benchWarmup)
	api := apiServerPID()
	p0, err := procUsage(pid)
	Expect(err).NotTo(HaveOccurred())
	a0, _ := procUsage(api)
	l0, t0 := delivered(), time.Now()
	time.Sleep(benchWindow)
	p1, err := procUsage(pid)
	Expect(err).NotTo(HaveOccurred())
	a1, _ := procUsage(api)
	return measured{proc: usage{cpu: p1.cpu - p0.cpu, rss: p1.rss, hwm: p1.hwm}, api: usage{cpu: a1.cpu - a0.cpu},
		lines: delivered() - l0, wall: time.Since(t0)}
}

func startBinary(binary string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
	Expect(cmd.Start()).To(Succeed())
	DeferCleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}

var _ = Describe("Agent bench", Label("bench"), func() {
	It("reads 10 MB/s of 20 containers: the node agent's CPU and RSS beside the operator's API streams on the same load", func() {
		if os.Getenv("LOG_CAPTURER_BENCH") != "1" {
			Skip("set LOG_CAPTURER_BENCH=1 (make bench) to run the agent bench")
		}
		dir := GinkgoT().TempDir()
		root, err := envtestutil.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		binary := filepath.Join(dir, "log-capturer")
		build := exec.Command("go", "build", "-o", binary, ".")
		build.Dir, build.Stdout, build.Stderr = root, GinkgoWriter, GinkgoWriter
		Expect(build.Run()).To(Succeed())
		user, err := testEnv.AddUser(envtest.User{Name: "bench", Groups: []string{"system:masters"}}, nil)
		Expect(err).NotTo(HaveOccurred())
		kc, err := user.KubeConfig()
		Expect(err).NotTo(HaveOccurred())
		kubeconfig := filepath.Join(dir, "kubeconfig")
		Expect(os.WriteFile(kubeconfig, kc, 0o600)).To(Succeed())
		receiver := lokireceiver.New()
		receiver.Summarize("namespace")
		rsrv := httptest.NewServer(receiver)
		DeferCleanup(func() { receiver.Close(); rsrv.Close() })
		delivered := func(ns string) func() int64 { return func() int64 { return receiver.Summary()[ns].Entries } }
		pipelineIn := func(ns string) {
			Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
			Expect(c.Create(ctx, builders.Sink(ns, "loki").Loki(rsrv.URL).Build())).To(Succeed())
			Expect(c.Create(ctx, builders.Pipeline(ns, "bench", "loki").WithSelector(map[string]string{"app": "bench"}).
				With(func(p *logsv1alpha1.LogPipeline) {
					p.Spec.StreamPool.MaxStreams = benchContainers
					p.Spec.Rotation.Interval = metav1.Duration{Duration: time.Minute}
				}).Build())).To(Succeed())
		}
		podsOn := func(ns, nodeName string) []*corev1.Pod {
			var out []*corev1.Pod
			for i := range benchContainers {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("bench-%02d", i), Labels: map[string]string{"app": "bench"}},
					Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "main", Image: "x"}}}}
				Expect(c.Create(ctx, p)).To(Succeed())
				out = append(out, p)
			}
			return out
		}

		By("API capture: the operator follows 20 pods/log streams")
		const apiNode = "bench-api-node"
		kubelet, err := kubeletsim.Start()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = kubelet.Close() })
		Expect(kubelet.RegisterNode(ctx, c, apiNode)).To(Succeed())
		pipelineIn("bench-api")
		podsOn("bench-api", apiNode)
		var sims []*kubeletsim.Container
		for i := range benchContainers {
			sims = append(sims, kubelet.Container("bench-api", fmt.Sprintf("bench-%02d", i), "main"))
		}
		wctx, stopAPIWriter := context.WithCancel(ctx)
		var n int
		apiWriter := steady(wctx, func(per int, now time.Time) {
			for i, sim := range sims {
				for j := range per {
					sim.Write(now.Add(time.Duration(j)*time.Microsecond), benchLine(i, n+j))
				}
			}
			n += per
		})
		op := startBinary(binary, []string{"GOMEMLIMIT=230MiB"}, "operator", "--kubeconfig", kubeconfig, "--capture=api", "--leader-elect=false",
			"--metrics-bind-address=0", "--health-probe-bind-address=0", "--allow-loopback-egress", "--positions-namespace=bench-api")
		api := measure(op.Process.Pid, delivered("bench-api"))
		stopAPIWriter()
		apiWriter.Wait()
		_ = op.Process.Signal(syscall.SIGTERM)

		By("agent capture: the node agent reads the same load from 20 containers' files")
		tmp := filepath.Join(dir, "agent")
		podsDir, journal := filepath.Join(tmp, "pods"), filepath.Join(tmp, "journal")
		Expect(os.MkdirAll(tmp, 0o755)).To(Succeed())
		url, ca, _ := runOperator(tmp, operator.CaptureAgent, nil)
		caFile := filepath.Join(tmp, "ca.crt")
		Expect(os.WriteFile(caFile, ca, 0o600)).To(Succeed())
		pipelineIn("bench-agent")
		pods := podsOn("bench-agent", node)
		files := make([]string, len(pods))
		for i, p := range pods {
			files[i] = filepath.Join(podsDir, "bench-agent_"+p.Name+"_"+string(p.UID), "main")
			Expect(os.MkdirAll(files[i], 0o755)).To(Succeed())
		}
		fctx, stopFileWriter := context.WithCancel(ctx)
		var m, rotations int
		fileWriter := steady(fctx, func(per int, now time.Time) {
			var b strings.Builder
			for i, d := range files {
				b.Reset()
				for j := range per {
					fmt.Fprintf(&b, "%s stdout F %s\n", now.Add(time.Duration(j)*time.Microsecond).UTC().Format(time.RFC3339Nano), benchLine(i, m+j))
				}
				live := filepath.Join(d, "0.log")
				f, err := os.OpenFile(live, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
				Expect(err).NotTo(HaveOccurred())
				_, err = f.WriteString(b.String())
				Expect(err).NotTo(HaveOccurred())
				st, _ := f.Stat()
				Expect(f.Close()).To(Succeed())
				if st.Size() > benchRotateAt {
					// The kubelet's rotation: rename, keep four.
					Expect(os.Rename(live, live+"."+now.UTC().Format("20060102-150405.000000"))).To(Succeed())
					rotations++
					old, _ := filepath.Glob(live + ".*")
					for len(old) > 4 {
						Expect(os.Remove(old[0])).To(Succeed())
						old = old[1:]
					}
				}
			}
			m += per
		})
		token, _ := agentTokenOn(tmp, node)
		ag := startBinary(binary, []string{"GOMEMLIMIT=230MiB"}, "agent", "--kubeconfig", kubeconfig, "--node", node,
			"--pods-dir", podsDir, "--journal-dir", journal, "--operator-url", url, "--operator-ca", caFile,
			"--token-file", token, "--memory-budget=96Mi", "--health-probe-bind-address=0", "--metrics-bind-address=0", "--allow-loopback-egress")
		agent := measure(ag.Process.Pid, delivered("bench-agent"))
		stopFileWriter()
		fileWriter.Wait()

		lines := []string{
			fmt.Sprintf("bench: agent, %d MB/s over %d containers (files rotated %d times at 10 MiB): %.3f cores, %.2f CPU-s per million lines, RSS %d MiB (peak %d MiB), %d lines/s delivered; API server %.3f cores",
				benchRate/1_000_000, benchContainers, rotations, agent.cores(), agent.cpuPerMillion(), agent.proc.rss>>20, agent.proc.hwm>>20,
				int64(float64(agent.lines)/agent.wall.Seconds()), agent.api.cpu.Seconds()/agent.wall.Seconds()),
			fmt.Sprintf("bench: operator with API streams, same load: %.3f cores, %.2f CPU-s per million lines, RSS %d MiB (peak %d MiB), %d lines/s delivered; API server %.3f cores",
				api.cores(), api.cpuPerMillion(), api.proc.rss>>20, api.proc.hwm>>20, int64(float64(api.lines)/api.wall.Seconds()),
				api.api.cpu.Seconds()/api.wall.Seconds()),
			fmt.Sprintf("bench: goals: agent ≤ 0.25 core (%s), ≤ 128 MiB (%s); agent CPU per line %.2f× the API streams', API server CPU %.2f× less",
				verdict(agent.cores() <= 0.25), verdict(agent.proc.hwm <= 128<<20), agent.cpuPerMillion()/api.cpuPerMillion(),
				api.api.cpu.Seconds()/max(agent.api.cpu.Seconds(), 0.001)),
		}
		for _, l := range lines {
			fmt.Println(l)
			AddReportEntry("bench", l)
		}
	})
})

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}
