#!/usr/bin/env bash
# The test command: sets up everything it needs (virtualenv, control plane binaries), then runs
# the linters, the type checker, the layering contract and the whole test suite with coverage.
# Extra arguments go to pytest (for example: hack/test.sh tests/unit -k stop).
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/venv.sh
bash hack/deps.sh
echo "[test] control plane binaries: $(bash hack/controlplane-build.sh)" >&2
# The real node (tests/realpods) where this machine can run one; the tier says why not otherwise.
why=$(.venv/bin/python -c 'from runctl.devcluster.realnode import unavailable; print(unavailable() or "")')
if [ -z "$why" ]; then
  echo "[test] real node binaries: $(bash hack/realnode-build.sh)" >&2
else
  echo "[test] no real node here ($why): the realpods tier will be skipped" >&2
fi
export PATH="$PWD/.venv/bin:$PATH"

echo "[test] ruff" >&2
ruff check .
echo "[test] mypy" >&2
mypy
echo "[test] import-linter" >&2
lint-imports

echo "[test] pytest" >&2
set +e
pytest --cov=runctl --cov-branch --cov-report=term-missing:skip-covered "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "[test] pytest collected no tests: that is a failure here" >&2
  exit 1
fi
[ "$rc" -eq 0 ] || exit "$rc"
if [ "$#" -eq 0 ]; then
  echo "[test] branch coverage of the lifecycle core (runctl.machine) must be 100%" >&2
  coverage report --include='src/runctl/machine/*' --show-missing --fail-under=100
  echo "[test] branch coverage of the whole package (the operator's processes included) must" \
    "be at least 90%" >&2
  omit=()  # where the realpods tier was skipped, the code only it runs is not counted
  [ -z "$why" ] || omit=(--omit='src/runctl/devcluster/realnode.py,src/runctl/devcluster/hostclean.py,src/runctl/devcluster/images.py,src/runctl/devcluster/operator_image.py')
  coverage report "${omit[@]}" --fail-under=90 | tail -1
fi
