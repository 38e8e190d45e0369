// Package capture is the contract between the parts of log-capturer: the
// controllers, the capture engine (capture/workers), its sources
// (capture/apisource) and its adapters (capture/sinks,
// capture/positionstore). It holds only data and small interfaces:
//
//   - PipelineConfig and SinkConfig: what a pipeline's workers run with,
//     every reference already resolved;
//   - Record and Acker: one log line, and how a sink tells the engine it is
//     done with it;
//   - Sink, SinkFactory and SinkStats: what a destination is to the engine;
//   - LogSource: where the engine reads a container's log from;
//   - PositionStore: where the engine keeps a pipeline's positions;
//   - Snapshot: what the workers report, which the controllers turn into
//     status.
//
// It imports nothing of log-capturer and nothing heavier than apimachinery,
// so that everything may import it and it may import nothing back.
package capture
