// Package envtestutil starts the envtest control plane that `make envtest`
// builds from source, for the test suites of every package.
package envtestutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/log-capturer/log-capturer/internal/operator"
)

// RepoRoot walks up from the working directory to the directory holding
// the main module's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding repository root: %w", err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			len(b) > 0 && containsModule(string(b)) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding repository root: no go.mod of github.com/log-capturer/log-capturer above the working directory")
		}
		dir = parent
	}
}

func containsModule(gomod string) bool {
	const want = "module github.com/log-capturer/log-capturer\n"
	return len(gomod) >= len(want) && gomod[:len(want)] == want
}

// AssetsDir returns KUBEBUILDER_ASSETS when set, else the repository's
// bin/k8s, so that tests run from an IDE find the source-built binaries too.
func AssetsDir() (string, error) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	d := filepath.Join(root, "bin", "k8s")
	if _, err := os.Stat(filepath.Join(d, "kube-apiserver")); err != nil {
		return "", fmt.Errorf("no envtest control plane in %s: run 'make envtest' first: %w", d, err)
	}
	return d, nil
}

// NewEnvironment returns an envtest environment with the project's CRDs
// that fails when they are missing.
func NewEnvironment() (*envtest.Environment, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	return &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}, nil
}

// Start starts NewEnvironment and returns it with its config and a client
// that knows the operator's types. On an error nothing is left running;
// otherwise the caller stops the environment (register it with DeferCleanup
// right away, so that a failing suite still stops it).
func Start() (*envtest.Environment, *rest.Config, client.WithWatch, error) {
	env, err := NewEnvironment()
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := env.Start()
	if err != nil {
		// Start leaves the control plane running when a later step (the
		// CRDs) fails; nothing else would stop it.
		_ = env.Stop()
		return nil, nil, nil, fmt.Errorf("starting the envtest control plane: %w", err)
	}
	scheme, err := operator.NewScheme()
	if err == nil {
		var c client.WithWatch
		if c, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme}); err == nil {
			return env, cfg, c, nil
		}
	}
	_ = env.Stop()
	return nil, nil, nil, fmt.Errorf("creating a client: %w", err)
}
