package workers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/crifile/crifiletest"
	"github.com/log-capturer/log-capturer/capture/workers"
)

// fileNodeName is the node whose pods the file specs read from files.
const fileNodeName = "file-node"

// fileNode is a simulated node's /var/log/pods: for each container a
// simulated runtime and kubelet writing and rotating its CRI files, and
// the sizes of the records written, to count a loss exactly.
type fileNode struct {
	root     string
	maxFiles int

	mu   sync.Mutex
	logs map[string]*fileLog // ns/pod
}

type fileLog struct {
	dir     string
	k       *crifiletest.Kubelet
	restart int
	// next is each stream's next sequence number, sizes the CRI bytes of
	// each record written, by stream and sequence number.
	next  map[string]int
	sizes map[string][]int
	short bool
}

func newFileNode(maxFiles int) *fileNode {
	return &fileNode{root: GinkgoT().TempDir(), maxFiles: maxFiles, logs: map[string]*fileLog{}}
}

// createFilePods creates n pods on the file node and their log directories.
func (n *fileNode) createFilePods(ns string, count int, short bool) []string {
	names := make([]string, 0, count)
	for i := range count {
		name := fmt.Sprintf("file-%03d", i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "gen"}},
			Spec:       corev1.PodSpec{NodeName: fileNodeName, Containers: []corev1.Container{{Name: "main", Image: "gen"}}},
		}
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())
		dir := filepath.Join(n.root, ns+"_"+name+"_"+string(pod.UID), "main")
		n.mu.Lock()
		n.logs[ns+"/"+name] = &fileLog{dir: dir, k: crifiletest.New(GinkgoT(), dir, "0.log", n.maxFiles, true),
			next: map[string]int{}, sizes: map[string][]int{}, short: short}
		n.mu.Unlock()
		names = append(names, name)
	}
	return names
}

func fileStreamOf(i int) string {
	if i%5 == 4 {
		return "stderr"
	}
	return "stdout"
}

// write writes count records to the pod's container.
func (n *fileNode) write(ns, pod string, count int) {
	n.mu.Lock()
	l := n.logs[ns+"/"+pod]
	n.mu.Unlock()
	for range count {
		s := fileStreamOf(l.next["stdout"] + l.next["stderr"])
		seq := l.next[s]
		msg := crifiletest.Message(s, seq)
		if l.short {
			msg = fmt.Sprintf("%s seq=%d short", s, seq)
		}
		size := l.k.Write(s, msg)
		n.mu.Lock()
		l.next[s]++
		l.sizes[s] = append(l.sizes[s], size)
		n.mu.Unlock()
	}
}

// bytes is how many CRI bytes were written to the node's logs.
func (n *fileNode) bytes() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b int64
	for _, l := range n.logs {
		for _, sizes := range l.sizes {
			for _, size := range sizes {
				b += int64(size)
			}
		}
	}
	return b
}

// restart ends the container's instance and starts the next one's log.
func (n *fileNode) restart(ns, pod string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.logs[ns+"/"+pod]
	l.k.Close()
	l.restart++
	l.k = crifiletest.New(GinkgoT(), l.dir, fmt.Sprintf("%d.log", l.restart), n.maxFiles, true)
}

// rotateOver is the kubelet's monitor pass: every log over maxSize is
// rotated; it returns the bytes of the files deleted.
func (n *fileNode) rotateOver(maxSize int64) int64 {
	n.mu.Lock()
	logs := make([]*fileLog, 0, len(n.logs))
	for _, l := range n.logs {
		logs = append(logs, l)
	}
	n.mu.Unlock()
	var deleted int64
	for _, l := range logs {
		if l.k.Size() > maxSize {
			deleted += l.k.Rotate()
		}
	}
	return deleted
}

// writeFor writes to every pod at about perSecond records each until the
// context ends, the kubelet rotating at maxSize every 100ms.
func (n *fileNode) writeFor(c context.Context, ns string, pods []string, perSecond int, maxSize int64) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-c.Done():
				return
			case <-t.C:
			}
			for _, p := range pods {
				n.write(ns, p, perSecond/100)
			}
			if i%10 == 0 {
				n.rotateOver(maxSize)
			}
		}
	})
	return &wg
}

func (n *fileNode) rotations() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	total := 0
	for _, l := range n.logs {
		total += l.k.Rotations()
	}
	return total
}

// generated is how many records were written.
func (n *fileNode) generated() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	total := 0
	for _, l := range n.logs {
		total += l.next["stdout"] + l.next["stderr"]
	}
	return total
}

// check compares what arrived with what was written: every record once, in
// order per container and stream, byte for byte, with its stream. It
// returns the problems and the CRI bytes of the records that did not
// arrive; with allowGaps a jump forward is a loss, not a problem.
func (n *fileNode) check(records []capture.Record, allowGaps bool) (problems []string, lostBytes int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	got := map[string][]int{}
	for _, r := range records {
		seq := crifiletest.Seq(r.Line)
		stream, _, _ := strings.Cut(r.Line, " ")
		key := r.Namespace + "/" + r.Pod + "/" + stream
		l := n.logs[r.Namespace+"/"+r.Pod]
		if l == nil || seq < 0 || r.Stream != stream {
			problems = append(problems, fmt.Sprintf("%s: record %.60q on stream %q is none written", key, r.Line, r.Stream))
			continue
		}
		want := crifiletest.Message(stream, seq)
		if l.short {
			want = fmt.Sprintf("%s seq=%d short", stream, seq)
		}
		if r.Line != want {
			problems = append(problems, fmt.Sprintf("%s: record %d is %d bytes %.60q, want %d bytes %.60q", key, seq, len(r.Line), r.Line, len(want), want))
		}
		got[key] = append(got[key], seq)
	}
	for pk, l := range n.logs {
		for _, stream := range []string{"stdout", "stderr"} {
			key := pk + "/" + stream
			seen := make([]bool, l.next[stream])
			prev := -1
			for _, seq := range got[key] {
				switch {
				case seq <= prev:
					problems = append(problems, fmt.Sprintf("%s: record %d after %d (duplicated or reordered)", key, seq, prev))
				case seq > prev+1 && !allowGaps:
					problems = append(problems, fmt.Sprintf("%s: records %d to %d lost", key, prev+1, seq-1))
				}
				if seq < len(seen) {
					seen[seq] = true
				}
				prev = max(prev, seq)
			}
			for seq, ok := range seen {
				if !ok {
					lostBytes += int64(l.sizes[stream][seq])
					if !allowGaps && len(problems) < 20 {
						problems = append(problems, fmt.Sprintf("%s: record %d of %d never arrived", key, seq, len(seen)))
					}
				}
			}
		}
	}
	return problems, lostBytes
}

// deletedFilesHeld lists the open descriptors of the process that point to
// deleted files under root: files the kubelet deleted that a reader pins.
func deletedFilesHeld(root string) []string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, root) && strings.HasSuffix(target, " (deleted)") {
			out = append(out, target)
		}
	}
	return out
}

// gateSink delivers like a MemorySink while open, and blocks every Write
// while closed: a destination that stops taking data.
type gateSink struct {
	MemorySink
	mu   sync.Mutex
	open chan struct{}
}

func newGateSink() *gateSink {
	g := &gateSink{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gateSink) shut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
}

func (g *gateSink) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.open)
}

func (g *gateSink) Write(ctx context.Context, r *capture.Record) error {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.MemorySink.Write(ctx, r)
}

func fileHarness(n *fileNode, opts ...func(*workers.Options)) *harness {
	return startHarness(append([]func(*workers.Options){func(o *workers.Options) {
		o.Source = nil
		o.Files = &workers.FileSource{Root: n.root, Node: fileNodeName, Grace: 200 * time.Millisecond}
	}}, opts...)...)
}

func filePipeline(ns, name string, maxStreams int, rotation time.Duration) capture.PipelineConfig {
	c := pipelineConfig(ns, name, maxStreams, rotation)
	c.PositionsInterval = 200 * time.Millisecond
	return c
}

var _ = Describe("Reading the kubelet's files", func() {
	It("delivers every record of 20 containers once, in order and byte for byte, across the kubelet's rotations, with a pool of 8 files", func() {
		baseG, baseFD := steadyCounts()
		ns := newNamespace()
		node := newFileNode(10)
		pods := node.createFilePods(ns, 20, false)
		sink := &MemorySink{}
		h := fileHarness(node)
		h.factory = func(string, capture.SinkConfig) capture.Sink { return sink }
		key := types.NamespacedName{Namespace: ns, Name: "files"}
		const maxStreams = 8
		Expect(h.mgr.Apply(ctx, key, filePipeline(ns, key.Name, maxStreams, time.Second))).To(Succeed())

		// 20 writers of 200 records/s each (every 50th record over 32 KiB
		// in P chunks), the kubelet rotating at 256 KiB every 100 ms.
		wctx, wcancel := context.WithCancel(ctx)
		wg := node.writeFor(wctx, ns, pods, 200, 256<<10)
		maxOpen, maxFD := 0, 0
		for deadline := time.Now().Add(30 * time.Second); node.generated() < 20*2*1100 && time.Now().Before(deadline); {
			maxOpen = max(maxOpen, snapshot(h, key).OpenStreams)
			maxFD = max(maxFD, workers.OpenFDs())
			time.Sleep(50 * time.Millisecond)
		}
		wcancel()
		wg.Wait()
		generated := node.generated()
		Eventually(func() int { return sink.Len() }, time.Minute, 100*time.Millisecond).Should(BeNumerically(">=", generated))
		Consistently(func() int { return sink.Len() }, time.Second, 100*time.Millisecond).Should(Equal(generated))
		problems, _ := node.check(sink.Records(), false)
		Expect(problems).To(BeEmpty())
		s := snapshot(h, key)
		Expect(s.FileContainers).To(Equal(20))
		Expect(s.Gaps).To(BeZero())
		Expect(s.MalformedLines).To(BeZero())
		Expect(maxOpen).To(BeNumerically("<=", maxStreams), "open files beyond the pool")
		// The writers' 20 files, the pool's files and a few for listings.
		Expect(maxFD).To(BeNumerically("<=", baseFD+20+maxStreams+8))

		Expect(h.mgr.Remove(ctx, key)).To(Succeed())
		h.stop()
		for _, l := range node.logs {
			l.k.Close()
		}
		// FDs another spec left (its idle connections) may close meanwhile:
		// back to the base or below it.
		Eventually(func() []int { g, fd := steadyCounts(); return []int{g, max(fd, baseFD)} }, 10*time.Second, 200*time.Millisecond).
			Should(Equal([]int{baseG, baseFD}), "goroutines and FDs back to where they were")
		GinkgoWriter.Printf("files: containers=20 maxStreams=%d records=%d rotations=%d sliceRotations=%d maxOpenFiles=%d fds=%d..%d (base %d) goroutines back to %d\n",
			maxStreams, generated, node.rotations(), s.Rotations, maxOpen, baseFD, maxFD, baseFD, baseG)
	})

	It("loses nothing when its sink stops across three rotations: it reads on from the gzipped files", func() {
		ns := newNamespace()
		node := newFileNode(5)
		pods := node.createFilePods(ns, 3, false)
		sink := newGateSink()
		h := fileHarness(node, func(o *workers.Options) { o.SamplePeriod = 100 * time.Millisecond })
		defer h.stop()
		h.factory = func(string, capture.SinkConfig) capture.Sink { return sink }
		key := types.NamespacedName{Namespace: ns, Name: "paused"}
		Expect(h.mgr.Apply(ctx, key, filePipeline(ns, key.Name, 3, 500*time.Millisecond))).To(Succeed())
		for _, p := range pods {
			node.write(ns, p, 100)
		}
		Eventually(sink.Len, 20*time.Second).Should(Equal(300))
		unread := func() int64 { return snapshot(h, key).UnreadBytes }
		Eventually(unread, 5*time.Second, 50*time.Millisecond).Should(BeZero(), "nothing unread once every line is acknowledged")
		atShut := node.bytes()
		sink.shut()
		for range 3 {
			for _, p := range pods {
				node.write(ns, p, 100)
			}
			Expect(node.rotateOver(0)).To(BeZero(), "nothing deleted: five files are kept")
			time.Sleep(700 * time.Millisecond) // more than a slice
		}
		gz, _ := filepath.Glob(filepath.Join(node.root, "*", "main", "0.log.*.gz"))
		Expect(gz).NotTo(BeEmpty())
		Expect(deletedFilesHeld(node.root)).To(BeEmpty())
		// The lag is the 900 records written since: every file after the
		// acknowledged positions, the gzipped ones by their content.
		written := node.bytes() - atShut
		Eventually(unread, 5*time.Second, 50*time.Millisecond).Should(Equal(written))
		sink.release()
		Eventually(sink.Len, 20*time.Second).Should(Equal(1200))
		problems, _ := node.check(sink.Records(), false)
		Expect(problems).To(BeEmpty())
		Expect(snapshot(h, key).Gaps).To(BeZero())
		Eventually(unread, 5*time.Second, 50*time.Millisecond).Should(BeZero(), "the lag gone once the sink took it all")
		GinkgoWriter.Printf("paused sink: %d bytes unread behind it, 0 after\n", written)
	})

	It("counts exactly the bytes the kubelet deleted before they were read, and pins no deleted file longer than a slice", func() {
		ns := newNamespace()
		node := newFileNode(2) // the live file and one rotated one
		pods := node.createFilePods(ns, 2, true)
		sink := newGateSink()
		h := fileHarness(node, func(o *workers.Options) { o.Log = GinkgoLogr })
		defer h.stop()
		h.factory = func(string, capture.SinkConfig) capture.Sink { return sink }
		key := types.NamespacedName{Namespace: ns, Name: "beyond"}
		const slice = 500 * time.Millisecond
		Expect(h.mgr.Apply(ctx, key, filePipeline(ns, key.Name, 2, slice))).To(Succeed())
		for _, p := range pods {
			node.write(ns, p, 50)
		}
		Eventually(sink.Len, 20*time.Second).Should(Equal(100))
		sink.shut()
		var deleted int64
		for range 4 {
			for _, p := range pods {
				node.write(ns, p, 200)
			}
			deleted += node.rotateOver(0)
			time.Sleep(slice + 300*time.Millisecond) // every slice lists the files once
		}
		Expect(deleted).To(BeNumerically(">", 0))
		Eventually(func() []string { return deletedFilesHeld(node.root) }, 2*slice, 50*time.Millisecond).Should(BeEmpty(),
			"a deleted file pinned beyond a slice")
		sink.release()
		for _, p := range pods {
			node.write(ns, p, 10)
		}
		var lost int64
		Eventually(func() []string {
			var problems []string
			problems, lost = node.check(sink.Records(), true)
			if g := snapshot(h, key).GapBytes; g != lost {
				problems = append(problems, fmt.Sprintf("a gap of %d bytes counted, %d bytes of records not delivered", g, lost))
			}
			return problems
		}, 20*time.Second, 100*time.Millisecond).Should(BeEmpty())
		Expect(lost).To(BeNumerically(">", 0))
		s := snapshot(h, key)
		Expect(s.Gaps).To(BeNumerically(">=", 2), "one per container at least")
		Expect(s.LastGap).NotTo(BeNil())
		GinkgoWriter.Printf("beyond max files: deleted=%d bytes, not delivered=%d bytes, counted gap=%d bytes in %d gaps\n",
			deleted, lost, s.GapBytes, s.Gaps)
	})

	It("counts once the rest of an instance whose every file went, and goes on with the next instance", func() {
		ns := newNamespace()
		node := newFileNode(5)
		pods := node.createFilePods(ns, 1, true)
		sink := newGateSink()
		h := fileHarness(node)
		defer h.stop()
		h.factory = func(string, capture.SinkConfig) capture.Sink { return sink }
		key := types.NamespacedName{Namespace: ns, Name: "gc"}
		Expect(h.mgr.Apply(ctx, key, filePipeline(ns, key.Name, 1, 300*time.Millisecond))).To(Succeed())
		node.write(ns, pods[0], 20)
		Eventually(sink.Len, 20*time.Second).Should(Equal(20))
		sink.shut()
		// More than the pipeline's hand-off holds: the rest stays unread.
		node.write(ns, pods[0], 3000)
		time.Sleep(time.Second) // a few slices read and block
		// The container restarts and the kubelet removes the old
		// instance's log.
		node.restart(ns, pods[0])
		old, _ := filepath.Glob(filepath.Join(node.logs[ns+"/"+pods[0]].dir, "0.log*"))
		Expect(old).NotTo(BeEmpty())
		for _, f := range old {
			Expect(os.Remove(f)).To(Succeed())
		}
		node.write(ns, pods[0], 10)
		time.Sleep(time.Second) // slices meet the gone files while blocked
		sink.release()
		var lost int64
		Eventually(func() []string {
			var problems []string
			problems, lost = node.check(sink.Records(), true)
			if g := snapshot(h, key).GapBytes; g != lost {
				problems = append(problems, fmt.Sprintf("a gap of %d bytes counted, %d bytes of records not delivered", g, lost))
			}
			return problems
		}, 20*time.Second, 100*time.Millisecond).Should(BeEmpty())
		Expect(lost).To(BeNumerically(">", 0))
		Consistently(func() int64 { return snapshot(h, key).GapBytes }, 2*time.Second, 100*time.Millisecond).Should(Equal(lost), "counted once")
	})

	It("reads a restarted container's new log from its start, and a deleted pod's files to their end", func() {
		ns := newNamespace()
		node := newFileNode(5)
		pods := node.createFilePods(ns, 2, false)
		sink := &MemorySink{}
		h := fileHarness(node)
		defer h.stop()
		h.factory = func(string, capture.SinkConfig) capture.Sink { return sink }
		key := types.NamespacedName{Namespace: ns, Name: "lifecycle"}
		Expect(h.mgr.Apply(ctx, key, filePipeline(ns, key.Name, 2, time.Second))).To(Succeed())
		for _, p := range pods {
			node.write(ns, p, 100)
		}
		node.restart(ns, pods[0])
		node.write(ns, pods[0], 100) // into 1.log
		Eventually(sink.Len, 20*time.Second).Should(Equal(300))

		// The pod is deleted while its last lines are still unread.
		node.write(ns, pods[1], 300)
		pod := &corev1.Pod{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: pods[1]}, pod)).To(Succeed())
		Expect(k8sClient.Delete(ctx, pod, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(sink.Len, 20*time.Second).Should(Equal(600))
		problems, _ := node.check(sink.Records(), false)
		Expect(problems).To(BeEmpty())
		Eventually(func() int { return snapshot(h, key).SelectedContainers }, 20*time.Second).Should(Equal(1))
		Eventually(func() int { return snapshot(h, key).OpenStreams }, 5*time.Second).Should(Equal(1))
	})
})

// fileCheckSink checks records against what the simulated runtime wrote as
// they arrive (by stream and sequence number, byte for byte), so that a
// long soak keeps no record.
type fileCheckSink struct {
	mu                         sync.Mutex
	next                       map[string]int
	delivered, dup, lost, diff int64
	// firstDups are the first runs of duplicates: where they began;
	// lastDup is the last duplicate of each stream.
	firstDups []string
	lastDup   map[string]int
}

func (s *fileCheckSink) Write(_ context.Context, r *capture.Record) error {
	stream, _, _ := strings.Cut(r.Line, " ")
	seq := crifiletest.Seq(r.Line)
	key := r.Namespace + "/" + r.Pod + "/" + stream
	ok := seq >= 0 && r.Stream == stream && r.Line == crifiletest.Message(stream, seq)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delivered++
	switch want := s.next[key]; {
	case !ok:
		s.diff++
	case seq < want:
		if s.lastDup == nil {
			s.lastDup = map[string]int{}
		}
		if last, ok := s.lastDup[key]; !ok || seq != last+1 {
			if len(s.firstDups) < 5 {
				s.firstDups = append(s.firstDups, fmt.Sprintf("%s: seq %d again (next wanted %d) at %s", key, seq, want, time.Now().Format(time.RFC3339Nano)))
			}
		}
		s.lastDup[key] = seq
		s.dup++
	case seq > want:
		s.lost += int64(seq - want)
		s.next[key] = seq + 1
	default:
		s.next[key] = seq + 1
	}
	r.Ack()
	return nil
}

func (s *fileCheckSink) Run(context.Context) {}

func (s *fileCheckSink) Close(context.Context) error { return nil }

func (s *fileCheckSink) counts() (delivered, dup, lost, diff int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered, s.dup, s.lost, s.diff
}

// The file soak runs only under `make soak` (SOAK_DURATION set): 20
// containers writing FILE_SOAK_RATE records/s each (5000 by default), the
// kubelet rotating at 1 MiB every second and keeping 5 files.
var _ = Describe("File soak", Label("soak"), func() {
	It("keeps every record, goroutines and FDs flat, under 20 fast writers and the kubelet's rotation", func() {
		duration := soakDuration()
		rate := 5000
		if r := os.Getenv("FILE_SOAK_RATE"); r != "" {
			var err error
			rate, err = strconv.Atoi(r)
			Expect(err).NotTo(HaveOccurred())
		}
		ns := newNamespace()
		node := newFileNode(5)
		pods := node.createFilePods(ns, 20, false)
		sink := &fileCheckSink{next: map[string]int{}}
		h := fileHarness(node)
		defer h.stop()
		h.factory = func(string, capture.SinkConfig) capture.Sink { return sink }
		key := types.NamespacedName{Namespace: ns, Name: "file-soak"}
		Expect(h.mgr.Apply(ctx, key, filePipeline(ns, key.Name, 20, 10*time.Second))).To(Succeed())

		wctx, wcancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, p := range pods {
			wg.Go(func() {
				t := time.NewTicker(10 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-wctx.Done():
						return
					case <-t.C:
						node.write(ns, p, rate/100)
					}
				}
			})
		}
		wg.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-wctx.Done():
					return
				case <-t.C:
					node.rotateOver(1 << 20)
				}
			}
		})
		maxOpen := 0
		gs, fds := sampleSteady(duration, func() { maxOpen = max(maxOpen, snapshot(h, key).OpenStreams) })
		wcancel()
		wg.Wait()
		generated := int64(node.generated())
		Eventually(func() int64 { d, _, _, _ := sink.counts(); return d }, 2*time.Minute, time.Second).Should(BeNumerically(">=", generated))
		delivered, dup, lost, diff := sink.counts()
		s := snapshot(h, key)
		gSlope, _ := workers.SlopePerMinute(gs)
		fdSlope, _ := workers.SlopePerMinute(fds)
		report := fmt.Sprintf("file soak %s: containers=20 rate=%d/s each maxSize=1Mi maxFiles=5 kubeletRotations=%d records=%d delivered=%d lost=%d duplicated=%d differing=%d gaps=%d "+
			"goroutines=%d..%d slope=%.3f/min fds=%d..%d slope=%.3f/min maxOpenFiles=%d",
			duration, rate, node.rotations(), generated, delivered, lost, dup, diff, s.Gaps,
			int(gs[0].Value), int(gs[len(gs)-1].Value), gSlope, int(fds[0].Value), int(fds[len(fds)-1].Value), fdSlope, maxOpen)
		sink.mu.Lock()
		if len(sink.firstDups) > 0 {
			report += " firstDuplicateRuns=[" + strings.Join(sink.firstDups, "; ") + "]"
		}
		sink.mu.Unlock()
		fmt.Fprintln(os.Stdout, report)
		AddReportEntry("file soak", report)
		Expect(lost).To(BeZero())
		Expect(dup).To(BeZero())
		Expect(diff).To(BeZero())
		Expect(s.Gaps).To(BeZero())
		Expect(maxOpen).To(BeNumerically("<=", 20))
		Expect(gSlope).To(BeNumerically("<=", 0.1))
		Expect(fdSlope).To(BeNumerically("<=", 0.1))
	})
})
