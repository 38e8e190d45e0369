package controllers

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// AddressBook keeps the addresses of the cluster's own machinery, which
// sinks may not reach unless a CapturePolicy names them.
type AddressBook interface {
	// Set replaces the addresses of one owner; none removes it.
	Set(owner string, addrs []netip.Addr)
}

// NodeAddressReconciler keeps every Node's addresses in an AddressBook, so
// that a tenant's sink cannot reach a kubelet or another node-local port.
type NodeAddressReconciler struct {
	Client client.Client
	Book   AddressBook
}

// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch

// Reconcile records the Node's addresses, or forgets them once it is gone.
func (r *NodeAddressReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	owner := "node " + req.Name
	n := &corev1.Node{}
	if err := r.Client.Get(ctx, req.NamespacedName, n); err != nil {
		if apierrors.IsNotFound(err) {
			r.Book.Set(owner, nil)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("reading node %s: %w", req.Name, err)
	}
	r.Book.Set(owner, NodeAddresses(n))
	return ctrl.Result{}, nil
}

// NodeAddresses returns the IP addresses a Node reports (a Hostname
// address counts when it is an IP).
func NodeAddresses(n *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, a := range n.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out = append(out, ip)
		}
	}
	return out
}

// SetupWithManager registers the reconciler.
func (r *NodeAddressReconciler) SetupWithManager(mgr ctrl.Manager) error {
	//nolint:wrapcheck // the caller names the controller
	return ctrl.NewControllerManagedBy(mgr).Named("node-addresses").For(&corev1.Node{}).Complete(r)
}
