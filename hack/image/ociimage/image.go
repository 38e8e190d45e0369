// Package ociimage builds the operator's OCI image from a static binary without
// a Docker daemon or a registry: one layer on an empty base, like ko does.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BinaryPath is where the binary lives in the image.
const BinaryPath = "/log-capturer"

// User is the image's non-root user (distroless "nonroot").
const User = "65532:65532"

// Build writes an image tarball with the binary at BinaryPath, running as
// User, with `operator` as default argument, tagged tag.
func Build(binary, tag, out string) error {
	return BuildSpec(Spec{Binary: binary, Path: BinaryPath, Args: []string{"operator"}, User: User, Title: "log-capturer"}, tag, out)
}

// Spec describes a one-binary image: the binary at Path is the entrypoint,
// run with Args as User.
type Spec struct {
	Binary string
	Path   string
	Args   []string
	User   string
	Title  string
}

// BuildSpec writes the image of spec as a tarball tagged tag; the e2e node's
// images (pause, the log writer) are built with it too.
func BuildSpec(spec Spec, tag, out string) error {
	data, err := os.ReadFile(spec.Binary)
	if err != nil {
		return fmt.Errorf("reading %s: %w", spec.Binary, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, d := range []string{"tmp/", "var/", "var/lib/", "var/lib/log-capturer/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch, Uid: 65532, Gid: 65532}); err != nil {
			return fmt.Errorf("writing layer: %w", err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: spec.Path[1:], Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return fmt.Errorf("writing layer: %w", err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("writing layer: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing layer: %w", err)
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerBytes)), nil })
	if err != nil {
		return fmt.Errorf("making layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("adding layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Config = v1.Config{Entrypoint: []string{spec.Path}, Cmd: spec.Args, User: spec.User, WorkingDir: "/",
		Labels: map[string]string{"org.opencontainers.image.title": spec.Title}}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return fmt.Errorf("setting config: %w", err)
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("parsing tag %q: %w", tag, err)
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	return nil
}
