// Package kubeletsim is a simulated kubelet: a TLS server that serves
// /containerLogs/{namespace}/{pod}/{container} with the kubelet's follow,
// timestamps, sinceTime, tailLines and previous semantics, registered as a
// Node so that the real kube-apiserver proxies pods/log to it. Tests and the
// demo write lines into its containers and inject faults.
package kubeletsim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Kubelet serves container logs for the pods bound to its Node.
type Kubelet struct {
	srv      *http.Server
	listener net.Listener
	done     chan struct{}

	mu         sync.Mutex
	containers map[string]*Container

	active    atomic.Int64
	maxActive atomic.Int64

	intervalsMu sync.Mutex
	intervals   []interval
}

// interval is when one follow stream was served.
type interval struct{ start, end time.Time }

// maxIntervals bounds the stream history kept for MaxOverlap.
const maxIntervals = 1 << 20

// Start listens on 127.0.0.1 with a fresh self-signed certificate.
func Start() (*Kubelet, error) {
	cert, err := selfSigned()
	if err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	k := &Kubelet{listener: ln, containers: map[string]*Container{}, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", k.serveLogs)
	k.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(k.done)
		_ = k.srv.Serve(ln)
	}()
	return k, nil
}

// Port is the TCP port the kubelet listens on.
func (k *Kubelet) Port() int32 { return int32(k.listener.Addr().(*net.TCPAddr).Port) } //nolint:gosec // a TCP port fits

// Close stops the server and ends every stream.
func (k *Kubelet) Close() error {
	k.mu.Lock()
	for _, c := range k.containers {
		c.Terminate()
	}
	k.mu.Unlock()
	err := k.srv.Close()
	<-k.done
	if err != nil {
		return fmt.Errorf("closing simulated kubelet: %w", err)
	}
	return nil
}

// RegisterNode creates (or updates) a Node whose InternalIP is 127.0.0.1 and
// whose kubelet endpoint is this server, so the API server proxies pods/log
// of pods with spec.nodeName=name here.
func (k *Kubelet) RegisterNode(ctx context.Context, c client.Client, name string) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Create(ctx, node); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating node %s: %w", name, err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, node); err != nil {
		return fmt.Errorf("reading node %s: %w", name, err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = k.Port()
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady", Message: "simulated kubelet"}}
	if err := c.Status().Update(ctx, node); err != nil {
		return fmt.Errorf("updating node %s status: %w", name, err)
	}
	return nil
}

// Container returns the container's log, creating it empty when new.
func (k *Kubelet) Container(namespace, pod, name string) *Container {
	key := namespace + "/" + pod + "/" + name
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.containers[key]
	if !ok {
		c = newContainer()
		k.containers[key] = c
	}
	return c
}

// Remove forgets a container; its streams end and new requests get 404.
func (k *Kubelet) Remove(namespace, pod, name string) {
	key := namespace + "/" + pod + "/" + name
	k.mu.Lock()
	c := k.containers[key]
	delete(k.containers, key)
	k.mu.Unlock()
	if c != nil {
		c.Terminate()
	}
}

// ActiveStreams is how many follow requests are being served now.
func (k *Kubelet) ActiveStreams() int64 { return k.active.Load() }

// MaxActiveStreams is the most follow requests ever served at once.
func (k *Kubelet) MaxActiveStreams() int64 { return k.maxActive.Load() }

// ResetMaxActiveStreams restarts the high-water mark from the current value.
func (k *Kubelet) ResetMaxActiveStreams() {
	k.maxActive.Store(k.active.Load())
	k.intervalsMu.Lock()
	k.intervals = nil
	k.intervalsMu.Unlock()
}

// MaxOverlap is the most streams served at once since the last
// ResetMaxActiveStreams, where a stream counts as ended handover earlier than
// the kubelet noticed. A client that closes one stream and opens the next
// makes the API server tear down the old proxied request while it already
// forwards the new one; handover covers that teardown.
func (k *Kubelet) MaxOverlap(handover time.Duration) int {
	k.intervalsMu.Lock()
	defer k.intervalsMu.Unlock()
	type ev struct {
		t time.Time
		d int
	}
	evs := make([]ev, 0, 2*len(k.intervals))
	for _, iv := range k.intervals {
		end := iv.end.Add(-handover)
		if end.Before(iv.start) {
			end = iv.start
		}
		evs = append(evs, ev{iv.start, 1}, ev{end, -1})
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].t.Equal(evs[j].t) {
			return evs[i].d < evs[j].d
		}
		return evs[i].t.Before(evs[j].t)
	})
	cur, most := 0, 0
	for _, e := range evs {
		cur += e.d
		most = max(most, cur)
	}
	return most
}

func (k *Kubelet) lookup(namespace, pod, name string) *Container {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.containers[namespace+"/"+pod+"/"+name]
}

type query struct {
	follow, timestamps, previous bool
	since                        time.Time
	tail                         int64 // -1: all
}

func parseQuery(r *http.Request) (query, error) {
	q := query{tail: -1}
	v := r.URL.Query()
	q.follow = v.Get("follow") == "true"
	q.timestamps = v.Get("timestamps") == "true"
	q.previous = v.Get("previous") == "true"
	if s := v.Get("sinceTime"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return q, fmt.Errorf("invalid sinceTime %q: %w", s, err)
		}
		q.since = t
	}
	if s := v.Get("tailLines"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, fmt.Errorf("invalid tailLines %q", s)
		}
		q.tail = n
	}
	return q, nil
}

func (k *Kubelet) serveLogs(w http.ResponseWriter, r *http.Request) {
	c := k.lookup(r.PathValue("namespace"), r.PathValue("pod"), r.PathValue("container"))
	if c == nil {
		http.Error(w, "container not found", http.StatusNotFound)
		return
	}
	q, err := parseQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if q.previous && !c.hasPrevious() {
		// The kubelet's answer when the container never restarted.
		http.Error(w, "previous terminated container not found", http.StatusBadRequest)
		return
	}
	f := c.takeFault()
	if f.status != 0 {
		http.Error(w, "injected failure", f.status)
		return
	}
	n := k.active.Add(1)
	start := time.Now()
	defer func() {
		k.active.Add(-1)
		k.intervalsMu.Lock()
		if len(k.intervals) < maxIntervals {
			k.intervals = append(k.intervals, interval{start: start, end: time.Now()})
		}
		k.intervalsMu.Unlock()
	}()
	for {
		m := k.maxActive.Load()
		if n <= m || k.maxActive.CompareAndSwap(m, n) {
			break
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	c.stream(r.Context(), w, q, f)
}

// fault is what one request suffers.
type fault struct {
	status   int // answer with this status
	cutAfter int // write this many bytes, then cut the connection mid-line
	stall    bool
}

// Container is one container's log as the kubelet has it.
type Container struct {
	mu       sync.Mutex
	entries  []entry
	previous []entry
	// trimmed is how many lines of the current instance were rotated away.
	trimmed  int
	instance int
	changed  chan struct{}
	ended    bool
	faults   []fault
	// cuts counts CutActive calls; a stream that sees it change cuts itself.
	cuts int
}

type entry struct {
	ts   time.Time
	line string
}

func newContainer() *Container { return &Container{changed: make(chan struct{})} }

// Write appends a line with the given timestamp. Lines must not contain '\n'.
func (c *Container) Write(ts time.Time, line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = append(c.entries, entry{ts: ts.UTC(), line: line})
	close(c.changed)
	c.changed = make(chan struct{})
}

// Terminate ends the container: follow streams end once they sent every line.
func (c *Container) Terminate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ended {
		c.ended = true
		close(c.changed)
		c.changed = make(chan struct{})
	}
}

// Restart ends the current instance (its followers see EOF after its last
// line) and starts a new, empty one; the old one stays readable with previous=true.
func (c *Container) Restart() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.previous = c.entries
	c.entries = nil
	c.trimmed = 0
	c.instance++
	c.ended = false
	close(c.changed)
	c.changed = make(chan struct{})
}

// RotateAway drops the oldest n lines of the current instance, as a kubelet
// does when it rotates a log file that no stream is reading: streams that
// follow the log go on, new ones start after the dropped lines.
func (c *Container) RotateAway(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n = min(n, len(c.entries))
	c.entries = append([]entry(nil), c.entries[n:]...)
	c.trimmed += n
}

// FailNext answers the next n requests with the HTTP status code.
func (c *Container) FailNext(n, status int) { c.addFaults(n, fault{status: status}) }

// CutNext makes the next n streams stop after `after` bytes, in the middle of
// a line, and drop the connection.
func (c *Container) CutNext(n, after int) { c.addFaults(n, fault{cutAfter: after}) }

// CutActive makes every stream that follows the container now cut its
// connection in the middle of the next line it sends, as a kubelet
// connection that breaks mid-line does; new streams are not affected.
func (c *Container) CutActive() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cuts++
}

func (c *Container) cutCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cuts
}

// StallNext makes the next n streams send nothing more after their first
// bytes, without closing, until the client goes away.
func (c *Container) StallNext(n int) { c.addFaults(n, fault{stall: true}) }

func (c *Container) addFaults(n int, f fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range n {
		c.faults = append(c.faults, f)
	}
}

func (c *Container) takeFault() fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.faults) == 0 {
		return fault{}
	}
	f := c.faults[0]
	c.faults = c.faults[1:]
	return f
}

// hasPrevious tells whether a previous instance exists.
func (c *Container) hasPrevious() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.instance > 0
}

// snapshot returns the entries from line number i of the instance a stream
// follows (inst, or the current one when inst < 0), the number of the first
// returned line, a channel closed on the next change, whether that instance
// ended, and its number. A restart ends the streams of the replaced instance
// after its last line. Lines rotated away are not returned.
func (c *Container) snapshot(i int, previous bool, inst int) ([]entry, int, <-chan struct{}, bool, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case previous:
		return c.previous[min(i, len(c.previous)):], min(i, len(c.previous)), nil, true, c.instance - 1
	case inst >= 0 && inst == c.instance-1:
		return c.previous[min(i, len(c.previous)):], min(i, len(c.previous)), nil, true, inst
	case inst >= 0 && inst != c.instance:
		return nil, i, nil, true, inst
	}
	from := min(max(i-c.trimmed, 0), len(c.entries))
	return c.entries[from:], from + c.trimmed, c.changed, c.ended, c.instance
}

func (c *Container) stream(ctx context.Context, w http.ResponseWriter, q query, f fault) {
	flusher, _ := w.(http.Flusher)
	var (
		next    int
		written int
		buf     []byte
		inst    = -1
		started bool
		cuts    = c.cutCount()
	)
	for {
		es, from, changed, ended, in := c.snapshot(next, q.previous, inst)
		inst = in
		next = from
		if !started {
			started = true
			var skipped int
			es, skipped = applyTail(es, q.tail)
			next += skipped
		}
		buf = buf[:0]
		more := false
		for _, e := range es {
			// Write in pieces, as the kubelet does: a long log is never
			// copied whole for one reader.
			if len(buf) >= streamChunk {
				more = true
				break
			}
			next++
			if !q.since.IsZero() && e.ts.Before(q.since) {
				continue
			}
			if q.timestamps {
				buf = e.ts.AppendFormat(buf, time.RFC3339Nano)
				buf = append(buf, ' ')
			}
			buf = append(buf, e.line...)
			buf = append(buf, '\n')
		}
		if len(buf) > 1 && c.cutCount() != cuts {
			f.cutAfter = written + max(1, bytes.IndexByte(buf, '\n')/2)
		}
		if f.cutAfter > 0 && written+len(buf) > f.cutAfter {
			cut := f.cutAfter - written
			if i := strings.LastIndexByte(string(buf[:cut]), '\n'); i == cut-1 && cut > 1 {
				cut-- // make sure the cut is inside a line
			}
			_, _ = w.Write(buf[:cut])
			if flusher != nil {
				flusher.Flush()
			}
			panic(http.ErrAbortHandler)
		}
		if len(buf) > 0 {
			if _, err := w.Write(buf); err != nil {
				return
			}
			written += len(buf)
			if flusher != nil {
				flusher.Flush()
			}
		}
		if f.stall && written > 0 {
			<-ctx.Done()
			return
		}
		if more {
			continue
		}
		if !q.follow || ended || changed == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// streamChunk is how much of a log one write sends at most.
const streamChunk = 64 << 10

// applyTail keeps the last n entries (all when n < 0) and returns the index
// after the skipped ones.
func applyTail(es []entry, n int64) ([]entry, int) {
	if n < 0 || int(n) >= len(es) {
		return es, 0
	}
	skip := len(es) - int(n)
	return es[skip:], skip
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generating key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "kubeletsim"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("creating certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
