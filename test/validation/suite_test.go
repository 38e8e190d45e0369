// Package validation_test checks, against the real kube-apiserver, that the
// CRDs reject invalid specs with readable messages, apply their defaults and
// accept the shipped samples.
package validation_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/log-capturer/log-capturer/test/envtestutil"
)

var (
	testEnv   *envtest.Environment
	k8sClient client.Client
	ctx       context.Context
	cancel    context.CancelFunc
)

func TestValidation(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "CRD validation suite")
}

var _ = BeforeSuite(func() {
	ctx, cancel = context.WithCancel(context.Background())
	var err error
	testEnv, _, k8sClient, err = envtestutil.Start()
	Expect(err).NotTo(HaveOccurred())
	// Registered here, the control plane stops even when AfterSuite fails.
	DeferCleanup(testEnv.Stop)
})

var _ = AfterSuite(func() {
	cancel()
})
