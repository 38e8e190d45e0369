package agent_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/test/lokireceiver"
)

var _ = Describe("two tenants on one agent", func() {
	It("one tenant's dead sink stalls only its own files: the other's lines all arrive, the stalled one's lag is counted, and it catches up", func() {
		tmp := GinkgoT().TempDir()
		podsDir, journal := filepath.Join(tmp, "pods"), filepath.Join(tmp, "journal")
		for _, ns := range []string{"tenant-dead", "tenant-live"} {
			Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		}
		// The dead tenant's destination answers 503 until it is revived.
		deadRcv := lokireceiver.New()
		var alive atomic.Bool
		dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !alive.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			deadRcv.ServeHTTP(w, r)
		}))
		liveRcv := lokireceiver.New()
		live := httptest.NewServer(liveRcv)
		DeferCleanup(func() { deadRcv.Close(); dead.Close(); liveRcv.Close(); live.Close() })

		keys := map[string]types.NamespacedName{}
		for ns, url := range map[string]string{"tenant-dead": dead.URL, "tenant-live": live.URL} {
			pod := podOnNode(ns, "app-1", map[string]string{"app": "app"})
			writePodLines(filepath.Join(podsDir, ns+"_app-1_"+string(pod.UID), "main"), ns, 0, 3000)
			key := types.NamespacedName{Namespace: ns, Name: "apps"}
			keys[ns] = key
			book.Apply(key, capture.PipelineConfig{
				Namespace: ns, Name: "apps", UID: ns + "-uid", RotationInterval: time.Second, MaxStreams: 5, StartFromBeginning: true,
				PositionsInterval: 200 * time.Millisecond,
				Selector:          &metav1.LabelSelector{MatchLabels: map[string]string{"app": "app"}},
				Sinks: []capture.SinkConfig{{Name: "loki", Kind: capture.SinkLoki, BatchMaxBytes: 16 << 10, BatchMaxWait: 50 * time.Millisecond,
					BufferMaxBytes: 64 << 10, WhenFull: "Block", MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
					Loki: &capture.LokiConfig{URL: url}}},
			})
			DeferCleanup(func() { book.Delete(key) })
		}
		stop := runAgent(podsDir, journal, agentToken(tmp))
		DeferCleanup(func() { Expect(stop()).To(Succeed()) })

		Eventually(func() int { return len(liveRcv.Entries()) }, 20*time.Second, 100*time.Millisecond).Should(Equal(3000),
			"the live tenant's lines arrive while the other's destination is down")
		Expect(deadRcv.Entries()).To(BeEmpty())
		// The dead tenant's lag: what its full queue holds and what was not
		// read, as its agent reports it.
		var lag int64
		Eventually(func() int64 {
			lag = fleet.Snapshot(keys["tenant-dead"], []string{node}).UnreadBytes
			return lag
		}, 20*time.Second, 200*time.Millisecond).Should(BeNumerically(">", 100<<10))
		Eventually(func() int64 { return fleet.Snapshot(keys["tenant-live"], []string{node}).UnreadBytes }, 20*time.Second, 200*time.Millisecond).
			Should(BeZero(), "the live tenant is not behind")

		alive.Store(true)
		Eventually(func() int { return len(deadRcv.Entries()) }, 30*time.Second, 100*time.Millisecond).Should(Equal(3000),
			"the stalled tenant catches up once its destination is back")
		Consistently(func() int { return len(deadRcv.Entries()) }, time.Second, 100*time.Millisecond).Should(Equal(3000))
		Eventually(func() int64 { return fleet.Snapshot(keys["tenant-dead"], []string{node}).UnreadBytes }, 20*time.Second, 200*time.Millisecond).
			Should(BeZero())
		GinkgoWriter.Printf("shared agent: the live tenant got 3000 lines while the other's destination answered 503; the stalled tenant's lag was %d bytes, then 3000 lines once, lag 0\n", lag)
	})
})
