// Package samples embeds the sample manifests for the demo.
package samples

import "embed"

// Files holds the sample manifests.
//
//go:embed *.yaml
var Files embed.FS
