package sinks

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/log-capturer/log-capturer/capture"
)

// TestEgressCheck is the decision table of the dial-time check: what is
// refused always, what only a policy's ranges allow, and what the ranges
// shut out.
func TestEgressCheck(t *testing.T) {
	cluster := NewClusterAddresses()
	cluster.Set("the API server", []netip.Addr{netip.MustParseAddr("10.96.0.1"), netip.MustParseAddr("172.18.0.2")})
	cluster.Set("node worker-1", []netip.Addr{netip.MustParseAddr("172.18.0.3"), netip.MustParseAddr("::ffff:172.18.0.4")})
	cluster.Set("node gone", []netip.Addr{netip.MustParseAddr("172.18.0.9")})
	cluster.Set("node gone", nil)
	policy := &capture.EgressPolicy{Policy: "tenants", AllowCIDRs: []string{"10.20.0.0/16", "172.18.0.3/32", "169.254.0.0/16", "fd00::/8"}}
	for _, tc := range []struct {
		name     string
		loopback bool
		policy   *capture.EgressPolicy
		ip       string
		denied   string // a part of the reason; "" when allowed
	}{
		{name: "an ordinary address", ip: "10.1.2.3"},
		{name: "the API server's Service IP", ip: "10.96.0.1", denied: "an address of the API server"},
		{name: "the API server's endpoint", ip: "172.18.0.2", denied: "an address of the API server"},
		{name: "a node", ip: "172.18.0.3", denied: "an address of node worker-1"},
		{name: "a node, IPv4-mapped", ip: "::ffff:172.18.0.3", denied: "node worker-1"},
		{name: "a node given as mapped", ip: "172.18.0.4", denied: "node worker-1"},
		{name: "a node that went", ip: "172.18.0.9"},
		{name: "metadata", ip: "169.254.169.254", denied: "link-local"},
		{name: "Alibaba metadata", ip: "100.100.100.200", denied: "cloud metadata"},
		{name: "loopback", ip: "127.0.0.1", denied: "loopback"},
		{name: "loopback allowed", loopback: true, ip: "127.0.0.1"},
		{name: "unspecified", loopback: true, ip: "0.0.0.0", denied: "unspecified"},
		{name: "multicast", ip: "224.0.0.1", denied: "multicast"},
		{name: "in the policy's ranges", policy: policy, ip: "10.20.3.4"},
		{name: "outside the policy's ranges", policy: policy, ip: "10.1.2.3", denied: `outside the destinationCIDRs of CapturePolicy "tenants"`},
		{name: "a node the policy names", policy: policy, ip: "172.18.0.3"},
		// An admin whose ranges contain everything allows the API server too.
		{name: "the API server in 0.0.0.0/0", policy: &capture.EgressPolicy{Policy: "tenants", AllowCIDRs: []string{"0.0.0.0/0"}}, ip: "10.96.0.1"},
		{name: "link-local the policy names", policy: policy, ip: "169.254.169.254"},
		{name: "IPv6 in the ranges", policy: policy, ip: "fd00::1"},
		{name: "loopback outside the ranges", loopback: true, policy: policy, ip: "127.0.0.1", denied: "outside the destinationCIDRs"},
		{name: "multicast even when named", policy: &capture.EgressPolicy{Policy: "p", AllowCIDRs: []string{"224.0.0.0/4"}}, ip: "224.0.0.1", denied: "multicast"},
		{name: "a policy without ranges", policy: &capture.EgressPolicy{Policy: "p"}, ip: "10.96.0.1", denied: "the API server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := egressFor(tc.loopback, cluster, tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			err = e.check(netip.MustParseAddr(tc.ip))
			switch {
			case tc.denied == "" && err != nil:
				t.Fatalf("%s refused: %v", tc.ip, err)
			case tc.denied != "" && (!errors.Is(err, ErrDestinationDenied) || !strings.Contains(err.Error(), tc.denied)):
				t.Fatalf("%s: error %v, want it refused as %q", tc.ip, err, tc.denied)
			}
		})
	}
	if _, err := egressFor(false, cluster, &capture.EgressPolicy{Policy: "p", AllowCIDRs: []string{"10.0.0.0/33"}}); err == nil {
		t.Fatal("a bad range was taken")
	}
}
