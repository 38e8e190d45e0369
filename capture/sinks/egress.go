package sinks

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// egress decides, at dial time and so after DNS resolution, which addresses
// sinks and probes may connect to. Whatever a tenant writes as a URL (a name
// that resolves to 127.0.0.1, "http://:8080", a cloud metadata address),
// the connection goes only where this allows.
type egress struct {
	// allowLoopback lets sinks reach loopback addresses (tests and the demo,
	// whose receivers run beside the operator).
	allowLoopback bool
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

// check refuses an address of a kind no tenant may reach.
func (e egress) check(ip netip.Addr) error {
	ip = ip.Unmap()
	why := ""
	switch {
	case ip.IsLoopback() && !e.allowLoopback:
		why = "a loopback address (the operator's own ports); the operator's admin may allow it with --allow-loopback-egress"
	case ip.IsUnspecified():
		why = "an unspecified address, which reaches this host"
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast():
		why = "a link-local address (cloud metadata lives there)"
	case ip.IsMulticast() || ip.IsInterfaceLocalMulticast():
		why = "a multicast address"
	}
	for _, m := range metadataAddresses {
		if ip == m {
			why = "a cloud metadata address"
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
