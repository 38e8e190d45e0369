// Command image writes the operator's OCI image tarball (make image), or
// with -entrypoint another one-binary image (the e2e node's images).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/log-capturer/log-capturer/hack/image/ociimage"
)

func main() {
	binary := flag.String("binary", "", "static linux/amd64 binary of log-capturer")
	tag := flag.String("tag", "log-capturer:dev", "image reference written into the tarball")
	out := flag.String("out", "dist/log-capturer.tar", "output tarball")
	entrypoint := flag.String("entrypoint", "", "path of the binary in another image than the operator's (no arguments)")
	flag.Parse()
	var err error
	if *entrypoint == "" {
		err = ociimage.Build(*binary, *tag, *out)
	} else {
		err = ociimage.BuildSpec(ociimage.Spec{Binary: *binary, Path: *entrypoint, User: ociimage.User, Title: *tag}, *tag, *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", *out, "as", *tag)
}
