#!/usr/bin/env bash
# A local Kubernetes control plane for tests: kube-apiserver, kube-controller-manager, kube-scheduler
# and etcd as plain processes on 127.0.0.1, with nodes and pods simulated by kwok. Every binary is
# built from Go modules by tools/cluster-tools.sh (pins in tools/versions.env).
#
# Usage: tools/cluster.sh up          build the tools if needed, create the cluster (a no-op when it
#                                     is already running; recreated when its processes are gone), wait
#                                     until a Deployment becomes Available, print the kubeconfig
#        tools/cluster.sh down        delete the cluster
#        tools/cluster.sh kubeconfig  print the kubeconfig path (fails when the cluster is not up)
#        tools/cluster.sh status      tell whether the cluster is up, and show its nodes
#
# Environment:
#   OVERSEER_CACHE        cache root (default $HOME/.cache/overseer)
#   OVERSEER_CLUSTER      cluster name (default overseer)
#   OVERSEER_KUBECONFIG   where the kubeconfig is written (default $OVERSEER_CACHE/cluster/kubeconfig)
#   OVERSEER_KWOK_NODES   simulated nodes to create (default 4: each offers 32 CPUs, and the
#                         apply benchmark runs 50 environments that request 1 CPU each)
#
# Everything kwokctl writes (cluster state, pki, etcd data, logs) lives in
# $OVERSEER_CACHE/cluster/kwok (KWOK_WORKDIR), never in the work tree nor in ~/.kube or ~/.kwok.
# kubectl for the cluster: $("tools/cluster-tools.sh" --bin-dir)/kubectl --kubeconfig "$(tools/cluster.sh kubeconfig)"
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${OVERSEER_CACHE:-$HOME/.cache/overseer}"
name="${OVERSEER_CLUSTER:-overseer}"
kubeconfig="${OVERSEER_KUBECONFIG:-$cache/cluster/kubeconfig}"
nodes="${OVERSEER_KWOK_NODES:-4}"
export KWOK_WORKDIR="$cache/cluster/kwok"
bin="$("$here/cluster-tools.sh" --bin-dir)"
stages="$(dirname "$bin")/stages"
# kwokctl runs the first kubectl on PATH (it only falls back to kubectlBinary); use ours.
export PATH="$bin:$PATH"

log() { echo "cluster: $*" >&2; }

# 9>&-: the processes kwokctl starts must not inherit the lock held by `up`.
kwokctl() { "$bin/kwokctl" -v WARN --name "$name" "$@" 9>&-; }
kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" --cache-dir "$cache/cluster/kubectl-cache" "$@"; }

cluster_exists() { [[ -f "$KWOK_WORKDIR/clusters/$name/kwok.yaml" ]]; }

# The API server answers /readyz through the kubeconfig.
api_ready() {
  [[ -f "$kubeconfig" && -x "$bin/kubectl" ]] && kubectl get --raw /readyz --request-timeout=3s >/dev/null 2>&1
}

wait_ready() {
  local deadline=$((SECONDS + ${1:-120}))
  until api_ready; do
    if ((SECONDS > deadline)); then
      log "the API server did not become ready; logs in $KWOK_WORKDIR/clusters/$name/logs"
      return 1
    fi
    sleep 0.5
  done
}

# Simulated nodes: kwok marks them Ready, and pods scheduled on them become Running and Ready.
# They offer local disk (ephemeral-storage) as real nodes do: charts request and limit it.
ensure_nodes() {
  local have
  have="$(kubectl get nodes -o jsonpath='{range .items[*]}{.status.allocatable.ephemeral-storage}{"\n"}{end}' 2>/dev/null | grep -c . || true)"
  if ((have < nodes)); then
    log "creating $nodes simulated node(s)"
    kubectl delete nodes --all --wait=false >/dev/null 2>&1 || true  # older ones lack the disk
    kwokctl scale node --replicas "$nodes" --param '.allocatable["ephemeral-storage"]="500Gi"' >&2
  fi
  kubectl wait --for=condition=Ready node --all --timeout=60s >&2
}

# The end-to-end check that tests rely on: a one-replica Deployment becomes Available. That needs the
# controller-manager and the scheduler to hold their leader leases and kwok to hold the node leases,
# none of which /readyz or a node's Ready condition shows.
probe_workload() {
  local timeout="${1:-120}" probe="overseer-probe-$$-$RANDOM" ok=0
  kubectl create deployment "$probe" -n default --image=overseer.invalid/probe:1 >/dev/null 2>&1 || return 1
  kubectl wait --for=condition=Available "deployment/$probe" -n default --timeout="${timeout}s" \
    >/dev/null 2>&1 || ok=1
  kubectl delete deployment "$probe" -n default --wait=false >/dev/null 2>&1 || true
  return "$ok"
}

# A pod labelled overseer.test/kwok-unready=true is "started but never ready": phase Running, its
# containers running with ready=false, conditions Ready/ContainersReady False (reason
# ContainersNotReady), as with a readiness probe that never passes; a Deployment of such pods never
# becomes available. Its weight (1) beats kwok's pod-ready stage (no weight), so the choice is certain.
unready_stage() {
  cat <<'EOF'
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: overseer-pod-unready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.labels["overseer.test/kwok-unready"]'
      operator: 'In'
      values:
      - 'true'
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
  weight: 1
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        message: "simulated by kwok: readiness never succeeds"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
EOF
}

write_config() {
  # bindAddress is only settable through the configuration file (the default is 0.0.0.0).
  cat <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  kubeVersion: ${KUBERNETES_VERSION}
  etcdVersion: ${ETCD_VERSION#v}
  bindAddress: 127.0.0.1
  kubeApiserverBinary: $bin/kube-apiserver
  kubeControllerManagerBinary: $bin/kube-controller-manager
  kubeSchedulerBinary: $bin/kube-scheduler
  kubectlBinary: $bin/kubectl
  kwokControllerBinary: $bin/kwok
  etcdBinary: $bin/etcd
EOF
  # Stages given in the configuration replace kwokctl's defaults, so the defaults (copied from the
  # pinned kwok module by cluster-tools.sh) come first, unchanged.
  local f
  for f in "$stages"/*.yaml; do
    echo "---"
    cat "$f"
  done
  echo "---"
  unready_stage
}

# kwokctl trusts the pid files of a cluster: after a reboot or a crash they may name dead processes,
# zombies or, worse, unrelated processes that reuse those pids (which `kwokctl stop` would kill).
# Keep only the pid files whose process is alive and runs from this cluster's directory.
clean_stale_pids() {
  local dir="$KWOK_WORKDIR/clusters/$name" f pid
  for f in "$dir"/pids/*.pid; do
    [[ -f "$f" ]] || continue
    pid="$(cat "$f")"
    if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/"; then
      rm -f "$f"
    fi
  done
}

# Self-contained (certificates inline). kwokctl itself is told not to touch ~/.kube/config.
write_kubeconfig() {
  if [[ ! -f "$kubeconfig" ]]; then
    kwokctl get kubeconfig >"$kubeconfig.tmp"
    mv -f "$kubeconfig.tmp" "$kubeconfig"
  fi
}

delete_cluster() {
  clean_stale_pids
  kwokctl delete cluster --kubeconfig "$kubeconfig" >&2 || true
  rm -rf "${KWOK_WORKDIR:?}/clusters/$name"
  rm -f "$kubeconfig"
}

up() {
  "$here/cluster-tools.sh" >/dev/null
  mkdir -p "$KWOK_WORKDIR" "$(dirname "$kubeconfig")"
  exec 9>"$cache/cluster/.cluster.lock"
  flock 9

  local conf="$cache/cluster/kwokctl-$name.yaml"
  write_config >"$conf.new"
  if cluster_exists && ! cmp -s "$conf.new" "$conf"; then
    log "cluster $name was created with another configuration (other pins or stages); recreating it"
    delete_cluster
  fi
  mv -f "$conf.new" "$conf"

  # A cluster whose processes are alive is reused if it still runs pods. One that is not answering
  # (after a reboot, a crash, or a CI runner that killed its processes) is recreated, not restarted:
  # its etcd still holds the leases of the dead processes. kwok's node leases last 200 s and the
  # controller-manager's and scheduler's 15 s, so a restarted cluster accepts objects at once but
  # leaves pods Pending for minutes, until those leases expire. A new cluster takes about 5 s.
  local probed=0
  if cluster_exists; then
    write_kubeconfig
    if api_ready && ensure_nodes && probe_workload 30; then
      log "cluster $name is already up"
      probed=1
    else
      log "cluster $name exists but is not answering or not running pods; recreating it"
      delete_cluster
    fi
  fi

  if ! cluster_exists; then
    rm -f "$kubeconfig"
    log "creating cluster $name (kwokctl --runtime binary, Kubernetes ${KUBERNETES_VERSION}, workdir $KWOK_WORKDIR)"
    if ! "$bin/kwokctl" -v WARN --name "$name" --config "$conf" create cluster \
      --runtime binary --kubeconfig "" --timeout 180s --wait 120s >&2 9>&-; then
      log "kwokctl create cluster failed; see the logs in $KWOK_WORKDIR/clusters/$name/logs"
      exit 1
    fi
  fi

  write_kubeconfig
  wait_ready 120
  ensure_nodes
  if ((!probed)) && ! probe_workload 120; then
    log "the cluster answers but a Deployment did not become available; logs in $KWOK_WORKDIR/clusters/$name/logs"
    exit 1
  fi
  log "cluster $name is ready; kubeconfig:"
  echo "$kubeconfig"
}

down() {
  if cluster_exists; then
    log "deleting cluster $name"
    delete_cluster
  else
    log "cluster $name does not exist"
    rm -f "$kubeconfig"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  kubeconfig)
    if cluster_exists && [[ -f "$kubeconfig" ]]; then
      echo "$kubeconfig"
    else
      log "cluster $name is not up (run: tools/cluster.sh up)"
      exit 1
    fi
    ;;
  status)
    if ! cluster_exists; then
      echo "cluster $name: absent"
      exit 1
    elif api_ready; then
      echo "cluster $name: up (kubeconfig $kubeconfig)"
      kubectl get nodes -o wide
    else
      echo "cluster $name: created but not answering (run: tools/cluster.sh up)"
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 up|down|kubeconfig|status" >&2
    exit 2
    ;;
esac
