// Package controllers holds the thin reconcilers of LogPipeline and
// SinkTarget: they resolve specs into worker configurations for the runtime
// and turn what the runtime reports into status conditions.
package controllers

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Setup registers the field indexes and both controllers on mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, workers Workers) error {
	if err := SetupIndexes(ctx, mgr); err != nil {
		return err
	}
	if err := (&LogPipelineReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("logpipeline-controller"),
		Workers:   workers,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up LogPipeline controller: %w", err)
	}
	if err := (&SinkTargetReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("sinktarget-controller"),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up SinkTarget controller: %w", err)
	}
	return nil
}
