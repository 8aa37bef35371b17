"""The operator image the real node runs is the Dockerfile's image made without Docker: both
must say the same base (Debian bookworm with Python 3.11), virtual environment, user, working
directory, environment and entry point. Read from the Dockerfile, so an edit to either side
that the other lacks fails here (no container engine or root needed)."""

from __future__ import annotations

import json
import re

from runctl.devcluster import operator_image as image
from runctl.devcluster.cluster import REPO_ROOT

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
FINAL_STAGE = DOCKERFILE.rsplit("\nFROM ", 1)[1]


def instruction(name: str) -> str:
    """The value of the final stage's last `name` instruction (continuation lines joined)."""
    joined = FINAL_STAGE.replace("\\\n", " ")
    found = re.findall(rf"^{name} (.+)$", joined, flags=re.MULTILINE)
    assert found, f"the Dockerfile's final stage has no {name}"
    return str(found[-1]).strip()


def test_the_same_base_debian_release_and_python() -> None:
    base = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)\.\d+-slim-(\w+)$", DOCKERFILE,
                     flags=re.MULTILINE)
    assert base, "the Dockerfile's base is no longer python:X.Y.Z-slim-<debian release>"
    assert (base[1], base[2]) == (image.PYTHON, image.SUITE)


def test_the_same_user_workdir_and_entry_point() -> None:
    flat = " ".join(FINAL_STAGE.replace("\\\n", " ").split())
    assert f"groupadd --system --gid {image.GID} {image.USER}" in flat
    assert (f"useradd --system --uid {image.UID} --gid {image.GID} --no-create-home "
            f"--home-dir {image.HOME} --shell {image.SHELL} {image.USER}") in flat
    assert instruction("USER") == f"{image.UID}:{image.GID}"
    assert instruction("WORKDIR") == image.WORKDIR
    assert json.loads(instruction("ENTRYPOINT")) == list(image.ENTRYPOINT)


def test_the_same_environment_and_virtual_environment() -> None:
    env = dict(re.findall(r"(\w+)=(\S+)", instruction("ENV")))
    assert env.pop("PATH") == f"{image.VENV}/bin:$PATH"
    assert env == {k: v for k, v in image.ENV.items() if k != "PATH"}
    assert image.ENV["PATH"].startswith(f"{image.VENV}/bin:")
    assert f"python -m venv {image.VENV}" in FINAL_STAGE
    assert f"{image.VENV}/bin/pip uninstall --yes pip" in FINAL_STAGE
    assert f"{image.VENV}/bin/python -m compileall -q {image.VENV}" in FINAL_STAGE
