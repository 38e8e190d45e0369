// Package crd embeds the generated CustomResourceDefinitions, so that the
// binary (the demo) can install them without the source tree.
package crd

import "embed"

// Bases holds bases/*.yaml.
//
//go:embed bases/*.yaml
var Bases embed.FS
