package link

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/log-capturer/log-capturer/agent/control"
)

// DefaultReportPeriod is how often an agent reports its numbers.
const DefaultReportPeriod = 10 * time.Second

// Reporter sends the agent's cumulative numbers to the operator on a fixed
// period (POST /v1/report). A failed report is not sent again: the next one
// carries the same totals, newer. Run is its only goroutine.
type Reporter struct {
	// URL, Client and Token are the Follower's.
	URL    string
	Client *http.Client
	Token  func() (string, error)
	// Report returns what to send now.
	Report func() control.Report
	// Period is the report period (DefaultReportPeriod when zero).
	Period time.Duration

	mu     sync.Mutex
	status ReportStatus
}

// ReportStatus is what the Reporter knows of its reports.
type ReportStatus struct {
	Sent, Failed int64
	LastSent     time.Time
	LastError    string
}

// Status returns the reporter's counts.
func (r *Reporter) Status() ReportStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Run reports at once and then every period until ctx ends.
func (r *Reporter) Run(ctx context.Context) error {
	period := r.Period
	if period <= 0 {
		period = DefaultReportPeriod
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		err := r.send(ctx, period)
		r.mu.Lock()
		if err != nil {
			r.status.Failed++
			r.status.LastError = err.Error()
		} else {
			r.status.Sent++
			r.status.LastSent, r.status.LastError = time.Now(), ""
		}
		r.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			logr.FromContextOrDiscard(ctx).V(1).Info("reporting to the operator failed; the next report carries the same totals", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Final sends one last report, after the agent's workers stopped and saved
// their positions: with it the operator can hand the node's containers to
// the API at once, from exactly where the agent left them. Bounded by
// timeout; an error is the caller's to log.
func (r *Reporter) Final(ctx context.Context, timeout time.Duration, rep control.Report) error {
	rep.Final = true
	return r.post(ctx, timeout, rep)
}

// send makes one report.
func (r *Reporter) send(ctx context.Context, timeout time.Duration) error {
	return r.post(ctx, timeout, r.Report())
}

// post sends rep.
func (r *Reporter) post(ctx context.Context, timeout time.Duration, rep control.Report) error {
	token, err := r.Token()
	if err != nil {
		return err
	}
	body, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, strings.TrimSuffix(r.URL, "/")+"/v1/report", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("reporting to the operator: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.Client.Do(req)
	if err != nil {
		return fmt.Errorf("reporting to the operator: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the operator answered the report with %s: %s", resp.Status, firstLine(msg))
	}
	return nil
}
