package operator_test

import (
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	lua "github.com/yuin/gopher-lua"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/test/builders"
	"github.com/log-capturer/log-capturer/test/envtestutil"
)

// argoHealth runs an Argo CD health script with gopher-lua, the interpreter
// Argo CD embeds, on obj as the API server returned it.
func argoHealth(script string, obj client.Object) (status, message string) {
	root, err := envtestutil.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	src, err := os.ReadFile(filepath.Join(root, "config", "argocd", script))
	Expect(err).NotTo(HaveOccurred())
	m, err := k8sruntime.DefaultUnstructuredConverter.ToUnstructured(obj)
	Expect(err).NotTo(HaveOccurred())
	ls := lua.NewState()
	defer ls.Close()
	ls.SetGlobal("obj", toLua(ls, m))
	Expect(ls.DoString(string(src))).To(Succeed())
	ret, ok := ls.Get(-1).(*lua.LTable)
	Expect(ok).To(BeTrue(), "the script returns a table")
	return ret.RawGetString("status").String(), ret.RawGetString("message").String()
}

func toLua(ls *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case map[string]any:
		t := ls.NewTable()
		for k, e := range x {
			t.RawSetString(k, toLua(ls, e))
		}
		return t
	case []any:
		t := ls.NewTable()
		for _, e := range x {
			t.Append(toLua(ls, e))
		}
		return t
	case string:
		return lua.LString(x)
	case bool:
		return lua.LBool(x)
	case int64:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case nil:
		return lua.LNil
	}
	return lua.LString("")
}

func getPipeline(ns, name string) *logsv1alpha1.LogPipeline {
	p := &logsv1alpha1.LogPipeline{}
	Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p)).To(Succeed())
	return p
}

var _ = Describe("Argo CD health scripts", func() {
	It("read Healthy, Degraded, Suspended and Progressing from real LogPipelines and SinkTargets", func() {
		ns := newNS()
		makePods(ns, 0, 1)
		Expect(k8sClient.Create(ctx, fastSink(ns, "loki", lokiURL))).To(Succeed())

		fresh := pipeline(ns, "fresh", "loki")
		fresh.Generation = 1
		status, _ := argoHealth("health.lua", fresh)
		Expect(status).To(Equal("Progressing"), "no status yet")

		Expect(k8sClient.Create(ctx, pipeline(ns, "healthy", "loki"))).To(Succeed())
		Expect(k8sClient.Create(ctx, pipeline(ns, "stalled", "missing"))).To(Succeed())
		suspended := pipeline(ns, "suspended", "loki")
		suspended.Spec.Suspend = true
		Expect(k8sClient.Create(ctx, suspended)).To(Succeed())

		Eventually(func() string { s, _ := argoHealth("health.lua", getPipeline(ns, "healthy")); return s },
			20*time.Second, 200*time.Millisecond).Should(Equal("Healthy"))
		Eventually(func() string { s, _ := argoHealth("health.lua", getPipeline(ns, "stalled")); return s },
			20*time.Second, 200*time.Millisecond).Should(Equal("Degraded"))
		_, msg := argoHealth("health.lua", getPipeline(ns, "stalled"))
		Expect(msg).To(ContainSubstring(`["missing"]`))
		Eventually(func() string { s, _ := argoHealth("health.lua", getPipeline(ns, "suspended")); return s },
			20*time.Second, 200*time.Millisecond).Should(Equal("Suspended"))

		st := &logsv1alpha1.SinkTarget{}
		Eventually(func() string {
			Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "loki"}, st)).To(Succeed())
			s, _ := argoHealth("health.lua", st)
			return s
		}, 20*time.Second, 200*time.Millisecond).Should(Equal("Healthy"))
		bad := builders.Sink(ns, "nosecret").Loki(lokiURL).WithBearerToken("absent", "token").Build()
		Expect(k8sClient.Create(ctx, bad)).To(Succeed())
		Eventually(func() string {
			Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(bad), st)).To(Succeed())
			s, _ := argoHealth("health.lua", st)
			return s
		}, 20*time.Second, 200*time.Millisecond).Should(Equal("Degraded"))
	})
})
