package sinks

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/log-capturer/log-capturer/capture"
)

// egress decides, at dial time and so after DNS resolution, which addresses
// sinks and probes may connect to. Whatever a tenant writes as a URL (a name
// that resolves to 127.0.0.1, "http://:8080", a cloud metadata address, the
// API server's Service IP), the connection goes only where this allows.
type egress struct {
	// allowLoopback lets sinks reach loopback addresses (tests and the demo,
	// whose receivers run beside the operator).
	allowLoopback bool
	// cluster holds the API server's and the nodes' addresses; nil knows
	// none.
	cluster *ClusterAddresses
	// policy names the CapturePolicy whose allow ranges apply; allow, when
	// not empty, are the only ranges the sink may reach.
	policy string
	allow  []netip.Prefix
}

// ClusterAddresses are the addresses of the cluster's own machinery that no
// tenant may reach unless a policy names them: the API server's and the
// nodes' (the kubelet's port, node-local services). The operator keeps it up
// to date; it is safe for concurrent use.
type ClusterAddresses struct {
	mu sync.RWMutex
	// by maps an owner ("the API server", "node worker-1") to its addresses.
	by map[string][]netip.Addr
}

// NewClusterAddresses returns an empty set.
func NewClusterAddresses() *ClusterAddresses {
	return &ClusterAddresses{by: map[string][]netip.Addr{}}
}

// Set replaces the addresses of one owner; none removes it.
func (c *ClusterAddresses) Set(owner string, addrs []netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(addrs) == 0 {
		delete(c.by, owner)
		return
	}
	unmapped := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		unmapped[i] = a.Unmap()
	}
	c.by[owner] = unmapped
}

// owner returns whose address ip is, "" when nobody's.
func (c *ClusterAddresses) owner(ip netip.Addr) string {
	if c == nil {
		return ""
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	found := ""
	for o, addrs := range c.by {
		// The smallest name, so that the message is the same every time.
		if (found == "" || o < found) && slices.Contains(addrs, ip) {
			found = o
		}
	}
	return found
}

// egressFor builds the egress rules of one sink from the process's and the
// policy's.
func egressFor(allowLoopback bool, cluster *ClusterAddresses, p *capture.EgressPolicy) (egress, error) {
	e := egress{allowLoopback: allowLoopback, cluster: cluster}
	if p == nil {
		return e, nil
	}
	e.policy = p.Policy
	for _, c := range p.AllowCIDRs {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return e, fmt.Errorf("CapturePolicy %q: destinationCIDRs: %w", p.Policy, err)
		}
		e.allow = append(e.allow, pfx.Masked())
	}
	return e, nil
}

// metadataAddresses are cloud instance metadata endpoints outside the
// link-local ranges.
var metadataAddresses = []netip.Addr{
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	netip.MustParseAddr("fd00:ec2::254"),   // AWS over IPv6
}

// ErrDestinationDenied is wrapped by the error of a connection refused by
// the egress rules.
var ErrDestinationDenied = fmt.Errorf("destination not allowed")

// check refuses an address no tenant may reach, and, under a policy with
// allow ranges, every address outside them.
func (e egress) check(ip netip.Addr) error {
	ip = ip.Unmap()
	allowed := slices.ContainsFunc(e.allow, func(p netip.Prefix) bool { return p.Contains(ip) })
	why := ""
	switch {
	case ip.IsUnspecified():
		why = "an unspecified address, which reaches this host"
	case ip.IsMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsLinkLocalMulticast():
		why = "a multicast address"
	case len(e.allow) > 0 && !allowed:
		why = fmt.Sprintf("outside the destinationCIDRs of CapturePolicy %q", e.policy)
	case ip.IsLoopback() && !e.allowLoopback:
		why = "a loopback address (the operator's own ports); the operator's admin may allow it with --allow-loopback-egress"
	case allowed || ip.IsLoopback():
		// Named by the admin's policy (the API server, a node or a
		// link-local range may be meant), or loopback allowed by the
		// admin's flag, whoever listens there.
	case ip.IsLinkLocalUnicast():
		why = "a link-local address (cloud metadata lives there)"
	case slices.Contains(metadataAddresses, ip):
		why = "a cloud metadata address"
	default:
		if o := e.cluster.owner(ip); o != "" {
			why = "an address of " + o + "; a CapturePolicy's destinationCIDRs may allow it"
		}
	}
	if why != "" {
		return fmt.Errorf("%w: %s is %s", ErrDestinationDenied, ip, why)
	}
	return nil
}

// control is a net.Dialer Control function applying check to the address
// about to be dialled.
func (e egress) control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not an address", ErrDestinationDenied, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address", ErrDestinationDenied, host)
	}
	return e.check(ip)
}

// dialer returns the dialer of the sinks' transports.
func (e egress) dialer() *net.Dialer {
	return &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: e.control}
}
