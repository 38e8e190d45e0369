#!/usr/bin/env bash
# run.sh: make e2e. Installs the node's Debian packages when missing, brings
# the single-node cluster up (retried: bring-up may be retried, assertions
# never), loads the images, runs the e2e suite and always tears down.
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE=${E2E_STATE:?}
BIN=${E2E_BIN:?}

if [ "$(id -u)" != 0 ]; then
	echo "e2e: needs root (a kubelet, containerd, iptables and cgroups)" >&2
	exit 1
fi
missing=()
for p in runc:/usr/sbin/runc containernetworking-plugins:/usr/lib/cni/bridge iptables:/usr/sbin/iptables conntrack:/usr/sbin/conntrack; do
	[ -e "${p#*:}" ] || missing+=("${p%%:*}")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "e2e: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq "${missing[@]}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi

hack/e2e/cluster.sh down "$STATE" "$BIN" # what a killed run left behind
trap 'hack/e2e/cluster.sh down "$STATE" "$BIN"' EXIT
up=0
for attempt in 1 2 3; do
	mkdir -p "$STATE/images"
	cp "$STATE"-images/*.tar "$STATE/images/"
	if hack/e2e/cluster.sh up "$STATE" "$BIN"; then
		up=1
		break
	fi
	echo "e2e: bring-up attempt $attempt failed; logs:" >&2
	tail -n 20 "$STATE"/logs/*.log >&2 || true
	hack/e2e/cluster.sh down "$STATE" "$BIN"
done
[ $up = 1 ] || { echo "e2e: the cluster did not come up" >&2; exit 1; }

failures="$STATE-failures.txt"
rm -f "$failures"
rc=0
E2E_KUBECONFIG="$STATE/admin.kubeconfig" E2E_NODE_IP="$(cat "$STATE/node-ip")" E2E_KUBECTL="$BIN/kubectl" \
	E2E_INSTALL="$PWD/dist/install-api.yaml" E2E_INSTALL_AGENT="$PWD/dist/install.yaml" E2E_STATE="$STATE" \
	E2E_CHART="$PWD/charts/log-capturer" E2E_HELM="${E2E_HELM:?}" E2E_PREVIOUS_INSTALL="${E2E_PREVIOUS_INSTALL:?}" E2E_FAILURES="$failures" \
	go test -count=1 -tags e2e -timeout 25m ./test/e2e/ -v -args -ginkgo.v || rc=$?
trap - EXIT
hack/e2e/cluster.sh down "$STATE" "$BIN"
# Why a spec failed, last, where CI's excerpt of the output looks.
if [ -s "$failures" ]; then
	echo "e2e: the failed specs said:"
	cat "$failures"
fi
exit $rc
