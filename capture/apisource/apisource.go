// Package apisource is the capture.LogSource that follows pods/log through
// the Kubernetes API server: the source for nodes without an agent.
package apisource

import (
	"context"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/log-capturer/log-capturer/capture"
)

// Source opens pods/log streams with timestamps through a clientset.
type Source struct {
	client kubernetes.Interface
}

// New returns a Source reading through c.
func New(c kubernetes.Interface) *Source { return &Source{client: c} }

// OpenLog opens GET pods/<pod>/log?timestamps=true for the request. A 404
// wraps capture.ErrLogNotFound.
func (s *Source) OpenLog(ctx context.Context, req capture.LogRequest) (io.ReadCloser, error) {
	opts := &corev1.PodLogOptions{Container: req.Container, Follow: req.Follow, Previous: req.Previous, Timestamps: true}
	if !req.Since.IsZero() {
		opts.SinceTime = &metav1.Time{Time: req.Since}
	}
	body, err := s.client.CoreV1().Pods(req.Namespace).GetLogs(req.Pod, opts).Stream(ctx)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %w", capture.ErrLogNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening the log of %s/%s/%s: %w", req.Namespace, req.Pod, req.Container, err)
	}
	return body, nil
}
