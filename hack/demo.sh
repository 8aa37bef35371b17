#!/usr/bin/env bash
# Runs runctl for real: a local control plane, the CRDs, the operator, and an example StoryRun,
# shown progressing with kubectl until it finishes. Usage: hack/demo.sh [EXAMPLE.yaml]
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
kubectl wait --for=condition=Established crd/storyruns.runctl.dev crd/stepruns.runctl.dev >/dev/null
echo "[demo] starting the operator (log: $workdir/operator.log)"
runctl operator --metrics-port 0 --liveness '' >"$workdir/operator.log" 2>&1 &
op_pid=$!
echo "[demo] kubectl apply -f $example"
kubectl apply -f "$example"
run=$(kubectl create --dry-run=client -o jsonpath='{.metadata.name}' -f "$example")
for _ in $(seq 1 120); do
  echo; date +%T; kubectl get sr,stpr 2>/dev/null || true
  phase=$(kubectl get sr "$run" -o jsonpath='{.status.phase}' 2>/dev/null || true)
  case "$phase" in Succeeded|Failed|Canceled|TimedOut) break ;; esac
  # A realtime run serves until stopped: once every step serves, stop it as a user would.
  if [ -z "${stopped:-}" ] && [ "$(kubectl get sr "$run" -o jsonpath='{.spec.mode}')" = realtime ]; then
    steps=$(kubectl get sr "$run" -o jsonpath='{.spec.steps[*].name}' | wc -w)
    serving=$(kubectl get stpr -l "runctl.dev/storyrun=$run" \
      -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c '^Running$' || true)
    if [ "$serving" -eq "$steps" ]; then
      echo; echo "[demo] every step serves; stopping the run:"
      echo "  kubectl patch sr $run --type merge -p '{\"spec\":{\"cancelRequested\":true}}'"
      kubectl patch sr "$run" --type merge -p '{"spec":{"cancelRequested":true}}' >/dev/null
      stopped=1
    fi
  fi
  sleep 2
done
echo
echo "[demo] kubectl describe sr $run (events)"
kubectl describe sr "$run" | sed -n '/^Events:/,$p'
echo "[demo] final step states:"
kubectl get sr "$run" -o jsonpath='{range .status.stepStates.*}{.phase}{"\t"}{.reason}{"\t"}{.message}{"\n"}{end}'
