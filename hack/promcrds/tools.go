//go:build tools

// Package tools pins the API types this module generates CRDs from.
package tools

import (
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)
