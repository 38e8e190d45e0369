// Package controllers holds the thin reconcilers of LogPipeline and
// SinkTarget: they resolve specs into worker configurations for the runtime
// and turn what the runtime reports into status conditions.
package controllers

import (
	"context"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
)

// Options are optional collaborators of the controllers.
type Options struct {
	// Prober probes sink endpoints for SinkTarget status.
	Prober Prober
	// Deliveries reports sink delivery numbers for SinkTarget status.
	Deliveries Deliveries
	// SamplePeriod is how often pipelines' health is re-judged; 15s when zero.
	SamplePeriod time.Duration
	// MinRotationInterval is the shortest rotation interval a pipeline may
	// ask for; zero allows what the schema allows.
	MinRotationInterval time.Duration
	// AllowRawStdout lets Stdout sinks use format Raw, which writes the
	// containers' bytes unescaped into the operator's own log.
	AllowRawStdout bool
	// AllowInsecureSkipVerify lets sinks use tls.insecureSkipVerify.
	AllowInsecureSkipVerify bool
	// WatchSecrets watches Secrets' metadata cluster-wide, so that a change
	// to one is seen at once (needs list and watch on Secrets); without it
	// they are read again at every reconcile.
	WatchSecrets bool
	// Addresses, when set, is kept up to date with every Node's addresses.
	Addresses AddressBook
	// DefaultSinkTypes are the sink types of namespaces that no
	// CapturePolicy selects; empty allows every type.
	DefaultSinkTypes []logsv1alpha1.PolicySinkType
}

// Setup registers the field indexes and both controllers on mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, workers Workers, opts Options) error {
	if err := SetupIndexes(ctx, mgr); err != nil {
		return err
	}
	if err := (&LogPipelineReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("logpipeline-controller"),
		Workers:                 workers,
		SamplePeriod:            opts.SamplePeriod,
		MinRotation:             opts.MinRotationInterval,
		AllowRawStdout:          opts.AllowRawStdout,
		WatchSecrets:            opts.WatchSecrets,
		AllowInsecureSkipVerify: opts.AllowInsecureSkipVerify,
		DefaultSinkTypes:        opts.DefaultSinkTypes,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up LogPipeline controller: %w", err)
	}
	if err := (&SinkTargetReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("sinktarget-controller"),
		Prober:                  opts.Prober,
		Deliveries:              opts.Deliveries,
		AllowRawStdout:          opts.AllowRawStdout,
		WatchSecrets:            opts.WatchSecrets,
		AllowInsecureSkipVerify: opts.AllowInsecureSkipVerify,
		DefaultSinkTypes:        opts.DefaultSinkTypes,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up SinkTarget controller: %w", err)
	}
	if opts.Addresses != nil {
		if err := (&NodeAddressReconciler{Client: mgr.GetClient(), Book: opts.Addresses}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the node address controller: %w", err)
		}
	}
	return nil
}
