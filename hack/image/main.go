// Command image writes the operator's OCI image tarball (make image).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/log-capturer/log-capturer/internal/image"
)

func main() {
	binary := flag.String("binary", "", "static linux/amd64 binary of log-capturer")
	tag := flag.String("tag", "log-capturer:dev", "image reference written into the tarball")
	out := flag.String("out", "dist/log-capturer.tar", "output tarball")
	flag.Parse()
	if err := image.Build(*binary, *tag, *out); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", *out, "as", *tag)
}
