package capture

import (
	"context"
	"errors"
	"time"
)

// PipelineRef identifies the pipeline a positions object belongs to.
type PipelineRef struct {
	Namespace string
	Name      string
	UID       string
}

// PositionStore keeps pipelines' positions (opaque, encoded by the engine)
// in the cluster. Load returns nil data when nothing is stored, an error
// wrapping ErrForeignPositions when the object is not the operator's, and
// any other error when it cannot be read. Save writes data, creating the
// object when needed. Delete removes a deleted pipeline's positions.
type PositionStore interface {
	Load(ctx context.Context, ref PipelineRef) ([]byte, error)
	Save(ctx context.Context, ref PipelineRef, data []byte, containers int) error
	Delete(ctx context.Context, ref PipelineRef) error
}

// PositionStager is a PositionStore that can also keep positions across a
// kill of the process at little cost: Stage writes data where the next Load
// finds it, like Save, but does not wait for it to reach the disk, so it
// need not survive a crash of the machine. The engine stages positions
// before every batch a sink sends, and saves them on its interval.
type PositionStager interface {
	Stage(ctx context.Context, ref PipelineRef, data []byte, containers int) error
}

// ErrForeignPositions means the positions object exists but was not written
// by the operator for this pipeline.
var ErrForeignPositions = errors.New("the positions object was not written by log-capturer for this pipeline")

// PositionsStatus is how a pipeline's positions are stored.
type PositionsStatus struct {
	// Reason is one of the PositionsReason constants.
	Reason  string
	Message string
	// Containers is how many containers the stored object holds and Bytes
	// its compressed size.
	Containers int
	Bytes      int
	// LastWrite is when positions were last written.
	LastWrite time.Time
}

// Durable tells whether positions are written to the store now.
func (s PositionsStatus) Durable() bool {
	return s.Reason == PositionsStored || s.Reason == PositionsReset
}

// Reasons of PositionsStatus.
const (
	// PositionsStored means positions are written to the store.
	PositionsStored = "Stored"
	// PositionsReset means the stored positions could not be read and the
	// workers started from startAt; positions are written anew.
	PositionsReset = "Reset"
	// PositionsForeign means an object of the positions' name exists that the
	// operator did not write; it is left alone and positions are kept in
	// memory only.
	PositionsForeign = "Foreign"
	// PositionsWriteFailed means the last write failed.
	PositionsWriteFailed = "WriteFailed"
	// PositionsInMemory means the engine has no store (tests, demo).
	PositionsInMemory = "InMemory"
)

// ContainerPosition is where a container's log was delivered up to, in the
// timestamps both sources share (the kubelet's CRI files carry the values
// the API returns with timestamps=true): what one reader hands the next
// when a container moves between the API and a node agent. Since is the
// second of the last delivered lines and Count how many of that second
// were delivered; First is the first of them, Last the last delivered
// line's timestamp and LastRun how many lines in a row carry it.
type ContainerPosition struct {
	UID       string    `json:"uid"`
	Container string    `json:"container"`
	Pod       string    `json:"pod"`
	Since     time.Time `json:"since"`
	Count     int64     `json:"count"`
	First     time.Time `json:"first"`
	Last      time.Time `json:"last"`
	LastRun   int64     `json:"lastRun"`
}
