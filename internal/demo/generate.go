package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/log-capturer/log-capturer/test/kubeletsim"
)

// Style is the kind of log a generated container writes.
type Style string

// Styles of generated logs.
const (
	// StyleAccess writes web server access log lines, steadily.
	StyleAccess Style = "access"
	// StyleJSON writes structured JSON application logs in bursts.
	StyleJSON Style = "json"
	// StyleStack writes errors with multi-line stack traces, and warnings as on stderr.
	StyleStack Style = "stack"
)

// generators writes realistic lines into the simulated kubelet's containers
// and records every line it wrote in the run's ledger.
type generators struct {
	kubelet *kubeletsim.Kubelet
	ledger  *ledger

	mu      sync.Mutex
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
}

func newGenerators(k *kubeletsim.Kubelet, l *ledger) *generators {
	return &generators{kubelet: k, ledger: l, running: map[string]context.CancelFunc{}}
}

// start begins generating for a container unless it already runs.
func (g *generators) start(ctx context.Context, namespace, pod, container string, style Style) {
	key := namespace + "/" + pod + "/" + container
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.running[key]; ok {
		return
	}
	gctx, cancel := context.WithCancel(ctx)
	g.running[key] = cancel
	c := g.kubelet.Container(namespace, pod, container)
	g.wg.Go(func() { g.run(gctx, key, c, style) })
}

// stop ends every generator and waits for them.
func (g *generators) stop() {
	g.mu.Lock()
	for _, cancel := range g.running {
		cancel()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

func (g *generators) write(key string, c *kubeletsim.Container, lines ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	for _, l := range lines {
		c.Write(now, l)
		g.ledger.add(key, now, l)
	}
}

var (
	paths   = []string{"/", "/cart", "/checkout", "/api/items?page=2", "/static/app.js", "/healthz"}
	methods = []string{"GET", "GET", "GET", "POST", "PUT"}
	codes   = []int{200, 200, 200, 201, 304, 404, 500}
)

func (g *generators) run(ctx context.Context, key string, c *kubeletsim.Container, style Style) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		switch style {
		case StyleAccess:
			g.write(key, c, fmt.Sprintf(`10.0.%d.%d - - [%s] "%s %s HTTP/1.1" %d %d "-" "Mozilla/5.0"`,
				rand.IntN(4), rand.IntN(250), time.Now().UTC().Format("02/Jan/2006:15:04:05 -0700"),
				methods[rand.IntN(len(methods))], paths[rand.IntN(len(paths))], codes[rand.IntN(len(codes))], 200+rand.IntN(5000)))
		case StyleJSON:
			n := 1
			if i%20 == 0 {
				n = 25 // a burst
			}
			lines := make([]string, n)
			for j := range lines {
				lines[j] = fmt.Sprintf(`{"level":"info","msg":"order processed","order":%d,"items":%d,"duration_ms":%d}`,
					i*100+j, 1+rand.IntN(9), rand.IntN(300))
			}
			g.write(key, c, lines...)
		case StyleStack:
			if i%10 == 0 {
				g.write(key, c,
					fmt.Sprintf("ERROR job %d failed: java.lang.IllegalStateException: queue closed", i),
					"\tat com.example.worker.Queue.take(Queue.java:87)",
					"\tat com.example.worker.Worker.run(Worker.java:42)",
					"\tat java.base/java.lang.Thread.run(Thread.java:1583)")
			} else {
				g.write(key, c, fmt.Sprintf("WARN  job %d retried after %dms", i, 10*rand.IntN(50)))
			}
		}
	}
}
