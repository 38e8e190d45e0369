package controllers

import (
	"strings"
	"testing"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	logsv1alpha1 "github.com/log-capturer/log-capturer/api/v1alpha1"
	"github.com/log-capturer/log-capturer/controllers/internal/conditions"
)

func TestEventNote(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"short", "batch rejected"},
		{"exactly the limit", strings.Repeat("x", maxEventNote)},
		{"long ASCII", strings.Repeat("x", 2000)},
		{"long multi-byte at the cut", strings.Repeat("é", 1000)},
		{"invalid UTF-8 passes through", strings.Repeat("\xff", 1500)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := eventNote(tc.in)
			if len(got) > maxEventNote {
				t.Fatalf("note of %d bytes, limit %d", len(got), maxEventNote)
			}
			if len(tc.in) <= maxEventNote {
				if got != tc.in {
					t.Fatalf("a note within the limit was changed")
				}
				return
			}
			if !strings.HasSuffix(got, "…[truncated]") {
				t.Fatalf("a cut note is not marked: %q", got[len(got)-20:])
			}
			if utf8.ValidString(tc.in) && !utf8.ValidString(got) {
				t.Fatalf("the cut split a character")
			}
		})
	}
}

func TestReadyEventsOncePerTransition(t *testing.T) {
	rec := events.NewFakeRecorder(10)
	var e readyEvents
	p := &logsv1alpha1.LogPipeline{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	set := func(status metav1.ConditionStatus, reason string) {
		conditions.Set(p, logsv1alpha1.ConditionReady, status, reason, "%s", reason)
	}
	set(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning)
	e.record(rec, p, nil)
	// A second reconcile read the object before the cache had the first
	// status: it sees no Ready yet, and must not announce it again.
	e.record(rec, p, nil)
	old := conditions.Get(p, logsv1alpha1.ConditionReady).DeepCopy()
	set(metav1.ConditionFalse, logsv1alpha1.ReasonSinkNotFound)
	e.record(rec, p, old)
	old = conditions.Get(p, logsv1alpha1.ConditionReady).DeepCopy()
	set(metav1.ConditionTrue, logsv1alpha1.ReasonWorkersRunning)
	e.record(rec, p, old)
	close(rec.Events)
	var got []string
	for ev := range rec.Events {
		got = append(got, ev)
	}
	if len(got) != 3 {
		t.Fatalf("%d Events, want 3 (running, stalled, running again): %q", len(got), got)
	}
}
