// Package layout_test checks the rules of the repository's layers (ADR
// 0011): what the operator binary links, which packages may import the
// engine, and that the contract imports nothing of ours.
package layout_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/log-capturer/log-capturer/test/envtestutil"
)

const module = "github.com/log-capturer/log-capturer"

type pkg struct {
	ImportPath string
	Name       string
	Imports    []string
}

// goList runs go list in the repository root.
func goList(t *testing.T, args ...string) []byte {
	t.Helper()
	root, err := envtestutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// packages lists every package of the module with its non-test imports.
func packages(t *testing.T) []pkg {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(goList(t, "-json=ImportPath,Name,Imports", "./...")))
	var out []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
}

func TestOperatorBinaryLinksNoTestDoubles(t *testing.T) {
	deps := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(goList(t, "-deps", ".")))
	for sc.Scan() {
		deps[sc.Text()] = true
	}
	if len(deps) < 100 {
		t.Fatalf("go list -deps listed only %d packages", len(deps))
	}
	for _, banned := range []string{
		"sigs.k8s.io/controller-runtime/pkg/envtest",
		module + "/test/kubeletsim",
		module + "/test/lokireceiver",
		module + "/capture/crifile/crifiletest",
		module + "/test/otlpreceiver",
		module + "/internal/demo",
	} {
		if deps[banned] {
			t.Errorf("the operator binary links %s", banned)
		}
	}
	for d := range deps {
		if strings.HasPrefix(d, module+"/test/") {
			t.Errorf("the operator binary links the test package %s", d)
		}
	}
}

func TestLayers(t *testing.T) {
	engineImporters := []string{module + "/internal/operator", module + "/internal/agent"}
	for _, p := range packages(t) {
		if p.Name == "runtime" || p.Name == "sort" || p.Name == "errors" || p.Name == "context" {
			t.Errorf("%s is named like a standard-library package (%s)", p.ImportPath, p.Name)
		}
		ours := func(prefix string) []string {
			var hit []string
			for _, imp := range p.Imports {
				if imp == prefix || strings.HasPrefix(imp, prefix+"/") {
					hit = append(hit, imp)
				}
			}
			return hit
		}
		switch {
		case p.ImportPath == module+"/capture":
			if hit := ours(module); len(hit) > 0 {
				t.Errorf("the contract imports %v; it must import nothing of ours", hit)
			}
		case strings.HasPrefix(p.ImportPath, module+"/controllers"):
			for _, banned := range []string{"/capture/workers", "/capture/sinks", "/capture/apisource", "/capture/crifile", "/capture/positionstore", "/internal"} {
				if hit := ours(module + banned); len(hit) > 0 {
					t.Errorf("%s imports %v: controllers use only the contract", p.ImportPath, hit)
				}
			}
		case strings.HasPrefix(p.ImportPath, module+"/agent/"):
			for _, banned := range []string{"/capture/workers", "/capture/sinks", "/capture/apisource", "/capture/crifile", "/capture/positionstore", "/controllers", "/internal"} {
				if hit := ours(module + banned); len(hit) > 0 {
					t.Errorf("%s imports %v: the agent link uses only the contract", p.ImportPath, hit)
				}
			}
		case strings.HasPrefix(p.ImportPath, module+"/capture/"):
			if hit := ours(module + "/controllers"); len(hit) > 0 {
				t.Errorf("%s imports %v: imports point down only", p.ImportPath, hit)
			}
			if hit := ours(module + "/internal"); len(hit) > 0 {
				t.Errorf("%s imports %v: imports point down only", p.ImportPath, hit)
			}
		}
		// Programs under hack/ (benchmarks, e2e helpers) are wiring of their
		// own, never part of the operator binary.
		tool := strings.HasPrefix(p.ImportPath, module+"/test/") || strings.HasPrefix(p.ImportPath, module+"/hack/")
		if hit := ours(module + "/capture/workers"); len(hit) > 0 && !slices.Contains(engineImporters, p.ImportPath) && !tool {
			t.Errorf("%s imports the engine; only the wiring (%v), tests and hack/ programs may", p.ImportPath, engineImporters)
		}
		if tool || path.Base(p.ImportPath) == "demo" {
			continue
		}
		for _, double := range []string{"/test/kubeletsim", "/test/lokireceiver", "/test/otlpreceiver", "/capture/crifile/crifiletest"} {
			if hit := ours(module + double); len(hit) > 0 && p.ImportPath != module+"/internal/demo" {
				t.Errorf("%s imports the test double %v", p.ImportPath, hit)
			}
		}
	}
}
