# Two commands a person needs: `make demo` and `make test`. Both set themselves up.
.PHONY: demo test fuzz bench chaos controlplane peers realnode realpods cluster-up cluster-down \
	crds manifests image lint venv

demo:
	bash hack/demo.sh $(EXAMPLE)

test:
	bash hack/test.sh

# Hostile StoryRuns and Stories against the local control plane, the operator and its webhook
# (seeded: the same objects every run, sent by a pool of threads); figures to
# tests/fuzz/results.md.
fuzz:
	FUZZ_OBJECTS=$${FUZZ_OBJECTS:-5000} FUZZ_RESULTS=tests/fuzz/results.md \
		bash hack/test.sh tests/integration/test_fuzz.py -s

bench: venv
	bash hack/controlplane-build.sh >/dev/null
	.venv/bin/python -m bench --peers $(BENCH_ARGS)

# runctl under faults: two replicas, a mixed load of 100 runs and 24 seeded faults (the seed is
# printed; CHAOS_ARGS='--seed N' replays a plan), judged by an independent checker; figures to
# chaos/results/<date>-seed<N>.md and .json. Exits 1 on any violation.
chaos: venv
	bash hack/controlplane-build.sh >/dev/null
	.venv/bin/python -m chaos $(CHAOS_ARGS)

venv:
	bash hack/venv.sh

controlplane:
	bash hack/controlplane-build.sh

peers:
	bash hack/peers-build.sh

# A real node (containerd and a kubelet; root, overlayfs and writable cgroups) and its tier.
realnode:
	bash hack/realnode-build.sh

realpods:
	bash hack/test.sh tests/realpods --no-cov

cluster-up: venv
	.venv/bin/python -m runctl.devcluster up

cluster-down: venv
	.venv/bin/python -m runctl.devcluster down

crds: venv
	.venv/bin/runctl crds --write crds/

manifests: crds
	bash hack/render-manifests.sh

IMAGE ?= runctl:0.1.0
image:
	@command -v docker >/dev/null || { echo "make image needs docker, which is not on this machine" >&2; exit 1; }
	docker build -t $(IMAGE) .

lint: venv
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports
