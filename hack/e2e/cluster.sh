#!/usr/bin/env bash
# cluster.sh up|down STATE_DIR BIN_DIR
#
# Runs a single-node Kubernetes cluster from source-built binaries: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy,
# containerd (with Debian's runc and CNI plugins) and a kubelet. Everything
# lives under STATE_DIR; `down` kills what `up` started by PID and removes
# the mounts, network, iptables chains, cgroups and pod logs it created. It
# needs root. See docs/e2e.md and ../shared/REAL-NODE-FACTS.md.
set -euo pipefail

cmd=${1:?usage: cluster.sh up|down STATE_DIR BIN_DIR}
STATE=$(realpath -m "${2:?state dir}")
BIN=$(realpath -m "${3:-bin/k8s}")
NODE=${E2E_NODE_NAME:-e2e-node}
POD_CIDR=10.244.0.0/24
AGENT_JOURNAL=/var/lib/log-capturer/agent
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
ETCD_PORT=23790
API_PORT=6443
ISSUER=https://kubernetes.default.svc.cluster.local

node_ip() { ip -4 route get 1.1.1.1 2>/dev/null | awk '{for (i=1;i<NF;i++) if ($i=="src") print $(i+1)}' | head -1; }

log() { echo "cluster: $*" >&2; }

start() { # name, command...: runs it in the background, logs to STATE/logs/name.log
	local name=$1
	shift
	"$@" >"$STATE/logs/$name.log" 2>&1 &
	echo $! >"$STATE/pids/$name"
}

wait_for() { # what, seconds, command...
	local what=$1 secs=$2
	shift 2
	for _ in $(seq "$((secs * 5))"); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	log "timed out waiting for $what"
	return 1
}

pki() {
	local d=$STATE/pki ip=$1
	mkdir -p "$d"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=e2e-ca" -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
	cat >"$d/apiserver.ext" <<EOF
subjectAltName=IP:$SERVICE_IP,IP:127.0.0.1,IP:$ip,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EOF
	openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$d/apiserver.key" -out "$d/apiserver.csr" 2>/dev/null
	openssl x509 -req -in "$d/apiserver.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
		-extfile "$d/apiserver.ext" -out "$d/apiserver.crt" 2>/dev/null
	printf 'extendedKeyUsage=clientAuth\n' >"$d/client.ext"
	openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
		-keyout "$d/kubelet-client.key" -out "$d/kubelet-client.csr" 2>/dev/null
	openssl x509 -req -in "$d/kubelet-client.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
		-extfile "$d/client.ext" -out "$d/kubelet-client.crt" 2>/dev/null
	openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
	openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
	local admin kubelet
	admin=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	kubelet=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	printf '%s,admin,admin,"system:masters"\n%s,system:node:%s,kubelet,"system:nodes"\n' "$admin" "$kubelet" "$NODE" >"$d/tokens.csv"
	kubeconfig "$STATE/admin.kubeconfig" "$admin" "https://127.0.0.1:$API_PORT"
	kubeconfig "$STATE/kubelet.kubeconfig" "$kubelet" "https://127.0.0.1:$API_PORT"
}

kubeconfig() { # file, token, server
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: $3
    certificate-authority: $STATE/pki/ca.crt
users:
- name: e2e
  user:
    token: $2
contexts:
- name: e2e
  context: {cluster: e2e, user: e2e}
current-context: e2e
EOF
}

configs() {
	mkdir -p "$STATE/cni/net.d" "$STATE/containerd"
	cat >"$STATE/cni/net.d/10-e2e.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "e2e", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
	cat >"$STATE/containerd/config.toml" <<EOF
version = 3
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$STATE/containerd/containerd.sock"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$STATE/cni/net.d"
[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "registry.k8s.io/pause:3.10.2"
EOF
	cat >"$STATE/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$STATE/containerd/containerd.sock
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: Webhook}
readOnlyPort: 0
containerLogMaxSize: ${E2E_LOG_MAX_SIZE:-1Mi}
containerLogMaxFiles: ${E2E_LOG_MAX_FILES:-10}
containerLogMonitorInterval: ${E2E_LOG_MONITOR_INTERVAL:-3s}
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: /etc/resolv.conf
EOF
}

up() {
	if [ -e "$STATE/pids" ] && ls "$STATE/pids"/* >/dev/null 2>&1; then
		log "$STATE holds a cluster; run down first"
		return 1
	fi
	local ip
	ip=$(node_ip)
	mkdir -p "$STATE/logs" "$STATE/pids" "$STATE/etcd"
	ls -d /var/log/pods/* /var/log/containers/* >"$STATE/logs-before" 2>/dev/null || true
	# The node agent's journal (a hostPath of dist/install.yaml) is
	# this cluster's to remove when it was not there before.
	[ -e "$AGENT_JOURNAL" ] || touch "$STATE/agent-journal-ours"
	echo "$ip" >"$STATE/node-ip"
	log "node $NODE at $ip, state in $STATE"
	pki "$ip"
	configs
	sysctl -qw net.ipv4.ip_forward=1 || true
	modprobe br_netfilter 2>/dev/null || true
	sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true

	start etcd "$BIN/etcd" --data-dir "$STATE/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls http://127.0.0.1:23800 \
		--initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster default=http://127.0.0.1:23800
	local p=$STATE/pki
	start kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--secure-port "$API_PORT" --bind-address 0.0.0.0 --advertise-address "$ip" \
		--tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" --client-ca-file "$p/ca.crt" \
		--token-auth-file "$p/tokens.csv" --service-cluster-ip-range "$SERVICE_CIDR" \
		--service-account-issuer "$ISSUER" --api-audiences "$ISSUER" \
		--service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
		--authorization-mode Node,RBAC --allow-privileged \
		--kubelet-client-certificate "$p/kubelet-client.crt" --kubelet-client-key "$p/kubelet-client.key" \
		--kubelet-preferred-address-types InternalIP
	local k=$STATE/admin.kubeconfig
	wait_for kube-apiserver 90 curl -sf --cacert "$p/ca.crt" "https://127.0.0.1:$API_PORT/readyz" \
		-H "Authorization: Bearer $(cut -d, -f1 "$p/tokens.csv" | head -1)"
	start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$k" \
		--authentication-kubeconfig "$k" --authorization-kubeconfig "$k" --use-service-account-credentials \
		--service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
		--cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
		--controllers='*' --leader-elect=false --bind-address 127.0.0.1
	start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$k" --authentication-kubeconfig "$k" \
		--authorization-kubeconfig "$k" --leader-elect=false --bind-address 127.0.0.1
	start kube-proxy "$BIN/kube-proxy" --kubeconfig "$k" --proxy-mode iptables --cluster-cidr "$POD_CIDR" \
		--hostname-override "$NODE"
	PATH="$BIN:$PATH" start containerd "$BIN/containerd" --config "$STATE/containerd/config.toml"
	wait_for containerd 30 "$BIN/ctr" --address "$STATE/containerd/containerd.sock" version
	for img in "$STATE"/images/*.tar; do
		[ -e "$img" ] || continue
		"$BIN/ctr" --address "$STATE/containerd/containerd.sock" -n k8s.io images import --no-unpack=false "$img" >/dev/null
	done
	start kubelet "$BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
		--root-dir "$STATE/kubelet" --hostname-override "$NODE" --node-ip "$ip"
	wait_for "node $NODE Ready" 120 sh -c "'$BIN/kubectl' --kubeconfig '$k' get node '$NODE' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -q True"
	wait_for "ServiceAccount default/default" 60 "$BIN/kubectl" --kubeconfig "$k" -n default get serviceaccount default
	wait_for "kube-root-ca.crt" 60 "$BIN/kubectl" --kubeconfig "$k" -n default get configmap kube-root-ca.crt
	log "up: KUBECONFIG=$k"
}

down() {
	# Best effort: every step runs even when one before it failed.
	set +e +o pipefail
	[ -d "$STATE" ] || return 0
	local k=$STATE/admin.kubeconfig
	# The kubelet and containerd first, so that no new container starts.
	for name in kubelet kube-proxy kube-scheduler kube-controller-manager kube-apiserver etcd containerd; do
		local f=$STATE/pids/$name
		[ -f "$f" ] || continue
		kill "$(cat "$f")" 2>/dev/null || true
	done
	sleep 1
	for f in "$STATE"/pids/*; do
		[ -f "$f" ] || continue
		kill -9 "$(cat "$f")" 2>/dev/null || true
		rm -f "$f"
	done
	# Shims and the containers they run: only those of this state directory.
	for pid in $(pgrep -f "containerd-shim-runc-v2.*$STATE" || true); do
		pkill -9 -P "$pid" 2>/dev/null || true
		kill -9 "$pid" 2>/dev/null || true
	done
	if [ -d "$STATE/containerd/state" ]; then
		for c in $(runc --root "$STATE/containerd/state/io.containerd.runtime.v2.task/k8s.io" list -q 2>/dev/null || true); do
			runc --root "$STATE/containerd/state/io.containerd.runtime.v2.task/k8s.io" delete -f "$c" 2>/dev/null || true
		done
	fi
	[ -x "$BIN/kube-proxy" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
	# Mounts under the state directory, deepest first.
	grep " $STATE" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	ip link delete cni0 2>/dev/null || true
	for t in iptables ip6tables; do
		for table in nat filter mangle; do
			$t -t "$table" -S 2>/dev/null | grep -E '^-A (POSTROUTING|PREROUTING|OUTPUT|INPUT|FORWARD) .*(CNI-|KUBE-)' | sed 's/^-A/-D/' | while read -r rule; do
				eval "$t -t $table $rule" 2>/dev/null || true
			done
			for chain in $($t -t "$table" -S 2>/dev/null | awk '/^-N (CNI-|KUBE-)/ {print $2}'); do
				$t -t "$table" -F "$chain" 2>/dev/null || true
			done
			for chain in $($t -t "$table" -S 2>/dev/null | awk '/^-N (CNI-|KUBE-)/ {print $2}'); do
				$t -t "$table" -X "$chain" 2>/dev/null || true
			done
		done
	done
	conntrack -D -s "$POD_CIDR" >/dev/null 2>&1 || true
	rm -rf /var/lib/cni/networks/e2e /var/lib/cni/results/e2e-* 2>/dev/null || true
	# The kubelet's cgroups (cgroupfs driver: kubepods under every controller).
	for d in $(find /sys/fs/cgroup -maxdepth 2 -type d -name kubepods 2>/dev/null); do
		find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
	done
	# Pod logs this cluster created: what was not there before up.
	for d in /var/log/pods/* /var/log/containers/*; do
		[ -e "$d" ] || [ -L "$d" ] || continue
		grep -qxF "$d" "$STATE/logs-before" 2>/dev/null || rm -rf "$d"
	done
	if [ -e "$STATE/agent-journal-ours" ]; then
		rm -rf "$AGENT_JOURNAL"
		rmdir "$(dirname "$AGENT_JOURNAL")" 2>/dev/null || true
	fi
	rm -rf "$STATE"
	log "down"
}

case $cmd in
up) up ;;
down) down ;;
*) echo "usage: cluster.sh up|down STATE_DIR BIN_DIR" >&2; exit 2 ;;
esac
