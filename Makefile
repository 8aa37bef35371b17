# Two commands a person needs: `make demo` and `make test`. Both set themselves up.
.PHONY: demo test controlplane cluster-up cluster-down crds lint venv

demo:
	bash hack/demo.sh $(EXAMPLE)

test:
	bash hack/test.sh

venv:
	bash hack/venv.sh

controlplane:
	bash hack/controlplane-build.sh

cluster-up: venv
	.venv/bin/python -m runctl.devcluster up

cluster-down: venv
	.venv/bin/python -m runctl.devcluster down

crds: venv
	.venv/bin/runctl crds --write crds/

lint: venv
	.venv/bin/ruff check src tests
	.venv/bin/mypy
	.venv/bin/lint-imports
