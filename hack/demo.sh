#!/usr/bin/env bash
# Runs runctl for real: a local control plane, the CRDs, the operator, and an example (StoryRuns,
# and any Stories they run), each run shown live with `runctl watch` until it finishes.
# Usage: hack/demo.sh [EXAMPLE.yaml]
# KEEP=1 leaves the control plane and operator running afterwards (stop: make cluster-down).
set -euo pipefail
cd "$(dirname "$0")/.."
example=${1:-examples/diamond.yaml}
bash hack/venv.sh
bin=$(bash hack/controlplane-build.sh)
workdir=$PWD/.cluster/dev
export KUBECONFIG=$workdir/kubeconfig PATH="$bin:$PWD/.venv/bin:$PATH"

cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo "[demo] left running: export KUBECONFIG=$KUBECONFIG (stop with: make cluster-down)"
    return
  fi
  [ -n "${op_pid:-}" ] && kill "$op_pid" 2>/dev/null && wait "$op_pid" 2>/dev/null
  python -m runctl.devcluster down --workdir "$workdir"
}
trap cleanup EXIT

python -m runctl.devcluster up --workdir "$workdir"
echo "[demo] installing the CRDs"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/storyruns.runctl.dev crd/stepruns.runctl.dev \
  crd/stories.runctl.dev >/dev/null
echo "[demo] starting the operator (log: $workdir/operator.log)"
runctl operator --metrics-port 0 --liveness '' >"$workdir/operator.log" 2>&1 &
op_pid=$!
echo "[demo] kubectl apply -f $example"
kubectl apply -f "$example"
runs=$(kubectl create --dry-run=client -o jsonpath='{.kind}/{.metadata.name}{"\n"}' -f "$example" \
  | sed -n 's|^StoryRun/||p')
for run in $runs; do
  # A realtime run serves until stopped: once every step serves, stop it as a user would.
  if [ "$(kubectl get sr "$run" -o jsonpath='{.spec.mode}')" = realtime ]; then
    (
      steps=$(kubectl get sr "$run" -o jsonpath='{.spec.steps[*].name}' | wc -w)
      for _ in $(seq 1 120); do
        serving=$(kubectl get stpr -l "runctl.dev/storyrun=$run" \
          -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c '^Running$' || true)
        [ "$serving" -eq "$steps" ] && break
        sleep 1
      done
      sleep 3
      runctl stop "$run" >/dev/null
    ) &
    echo "[demo] a realtime run serves until stopped: runctl stop $run once every step serves"
  fi
  echo "[demo] runctl watch $run"
  set +e
  runctl watch "$run"
  status=$?
  set -e
  echo "[demo] runctl watch exited $status (0 Succeeded, 3 Failed, 4 Canceled, 5 TimedOut)"
  echo "[demo] runctl logs $run (simulated pods: one line from kwok saying so)"
  runctl logs "$run" || true  # a stopped realtime run's pods are gone
  echo "[demo] kubectl describe sr $run (events)"
  kubectl describe sr "$run" | sed -n '/^Events:/,$p'
done
