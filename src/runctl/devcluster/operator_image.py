"""The operator's image, made without a container engine: Debian's minimal base (debootstrap),
Python 3.11, the project's wheels in a virtual environment, run as a non-root user.

It describes the same image as the Dockerfile (a Debian bookworm base with Python 3.11, the
same virtual environment, user, working directory, environment and entry point); the constants
below are what both say, and tests/realpods/test_operator_image.py reads the Dockerfile and fails
when the two part. The base is cached (a debootstrap run is the slow part); the wheels are
installed afresh each time, so the image always holds the checkout's code.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from runctl.devcluster import images

SUITE = "bookworm"
PYTHON = "3.11"
PACKAGES = ("python3", "python3-venv")
MIRROR = "http://deb.debian.org/debian"
UID = GID = 10001
USER = "runctl"
HOME = "/nonexistent"
SHELL = "/usr/sbin/nologin"
VENV = "/opt/runctl"
WORKDIR = "/tmp"
ENTRYPOINT = ("runctl", "operator")
ENV = {
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_CACHE_DIR": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}


def base(cache: Path) -> Path:
    """Debian's minbase with Python, made once per cache and kept."""
    root = cache / f"operator-base-{SUITE}-{'-'.join(PACKAGES)}"
    done = root.with_suffix(".done")
    if done.exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "operator-base.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return root
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                        SUITE, str(root), MIRROR], check=True, capture_output=True, text=True)
        # What an image never reads: downloaded packages, package lists, documentation.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                         "usr/share/man", "usr/share/info", "usr/share/locale"):
            for path in (root / leftover).glob("*"):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.name != "lock":
                    path.unlink()
        done.touch()
    return root


@contextlib.contextmanager
def _chroot_mounts(root: Path) -> Iterator[None]:
    """/proc in the tree while installing into it (venv and pip read it)."""
    proc = root / "proc"
    subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "--lazy", str(proc)], check=False)


def _in(root: Path, *args: str) -> None:
    done = subprocess.run(["chroot", str(root), *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed in the image: {done.stderr[-2000:]}")


def build(cache: Path, repo: Path, out: Path, name: str) -> None:
    """Write the operator image for the checkout `repo` to the OCI archive `out`."""
    base_root = base(cache)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        root = Path(tmp) / "root"
        subprocess.run(["cp", "-a", str(base_root), str(root)], check=True)
        wheels = root / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels),
                        str(repo)], check=True, capture_output=True, text=True)
        with (root / "etc" / "group").open("a") as f:
            f.write(f"{USER}:x:{GID}:\n")
        with (root / "etc" / "passwd").open("a") as f:
            f.write(f"{USER}:x:{UID}:{GID}::{HOME}:{SHELL}\n")
        with _chroot_mounts(root):
            _in(root, "python3", "-m", "venv", VENV)
            _in(root, f"{VENV}/bin/pip", "install", "-q", "--no-index", "--find-links=/wheels",
                "runctl")
            _in(root, f"{VENV}/bin/pip", "uninstall", "-q", "--yes", "pip")
            _in(root, f"{VENV}/bin/python", "-m", "compileall", "-q", VENV)
        shutil.rmtree(wheels)
        images.write_archive(root, out, name, entrypoint=ENTRYPOINT, user=f"{UID}:{GID}",
                             workdir=WORKDIR, env=ENV)
