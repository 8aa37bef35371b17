#!/usr/bin/env bash
# Runs runctl for real: a local control plane, the CRDs, the operator, and an example (StoryRuns,
# and any Stories they run), shown progressing with kubectl until every run finishes. Usage: hack/demo.sh [EXAMPLE.yaml]
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
finished() {  # every run of the example is terminal
  for run in $runs; do
    case "$(kubectl get sr "$run" -o jsonpath='{.status.phase}' 2>/dev/null || true)" in
      Succeeded|Failed|Canceled|TimedOut) ;;
      *) return 1 ;;
    esac
  done
}
for _ in $(seq 1 120); do
  echo; date +%T; kubectl get st,sr,stpr 2>/dev/null || true
  finished && break
  # A realtime run serves until stopped: once every step serves, stop it as a user would.
  for run in $runs; do
    [ "$(kubectl get sr "$run" -o jsonpath='{.spec.mode}')" = realtime ] || continue
    [ -z "$(kubectl get sr "$run" -o jsonpath='{.spec.cancelRequested}')" ] || continue
    steps=$(kubectl get sr "$run" -o jsonpath='{.spec.steps[*].name}' | wc -w)
    serving=$(kubectl get stpr -l "runctl.dev/storyrun=$run" \
      -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c '^Running$' || true)
    if [ "$serving" -eq "$steps" ]; then
      echo; echo "[demo] every step serves; stopping the run:"
      echo "  kubectl patch sr $run --type merge -p '{\"spec\":{\"cancelRequested\":true}}'"
      kubectl patch sr "$run" --type merge -p '{"spec":{"cancelRequested":true}}' >/dev/null
    fi
  done
  sleep 2
done
for run in $runs; do
  echo
  echo "[demo] kubectl describe sr $run (events)"
  kubectl describe sr "$run" | sed -n '/^Events:/,$p'
  echo "[demo] $run: final step states:"
  kubectl get sr "$run" -o jsonpath='{range .status.stepStates.*}{.phase}{"\t"}{.reason}{"\t"}{.message}{"\n"}{end}'
done
