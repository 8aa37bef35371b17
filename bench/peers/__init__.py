"""The systems runctl is measured beside, on the same control plane and the same runs: Argo
Workflows' workflow-controller and Tekton Pipelines' controller, each a process the bench starts,
at its defaults and tuned to this control plane.

Both are built from their Go modules by hack/peers-build.sh (once, into the cache) and installed
from the same modules (CRDs, roles, ConfigMaps). Nothing they run may dial an address off this
machine: their pods are kwok's, every node advertises loopback, their metrics and telemetry are
off and every step names its command, so no controller asks an image registry for it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from runctl.devcluster import ports
from runctl.devcluster.cluster import REPO_ROOT

BUILD_SCRIPT = REPO_ROOT / "hack" / "peers-build.sh"
ARGO = ("github.com/argoproj/argo-workflows/v3", "v3.7.18")
TEKTON = ("github.com/tektoncd/pipeline", "v1.12.0")
STEP_IMAGE = "example.invalid/step:1"  # never pulled: kwok runs the pods
STEP_COMMAND = ["/bin/step"]  # named, so no controller asks a registry for the entrypoint
# Settings that match the control plane, as its kube-controller-manager has them.
TUNED_QPS, TUNED_BURST = 300, 400


def build() -> Path:
    """Build (or reuse from the cache) both controllers; return their directory."""
    env = {**os.environ, "ARGO_VERSION": ARGO[1], "TEKTON_VERSION": TEKTON[1]}
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE,
                         text=True, env=env).stdout
    return Path(out.strip().splitlines()[-1])


def module_dir(module: str, version: str) -> Path:
    """Where a module's source is in the Go module cache (fetched there by the build)."""
    out = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], check=True,
                         stdout=subprocess.PIPE, text=True, cwd="/").stdout
    return Path(json.loads(out)["Dir"])


def free_port() -> int:
    return ports.free_port()


def plain_env(**settings: str) -> dict[str, str]:
    """A controller's environment: PATH and HOME and its own settings, nothing inherited that
    could point it elsewhere (proxies, OpenTelemetry endpoints)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"), **settings}
