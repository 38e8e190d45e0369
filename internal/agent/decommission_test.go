package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/log-capturer/log-capturer/capture"
	"github.com/log-capturer/log-capturer/capture/positionstore"
)

// answer is one scripted reply of fakeOwners.
type answer struct {
	pod *corev1.Pod
	ds  *appsv1.DaemonSet
	err error
}

// fakeOwners answers the pod reads in turn (the last one again when they
// run out) and every DaemonSet read with ds, counting the reads.
type fakeOwners struct {
	pods     []answer
	ds       answer
	podReads int
	dsReads  []string
}

// Pod answers the next scripted pod read.
func (f *fakeOwners) Pod(context.Context) (*corev1.Pod, error) {
	a := f.pods[min(f.podReads, len(f.pods)-1)]
	f.podReads++
	return a.pod, a.err
}

// DaemonSet answers ds, noting the name asked for.
func (f *fakeOwners) DaemonSet(_ context.Context, name string) (*appsv1.DaemonSet, error) {
	f.dsReads = append(f.dsReads, name)
	return f.ds.ds, f.ds.err
}

// TestDecommissioned: the decision from every answer the API server may
// give; only an uninstall removes the journal.
func TestDecommissioned(t *testing.T) {
	const dsUID = types.UID("ds-uid")
	owned := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "log-capturer-agents", Name: "log-capturer-agent-x7k2p",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "log-capturer-agent", UID: dsUID, Controller: ptr.To(true)}}}}
	byHand := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "log-capturer-agents", Name: "agent"}}
	sameDS := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "log-capturer-agents", Name: "log-capturer-agent", UID: dsUID}}
	deleting := sameDS.DeepCopy()
	deleting.DeletionTimestamp = ptr.To(metav1.Now())
	deleting.Finalizers = []string{metav1.FinalizerDeleteDependents}
	otherDS := sameDS.DeepCopy()
	otherDS.UID = "another-uid"
	dsGR := schema.GroupResource{Group: "apps", Resource: "daemonsets"}
	podGR := schema.GroupResource{Resource: "pods"}
	unauthorized := apierrors.NewUnauthorized("Unauthorized")
	forbiddenDS := apierrors.NewForbidden(dsGR, "log-capturer-agent", errors.New("RBAC: role not found"))
	forbiddenPod := apierrors.NewForbidden(podGR, owned.Name, errors.New("RBAC: clusterrole not found"))
	ok := answer{pod: owned}

	for _, tc := range []struct {
		name     string
		owners   fakeOwners
		want     bool
		reason   string
		podReads int
	}{
		{name: "the DaemonSet is not found", owners: fakeOwners{pods: []answer{ok}, ds: answer{err: apierrors.NewNotFound(dsGR, "log-capturer-agent")}},
			want: true, reason: "no longer exists", podReads: 1},
		{name: "the DaemonSet is being deleted", owners: fakeOwners{pods: []answer{ok}, ds: answer{ds: deleting}},
			want: true, reason: "is being deleted", podReads: 1},
		{name: "the DaemonSet is another one", owners: fakeOwners{pods: []answer{ok}, ds: answer{ds: otherDS}},
			want: true, reason: "was replaced (UID another-uid, the pod's owner was ds-uid)", podReads: 1},
		{name: "the same DaemonSet (a rolling update) keeps the journal", owners: fakeOwners{pods: []answer{ok}, ds: answer{ds: sameDS}},
			want: false, reason: "remains", podReads: 1},
		{name: "a transient error reading the DaemonSet keeps the journal", owners: fakeOwners{pods: []answer{ok}, ds: answer{err: apierrors.NewServiceUnavailable("etcdserver: leader changed")}},
			want: false, reason: "cannot tell", podReads: 1},
		{name: "a timeout keeps the journal", owners: fakeOwners{pods: []answer{ok}, ds: answer{err: context.DeadlineExceeded}},
			want: false, reason: "cannot tell", podReads: 1},
		{name: "a network error reading the pod keeps the journal", owners: fakeOwners{pods: []answer{{err: errors.New("dial tcp 10.96.0.1:443: connect: connection refused")}}},
			want: false, reason: "connection refused", podReads: 1},
		{name: "Unauthorized twice", owners: fakeOwners{pods: []answer{{err: unauthorized}, {err: unauthorized}}},
			want: true, reason: "ServiceAccount is no longer accepted", podReads: 2},
		{name: "Forbidden then Unauthorized (the bindings, then the ServiceAccount deleted)", owners: fakeOwners{pods: []answer{{err: forbiddenPod}, {err: unauthorized}}},
			want: true, reason: "ServiceAccount is no longer accepted", podReads: 2},
		{name: "Unauthorized then the pod read, its DaemonSet the same, keeps the journal", owners: fakeOwners{pods: []answer{{err: unauthorized}, ok}, ds: answer{ds: sameDS}},
			want: false, reason: "remains", podReads: 2},
		{name: "Unauthorized then a network error keeps the journal", owners: fakeOwners{pods: []answer{{err: unauthorized}, {err: errors.New("i/o timeout")}}},
			want: false, reason: "i/o timeout", podReads: 2},
		{name: "the DaemonSet refused and then the pod too", owners: fakeOwners{pods: []answer{ok, {err: unauthorized}}, ds: answer{err: unauthorized}},
			want: true, reason: "ServiceAccount is no longer accepted", podReads: 2},
		{name: "the DaemonSet refused while the pod reads (the Role missing) keeps the journal", owners: fakeOwners{pods: []answer{ok}, ds: answer{err: forbiddenDS}},
			want: false, reason: "is the Role log-capturer-agent-daemonset missing?", podReads: 2},
		{name: "a pod no DaemonSet controls keeps the journal", owners: fakeOwners{pods: []answer{{pod: byHand}}},
			want: false, reason: "not controlled by a DaemonSet", podReads: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := decommissioned(t.Context(), &tc.owners, time.Millisecond)
			t.Logf("decommissioned=%v: %s", got, reason)
			if got != tc.want {
				t.Errorf("decommissioned = %v, want %v (%s)", got, tc.want, reason)
			}
			if !strings.Contains(reason, tc.reason) {
				t.Errorf("reason %q does not say %q", reason, tc.reason)
			}
			if tc.owners.podReads != tc.podReads {
				t.Errorf("the pod was read %d times, want %d", tc.owners.podReads, tc.podReads)
			}
			for _, name := range tc.owners.dsReads {
				if name != "log-capturer-agent" {
					t.Errorf("read DaemonSet %q, not the pod's owner", name)
				}
			}
		})
	}
}

// TestDecommissionedGivesUpWithItsContext: the pause before a second look
// ends with the context, and an undecided answer keeps the journal.
func TestDecommissionedGivesUpWithItsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	f := &fakeOwners{pods: []answer{{err: apierrors.NewUnauthorized("Unauthorized")}}}
	start := time.Now()
	got, reason := decommissioned(ctx, f, time.Hour)
	if got || time.Since(start) > 10*time.Second {
		t.Fatalf("decommissioned = %v after %v (%s), want false within the context's deadline", got, time.Since(start), reason)
	}
}

// TestRemoveJournal: the journal's own files go (its pipelines' files, a
// leftover temporary file, LOCK), every other file stays.
func TestRemoveJournal(t *testing.T) {
	dir := t.TempDir()
	j, err := positionstore.OpenJournal(t.Context(), dir, positionstore.JournalOptions{Holder: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for _, ref := range []capture.PipelineRef{{Namespace: "shop", Name: "web", UID: "u1"}, {Namespace: "shop", Name: "orders", UID: "u2"}} {
		if err := j.Save(t.Context(), ref, []byte("positions of "+ref.Name), 1); err != nil {
			t.Fatal(err)
		}
	}
	strays := map[string]string{
		"notes.txt":    "an admin's notes",
		"copy.pos":     "not a journal file",     // a .pos file of no pipeline
		"shop.old.pos": "LCPJ but not whole",     // damaged: the journal does not list it
		"LOCK.bak":     "a copy of the lock",     // not the lock
		"tmp-1":        "not the journal's temp", // without the leading dot
	}
	for name, content := range strays {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, ".tmp-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	// A temporary file a failed write left.
	if err := os.WriteFile(filepath.Join(dir, ".tmp-12345"), []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}

	removed, err := removeJournal(t.Context(), j)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".tmp-12345", "LOCK", "shop.orders.pos", "shop.web.pos"}
	if !slices.Equal(removed, want) {
		t.Errorf("removed %q, want %q", removed, want)
	}
	left := dirEntries(t, dir)
	wantLeft := []string{".tmp-dir", "LOCK.bak", "copy.pos", "notes.txt", "shop.old.pos", "tmp-1"}
	if !slices.Equal(left, wantLeft) {
		t.Errorf("the directory holds %q, want %q", left, wantLeft)
	}
	for name, content := range strays {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != content {
			t.Errorf("stray %s: %q, %v; want it unchanged", name, b, err)
		}
	}
	t.Logf("removed %q, left %q", removed, left)
}

// TestCleanUpIfDecommissioned: one log line either way; the journal's
// files go only when the agent is decommissioned.
func TestCleanUpIfDecommissioned(t *testing.T) {
	owned := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "log-capturer-agents", Name: "log-capturer-agent-x7k2p",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "log-capturer-agent", UID: "ds-uid", Controller: ptr.To(true)}}}}
	same := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "log-capturer-agent", UID: "ds-uid"}}
	gone := apierrors.NewNotFound(schema.GroupResource{Group: "apps", Resource: "daemonsets"}, "log-capturer-agent")
	for _, tc := range []struct {
		name     string
		ds       answer
		wantLog  []string
		wantLeft []string
	}{
		{name: "kept", ds: answer{ds: same}, wantLog: []string{"keeping the positions journal", "remains"},
			wantLeft: []string{"LOCK", "notes.txt", "shop.web.pos"}},
		{name: "decommissioned", ds: answer{err: gone}, wantLog: []string{"removed its positions journal from the node", `"removed"=["LOCK" "shop.web.pos"]`, "no longer exists"},
			wantLeft: []string{"notes.txt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j, err := positionstore.OpenJournal(t.Context(), dir, positionstore.JournalOptions{Holder: "test"})
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			if err := j.Save(t.Context(), capture.PipelineRef{Namespace: "shop", Name: "web", UID: "u1"}, []byte("p"), 1); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			var logged []string
			log := funcr.New(func(_, args string) { logged = append(logged, args) }, funcr.Options{})
			cleanUpIfDecommissioned(t.Context(), &fakeOwners{pods: []answer{{pod: owned}}, ds: tc.ds}, j, log)
			if len(logged) != 1 {
				t.Fatalf("logged %q, want one line", logged)
			}
			t.Log(logged[0])
			for _, want := range tc.wantLog {
				if !strings.Contains(logged[0], want) {
					t.Errorf("the line does not say %q", want)
				}
			}
			left := dirEntries(t, dir)
			if !slices.Equal(left, tc.wantLeft) {
				t.Errorf("the directory holds %q, want %q", left, tc.wantLeft)
			}
		})
	}
}

// dirEntries lists the names in dir, sorted.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
