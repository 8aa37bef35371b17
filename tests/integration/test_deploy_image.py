"""What can be tested of the operator image without a container engine.

The Dockerfile builds a wheel from pyproject.toml, README.md and src/ (all that .dockerignore
lets in) and installs it; here the same wheel is built from a copy of just those files, installed
into a fresh virtual environment, and its entry point must run from there (not from src/).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from runctl.devcluster.cluster import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the runctl wheel; its dependencies are borrowed from this venv."""
    root = tmp_path_factory.mktemp("image")
    context = root / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, context / name)
    shutil.copytree(REPO_ROOT / "src", context / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = root / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), "."],
        cwd=context, capture_output=True, text=True, timeout=600,
    )
    if built.returncode != 0 and re.search(r"(?i)network|connection|resolve|index", built.stderr):
        pytest.skip(f"the wheel's build backend could not be fetched: {built.stderr[-500:]}")
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("runctl-*.whl")

    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    # Dependencies (kopf, kubernetes, ...) from this environment's site-packages, added as a
    # plain path: its .pth files (the editable install of src/) are not processed.
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], check=True, capture_output=True, text=True)
    Path(purelib.stdout.strip(), "zz_runctl_deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


def run(env_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(env_dir / "bin" / args[0]), *args[1:]], cwd=env_dir,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_the_wheel_is_what_runs(installed: Path) -> None:
    out = run(installed, "python", "-c", "import runctl, sys; print(runctl.__file__)")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_relative_to(installed), out.stdout
    assert not Path(out.stdout.strip()).is_relative_to(REPO_ROOT / "src")


@pytest.mark.integration
def test_the_entrypoint_runs_from_the_wheel(installed: Path) -> None:
    top = run(installed, "runctl", "--help")
    assert top.returncode == 0, top.stderr
    assert "operator" in top.stdout
    operator = run(installed, "runctl", "operator", "--help")
    assert operator.returncode == 0, operator.stderr
    for flag in ("--namespace", "--metrics-port", "--liveness"):
        assert flag in operator.stdout


@pytest.mark.integration
def test_the_wheel_carries_its_package_data(installed: Path) -> None:
    out = run(installed, "python", "-c",
              "from importlib import resources; "
              "print(resources.files('runctl').joinpath('py.typed').is_file())")
    assert out.stdout.strip() == "True", out.stderr


def test_the_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"(?m)^FROM\s+(\S+)", text)
    assert len(stages) >= 2, "a build stage and a runtime stage"
    [base] = re.findall(r"(?m)^ARG PYTHON_IMAGE=(\S+)$", text)
    # An exact patch release of the slim image (or a digest), never a moving tag.
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    [user] = re.findall(r"(?m)^USER\s+(\S+)", text)
    assert user.split(":")[0] not in ("root", "0")
    assert user.split(":")[0].isdigit(), "numeric, so runAsNonRoot can verify it"
    assert re.search(r'(?m)^ENTRYPOINT \["runctl", "operator"\]$', text)


def test_the_image_uid_matches_the_chart() -> None:
    import yaml

    values = yaml.safe_load((REPO_ROOT / "deploy/helm/runctl/values.yaml").read_text())
    [user] = re.findall(r"(?m)^USER\s+(\d+):(\d+)", DOCKERFILE.read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(user[0])
    assert values["podSecurityContext"]["runAsGroup"] == int(user[1])


def test_the_build_context_is_only_what_the_wheel_needs() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*", "everything is left out unless let in by name"
    copied = re.findall(r"(?m)^COPY\s+(?!--)(.+?)\s+\S+$", DOCKERFILE.read_text())
    sources = {s for line in copied for s in line.split()}
    assert sources == {"pyproject.toml", "README.md", "src"}
    for source in sources:
        assert f"!{source}" in ignore or f"!{source}/" in ignore
