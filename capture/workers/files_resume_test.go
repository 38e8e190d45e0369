package workers_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/crifile/crifiletest"
	"github.com/log-capturer/log-capturer/capture/positionstore"
	"github.com/log-capturer/log-capturer/capture/workers"
)

// journalHarness runs file capture with positions in a journal directory,
// behind a store a simulated crash freezes, and sinks that acknowledge
// 300ms after they got a record.
func journalHarness(n *fileNode, dir string) (*harness, *positionstore.Journal) {
	j, err := positionstore.OpenJournal(ctx, dir, positionstore.JournalOptions{Holder: "test"})
	Expect(err).NotTo(HaveOccurred())
	store := &crashableStore{PositionStore: j}
	h := fileHarness(n, func(o *workers.Options) { o.Positions = &stagingStore{crashableStore: store, stager: j} })
	h.store = store
	h.factory = func(string, capture.SinkConfig) capture.Sink { return &ackLaterSink{delay: 300 * time.Millisecond} }
	return h, j
}

var _ = Describe("Resuming the kubelet's files from the journal", func() {
	It("resumes after a crash at the acknowledged file positions: every record, duplicates bounded and counted", func() {
		ns := newNamespace()
		node := newFileNode(10)
		pods := node.createFilePods(ns, 4, false)
		journal := filepath.Join(GinkgoT().TempDir(), "journal")
		key := types.NamespacedName{Namespace: ns, Name: "crash"}
		cfg := filePipeline(ns, key.Name, 4, time.Second)
		cfg.UID, cfg.PositionsInterval = string(uuid.NewUUID()), time.Second

		wctx, wcancel := context.WithCancel(ctx)
		wg := node.writeFor(wctx, ns, pods, 300, 128<<10)
		h1, j1 := journalHarness(node, journal)
		Expect(h1.mgr.Apply(ctx, key, cfg)).To(Succeed())
		Eventually(func() int64 { return snapshot(h1, key).Positions.LastWrite.Unix() }, 10*time.Second).Should(BeNumerically(">", 0))
		time.Sleep(2500 * time.Millisecond)
		h1.crash()
		h1.stop()
		Expect(j1.Close()).To(Succeed())
		first := h1.ackSink(key).Records()

		time.Sleep(time.Second) // written and rotated while no reader runs
		h2, j2 := journalHarness(node, journal)
		defer func() { h2.stop(); _ = j2.Close() }()
		Expect(h2.mgr.Apply(ctx, key, cfg)).To(Succeed())
		time.Sleep(time.Second)
		wcancel()
		wg.Wait()
		generated := node.generated()
		var dups int
		Eventually(func() []string {
			second := h2.ackSink(key).Records()
			problems, _ := node.check(append(append([]capture.Record(nil), first...), second...), true)
			// Duplicates are the only problem allowed, and every record arrives.
			var other []string
			dups = 0
			for _, p := range problems {
				if strings.Contains(p, "duplicated or reordered") {
					dups++
					continue
				}
				other = append(other, p)
			}
			if got := len(first) + len(second) - dups; got < generated {
				other = append(other, fmt.Sprintf("%d of %d records arrived", got, generated))
			}
			return other
		}, 30*time.Second, 250*time.Millisecond).Should(BeEmpty())
		dupRecords := len(first) + len(h2.ackSink(key).Records()) - generated
		s := snapshot(h2, key)
		GinkgoWriter.Printf("file crash: %d records, %d sent again, %d counted, gaps %d\n", generated, dupRecords, s.ResumeDuplicates, s.Gaps)
		Expect(s.Gaps).To(BeZero())
		// The journal staged the positions before each record was sent, so
		// the count is exact: every record sent again, none more.
		Expect(s.ResumeDuplicates).To(BeNumerically(">", 0))
		Expect(s.ResumeDuplicates).To(Equal(int64(dupRecords)), "every record sent again is counted, and only those")
		// 4 containers at 300 records/s: one positions interval (1s) and the
		// sink's 300ms of acknowledgements, with room for a slow machine.
		Expect(dupRecords).To(BeNumerically("<=", 4*300*2))
	})

	It("resumes after a clean stop with no record lost and none twice", func() {
		ns := newNamespace()
		node := newFileNode(10)
		pods := node.createFilePods(ns, 3, false)
		journal := filepath.Join(GinkgoT().TempDir(), "journal")
		key := types.NamespacedName{Namespace: ns, Name: "clean"}
		cfg := filePipeline(ns, key.Name, 3, time.Second)
		cfg.UID = string(uuid.NewUUID())
		wctx, wcancel := context.WithCancel(ctx)
		wg := node.writeFor(wctx, ns, pods, 300, 128<<10)
		h1, j1 := journalHarness(node, journal)
		Expect(h1.mgr.Apply(ctx, key, cfg)).To(Succeed())
		time.Sleep(2 * time.Second)
		h1.stop()
		Expect(j1.Close()).To(Succeed())
		first := h1.ackSink(key).Records()
		time.Sleep(time.Second)
		h2, j2 := journalHarness(node, journal)
		defer func() { h2.stop(); _ = j2.Close() }()
		Expect(h2.mgr.Apply(ctx, key, cfg)).To(Succeed())
		time.Sleep(time.Second)
		wcancel()
		wg.Wait()
		Eventually(func() []string {
			problems, _ := node.check(append(append([]capture.Record(nil), first...), h2.ackSink(key).Records()...), false)
			return problems
		}, 30*time.Second, 250*time.Millisecond).Should(BeEmpty())
		Expect(snapshot(h2, key).ResumeDuplicates).To(BeZero())
		Expect(snapshot(h2, key).Positions.Reason).To(Equal(capture.PositionsStored))
	})

	It("loses nothing when the reading process is killed with SIGKILL again and again", func() {
		ns := newNamespace()
		node := newFileNode(10)
		pods := node.createFilePods(ns, 3, true)
		work := GinkgoT().TempDir()
		Expect(writeKubeconfig(filepath.Join(work, "kubeconfig"))).To(Succeed())
		uid := string(uuid.NewUUID())
		spec := fmt.Sprintf("%s\n%s\n%s\n%s\n", node.root, ns, "killed", uid)
		Expect(os.WriteFile(filepath.Join(work, "spec"), []byte(spec), 0o600)).To(Succeed())

		wctx, wcancel := context.WithCancel(ctx)
		wg := node.writeFor(wctx, ns, pods, 500, 64<<10)
		var children []int
		start := func() *exec.Cmd {
			cmd := exec.Command(os.Args[0], "-test.run=^TestFileReaderChild$", "-test.v=false")
			cmd.Env = append(os.Environ(), "LC_FILE_CHILD="+work)
			cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
			Expect(cmd.Start()).To(Succeed())
			children = append(children, cmd.Process.Pid)
			return cmd
		}
		const kills = 5
		for range kills {
			cmd := start()
			time.Sleep(3 * time.Second)
			Expect(cmd.Process.Signal(syscall.SIGKILL)).To(Succeed())
			_ = cmd.Wait()
		}
		wcancel()
		wg.Wait()
		generated := node.generated()
		last := start()
		defer func() { _ = last.Process.Signal(syscall.SIGKILL); _ = last.Wait() }()
		var got map[string]int
		Eventually(func() int {
			got = readChildOutput(work)
			return len(got)
		}, 60*time.Second, 250*time.Millisecond).Should(Equal(generated), "every record arrived at least once")
		dups, reported := 0, int64(0)
		for _, c := range got {
			dups += c - 1
		}
		for _, pid := range children {
			b, _ := os.ReadFile(filepath.Join(work, "status-"+strconv.Itoa(pid)))
			n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			reported += n
		}
		GinkgoWriter.Printf("kill -9: %d kills, %d records, %d duplicates at the far end, %d counted as possible duplicates by the restarted readers\n",
			kills, generated, dups, reported)
		// The journal staged the positions before each batch was written:
		// every record that came twice is counted. The count exceeds them
		// only by a batch staged and not written when the kill came (the
		// sink's 20ms flush, a second of records per kill with room for a
		// slow machine).
		Expect(reported).To(BeNumerically(">=", dups), "every record that arrived twice is counted")
		Expect(reported-int64(dups)).To(BeNumerically("<=", kills*3*500), "no more than a batch in flight per kill")
		Expect(dups).To(BeNumerically("<=", kills*3*500))
	})
})

// writeKubeconfig writes the test API server's credentials for a child
// process.
func writeKubeconfig(path string) error {
	c := clientcmdapi.NewConfig()
	c.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	c.AuthInfos["envtest"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	c.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "envtest"}
	c.CurrentContext = "envtest"
	return clientcmd.WriteToFile(*c, path)
}

// readChildOutput counts the records the children wrote, by container,
// stream and sequence number.
func readChildOutput(work string) map[string]int {
	out := map[string]int{}
	f, err := os.Open(filepath.Join(work, "out"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			out[line]++
		}
	}
	return out
}

// appendSink is the children's sink: it appends one line per record to a
// file, in batches written with one write each, and acknowledges a batch
// only after the write, as a destination does after it answered. before,
// when set, runs ahead of each write: the child reports its counts there,
// so a count is never older than the records in the file.
type appendSink struct {
	f      *os.File
	before func()
	mu     sync.Mutex
	// batch are the records not yet written, buf their lines.
	batch []*capture.Record
	buf   []byte
}

func (s *appendSink) Write(_ context.Context, r *capture.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	stream, _, _ := strings.Cut(r.Line, " ")
	s.buf = fmt.Appendf(s.buf, "%s/%s/%s %d\n", r.Namespace, r.Pod, stream, crifiletest.Seq(r.Line))
	s.batch = append(s.batch, r)
	return nil
}

func (s *appendSink) flush() {
	s.mu.Lock()
	batch, buf := s.batch, s.buf
	s.batch, s.buf = nil, nil
	s.mu.Unlock()
	if len(buf) == 0 {
		return
	}
	capture.Sending(batch)
	if s.before != nil {
		s.before()
	}
	if _, err := s.f.Write(buf); err != nil {
		panic(err)
	}
	capture.AckAll(batch)
}

func (s *appendSink) Run(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.flush()
		}
	}
}

func (s *appendSink) Close(context.Context) error {
	s.flush()
	return nil
}

// TestFileReaderChild is the reading process the SIGKILL spec starts and
// kills: file capture of one pipeline with positions in a journal and an
// appendSink, until it is killed. It does nothing outside that spec.
func TestFileReaderChild(t *testing.T) {
	work := os.Getenv("LC_FILE_CHILD")
	if work == "" {
		t.Skip("run by the SIGKILL spec of the engine suite")
	}
	spec, err := os.ReadFile(filepath.Join(work, "spec"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimSpace(string(spec)), "\n")
	root, ns, name, uid := parts[0], parts[1], parts[2], parts[3]
	rc, err := clientcmd.BuildConfigFromFlags("", filepath.Join(work, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	c := context.Background()
	pods, err := cache.New(rc, cache.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = pods.Start(c) }()
	if !pods.WaitForCacheSync(c) {
		t.Fatal("the pod cache did not sync")
	}
	j, err := positionstore.OpenJournal(c, filepath.Join(work, "journal"), positionstore.JournalOptions{Holder: "child"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(filepath.Join(work, "out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	sink := &appendSink{f: out}
	mgr, err := workers.NewManager(workers.Options{
		Files:     &workers.FileSource{Root: root, Node: fileNodeName, Grace: 200 * time.Millisecond},
		Pods:      pods,
		Positions: j,
		Sinks:     func(string, capture.SinkConfig) (capture.Sink, error) { return sink, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = mgr.Start(c) }()
	key := types.NamespacedName{Namespace: ns, Name: name}
	pc := filePipeline(ns, name, 3, time.Second)
	pc.UID = uid
	sink.before = reportTo(filepath.Join(work, "status-"+strconv.Itoa(os.Getpid())), mgr, key)
	if err := mgr.Apply(c, key, pc); err != nil {
		t.Fatal(err)
	}
	select {} // until killed
}

// reportTo returns the child's report of its resume duplicates to path: the
// count of key's snapshot, written whole (a temporary file renamed), so a
// kill leaves the previous report or this one, never a torn one.
func reportTo(path string, mgr *workers.Manager, key types.NamespacedName) func() {
	return func() {
		s, ok := mgr.Snapshot(key)
		if !ok {
			return
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(strconv.FormatInt(s.ResumeDuplicates, 10)), 0o600); err != nil {
			panic(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			panic(err)
		}
	}
}
