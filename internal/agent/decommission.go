package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/log-capturer/log-capturer/capture/positionstore"
)

const (
	// decommissionTimeout bounds the whole decision at shutdown, every
	// request and the pause before a second look included; the pod's
	// termination grace (60s) also covers the drain and the final report.
	decommissionTimeout = 10 * time.Second
	// decommissionRecheck is the pause before the second look that
	// confirms a refused answer.
	decommissionRecheck = time.Second
	// journalTempPrefix begins the temporary files positionstore.Journal
	// writes before it renames them; OpenJournal removes the same ones a
	// crashed writer left.
	journalTempPrefix = ".tmp-"
	// journalSuffix ends a pipeline's file in a positionstore.Journal.
	journalSuffix = ".pos"
)

// ownerChecker reads what decides whether the agent is decommissioned: its
// own pod, and the DaemonSet of the pod's namespace that owns it.
type ownerChecker interface {
	// Pod returns the agent's own pod.
	Pod(ctx context.Context) (*corev1.Pod, error)
	// DaemonSet returns the DaemonSet name of the pod's namespace.
	DaemonSet(ctx context.Context, name string) (*appsv1.DaemonSet, error)
}

// apiOwners is the ownerChecker of a running agent: direct reads from the
// API server (no cache, so that a refused answer is seen as one).
type apiOwners struct {
	cs  kubernetes.Interface
	pod types.NamespacedName
}

// Pod reads the agent's pod.
func (a apiOwners) Pod(ctx context.Context) (*corev1.Pod, error) {
	p, err := a.cs.CoreV1().Pods(a.pod.Namespace).Get(ctx, a.pod.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the agent's pod %s: %w", a.pod, err)
	}
	return p, nil
}

// DaemonSet reads DaemonSet name of the agent's namespace.
func (a apiOwners) DaemonSet(ctx context.Context, name string) (*appsv1.DaemonSet, error) {
	ds, err := a.cs.AppsV1().DaemonSets(a.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the DaemonSet %s/%s: %w", a.pod.Namespace, name, err)
	}
	return ds, nil
}

// decommissioned says whether the agent stops because its DaemonSet is
// being removed (an uninstall), with the reason. It is true only when the
// API server says so: the DaemonSet that controls the agent's pod is not
// found, is being deleted, or is another one (its UID is not the pod's
// owner reference's); or the agent's ServiceAccount is no longer accepted,
// seen as two refused answers (Unauthorized or Forbidden) pause apart, the
// second one to a read of its own pod, which the DaemonSet's Role does not
// govern. Anything else keeps the journal: the DaemonSet as it was (a
// rolling update or a restart, whose next agent takes the journal over),
// a pod without a DaemonSet controller, and every other error (network,
// timeout, 5xx), since losing the positions on a transient error would
// cost more than a directory left behind.
func decommissioned(ctx context.Context, c ownerChecker, pause time.Duration) (bool, string) {
	pod, err := c.Pod(ctx)
	if refused(err) {
		first := err
		if pod, err = podAgain(ctx, c, pause); refused(err) {
			return true, fmt.Sprintf("the agent's ServiceAccount is no longer accepted: %v; again %v later: %v", first, pause, err)
		}
	}
	if err != nil {
		return false, fmt.Sprintf("cannot tell whether the agent is decommissioned: %v", err)
	}
	owner := metav1.GetControllerOf(pod)
	if owner == nil || owner.Kind != "DaemonSet" || !strings.HasPrefix(owner.APIVersion, appsv1.GroupName+"/") {
		return false, fmt.Sprintf("the agent's pod %s/%s is not controlled by a DaemonSet", pod.Namespace, pod.Name)
	}
	ds, err := c.DaemonSet(ctx, owner.Name)
	switch {
	case apierrors.IsNotFound(err):
		return true, fmt.Sprintf("the agent's DaemonSet %s/%s no longer exists", pod.Namespace, owner.Name)
	case refused(err):
		if _, again := podAgain(ctx, c, pause); refused(again) {
			return true, fmt.Sprintf("the agent's ServiceAccount is no longer accepted: %v; then %v", err, again)
		}
		return false, fmt.Sprintf("%v, while the agent may still read its pod: is the Role log-capturer-agent-daemonset missing?", err)
	case err != nil:
		return false, fmt.Sprintf("cannot tell whether the agent is decommissioned: %v", err)
	case ds.DeletionTimestamp != nil:
		return true, fmt.Sprintf("the agent's DaemonSet %s/%s is being deleted", pod.Namespace, owner.Name)
	case ds.UID != owner.UID:
		return true, fmt.Sprintf("the agent's DaemonSet %s/%s was replaced (UID %s, the pod's owner was %s)", pod.Namespace, owner.Name, ds.UID, owner.UID)
	}
	return false, fmt.Sprintf("the agent's DaemonSet %s/%s remains: the next agent of the node takes the journal over", pod.Namespace, owner.Name)
}

// refused is an answer of the API server that refuses the agent's
// credentials (Unauthorized) or their rights (Forbidden).
func refused(err error) bool {
	return apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err)
}

// podAgain reads the agent's pod after pause, or returns ctx's error.
func podAgain(ctx context.Context, c ownerChecker, pause time.Duration) (*corev1.Pod, error) {
	t := time.NewTimer(pause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting to read the agent's pod again: %w", context.Cause(ctx))
	case <-t.C:
	}
	return c.Pod(ctx)
}

// cleanUpIfDecommissioned removes the agent's journal j from the node when
// decommissioned says the agent is being uninstalled, and logs once what
// it decided and removed. Its API requests take at most
// decommissionTimeout, even after ctx ended.
func cleanUpIfDecommissioned(ctx context.Context, c ownerChecker, j *positionstore.Journal, log logr.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), decommissionTimeout)
	defer cancel()
	gone, why := decommissioned(ctx, c, decommissionRecheck)
	if !gone {
		log.Info("keeping the positions journal on the node", "dir", j.Dir(), "reason", why)
		return
	}
	removed, err := removeJournal(ctx, j)
	if err != nil {
		log.Error(err, "the agent is decommissioned; removing its positions journal left files behind", "dir", j.Dir(), "removed", removed, "reason", why)
		return
	}
	log.Info("the agent is decommissioned: removed its positions journal from the node (the directory itself is the hostPath's and stays)",
		"dir", j.Dir(), "removed", removed, "reason", why)
}

// removeJournal removes the files of the positions journal j that are the
// journal's own, while j still holds the directory's lock: every pipeline's
// file j lists (whole files of its format under their pipeline's name,
// removed through j), the temporary files of its writes and its LOCK file.
// Anything else in the directory stays, a damaged or hand-copied ".pos"
// file too, and so does the directory, which the agent cannot remove (it
// is the hostPath's mount point). It returns the names it removed, sorted,
// also when it failed to remove some.
func removeJournal(ctx context.Context, j *positionstore.Journal) ([]string, error) {
	dir := j.Dir()
	before, err := names(dir, journalSuffix)
	if err != nil {
		return nil, err
	}
	var errs []error
	refs, err := j.Refs()
	if err != nil {
		errs = append(errs, err)
	}
	for _, ref := range refs {
		if err := j.Delete(ctx, ref); err != nil {
			errs = append(errs, err)
		}
	}
	after, err := names(dir, journalSuffix)
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	var removed []string
	for _, n := range before {
		if !slices.Contains(after, n) {
			removed = append(removed, n)
		}
	}
	files, err := names(dir, "")
	if err != nil {
		return removed, errors.Join(append(errs, err)...)
	}
	for _, n := range files {
		if n != positionstore.LockFileName && !strings.HasPrefix(n, journalTempPrefix) {
			continue
		}
		err := os.Remove(filepath.Join(dir, n))
		switch {
		case err == nil:
			removed = append(removed, n)
		case !errors.Is(err, fs.ErrNotExist):
			errs = append(errs, fmt.Errorf("removing %s: %w", filepath.Join(dir, n), err))
		}
	}
	slices.Sort(removed)
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("removing the positions journal in %s: %w", dir, err)
	}
	return removed, nil
}

// names lists the regular files of dir whose names end in suffix.
func names(dir, suffix string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing the positions journal %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), suffix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
