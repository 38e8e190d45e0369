package capture

import (
	"context"
	"errors"
	"io"
	"time"
)

// LogRequest asks a LogSource for one container's log, in the terms of the
// pods/log API: lines prefixed with their RFC3339Nano timestamp and a space,
// each ended by a newline.
type LogRequest struct {
	Namespace string
	Pod       string
	Container string
	// Since, when not zero, skips lines before this time (one-second
	// precision: the source may return earlier lines of the same second).
	Since time.Time
	// Follow keeps the stream open for new lines until ctx ends.
	Follow bool
	// Previous reads the log of the container's previous instance.
	Previous bool
}

// LogSource opens containers' logs. The engine opens one stream per running
// stream slice and is the only closer of what OpenLog returns.
type LogSource interface {
	// OpenLog opens the stream. An error wrapping ErrLogNotFound means the
	// pod or container (or, with Previous, a previous instance) does not exist.
	OpenLog(ctx context.Context, req LogRequest) (io.ReadCloser, error)
}

// ErrWorkersStopping is wrapped by an engine's error when a pipeline's
// workers are still draining and the call is to be made again shortly.
var ErrWorkersStopping = errors.New("the workers are still stopping")

// ErrLogNotFound is wrapped by a LogSource's error when the log does not exist.
var ErrLogNotFound = errors.New("log not found")
