package ociimage_test

import (
	"archive/tar"
	"io"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/log-capturer/log-capturer/hack/image/ociimage"
	"github.com/log-capturer/log-capturer/test/envtestutil"
)

func TestImageTarball(t *testing.T) {
	root, err := envtestutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "log-capturer")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = root
	build.Env = append(build.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "image.tar")
	if err := ociimage.Build(bin, "log-capturer:test", out); err != nil {
		t.Fatal(err)
	}

	tag, _ := name.NewTag("log-capturer:test")
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("reading the tarball back: %v", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Config.Entrypoint; len(got) != 1 || got[0] != "/log-capturer" {
		t.Errorf("entrypoint = %v", got)
	}
	if cfg.Config.User != "65532:65532" || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("user %q os %q arch %q", cfg.Config.User, cfg.OS, cfg.Architecture)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "log-capturer" && h.Mode&0o111 != 0 && h.Size > 1<<20 {
			found = true
		}
	}
	if !found {
		t.Error("the layer has no executable /log-capturer")
	}
}
