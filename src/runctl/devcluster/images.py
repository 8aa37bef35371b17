"""Container images made on this machine, with no registry: a root file system packed as a
single-layer OCI image archive, which `ctr images import` loads into containerd.

Each archive names its image `docker.io/local/NAME:TAG` (never `latest`, so a pod's default pull
policy, IfNotPresent, never tries a registry).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

IMAGE_PREFIX = "docker.io/local/"
RootMaker = Callable[[Path], None]
"""Fills a directory with an image's root file system."""


def image_name(name: str, tag: str) -> str:
    return f"{IMAGE_PREFIX}{name}:{tag}"


def _layer(root: Path) -> bytes:
    """The root file system as one uncompressed tar layer, owned by root, dated 0, sorted: the
    same tree gives the same bytes, so the same image id."""
    buf = io.BytesIO()

    def reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime = 0
        return info

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                path = Path(dirpath) / name
                tar.add(path, arcname=str(path.relative_to(root)), recursive=False,
                        filter=reset)
    return buf.getvalue()


def _blob(blobs: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_archive(root: Path, out: Path, name: str, *, entrypoint: Sequence[str] = (),
                  cmd: Sequence[str] = (), user: str = "", workdir: str = "",
                  env: Mapping[str, str] | None = None) -> None:
    """Pack `root` as the OCI image archive `out`, named `name` (a full reference)."""
    with tempfile.TemporaryDirectory() as tmp:
        layout = Path(tmp)
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        layer = _layer(root)
        layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar", **_blob(blobs, layer)}
        config: dict[str, Any] = {"Env": [f"{k}={v}" for k, v in (env or {}).items()]}
        for key, value in (("Entrypoint", list(entrypoint)), ("Cmd", list(cmd)),
                           ("User", user), ("WorkingDir", workdir)):
            if value:
                config[key] = value
        image_config = {
            "architecture": "amd64", "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        }
        config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json",
                       **_blob(blobs, json.dumps(image_config).encode())}
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_desc, "layers": [layer_desc]}
        manifest_desc = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **_blob(blobs, json.dumps(manifest).encode()),
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]},
        }
        (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        (layout / "index.json").write_text(json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}))
        tmp_out = out.with_suffix(".tmp")
        with tarfile.open(tmp_out, "w") as tar:
            for entry in ("oci-layout", "index.json", "blobs"):
                tar.add(layout / entry, arcname=entry)
        tmp_out.replace(out)


def pause_root(pause_binary: Path, root: Path) -> None:
    """The sandbox image's tree: the pause program alone."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pause").write_bytes(pause_binary.read_bytes())
    (root / "pause").chmod(0o755)


def busybox_root(root: Path, busybox: Path = Path("/bin/busybox")) -> None:
    """A step image's tree: Debian's static busybox with a link for each applet, and /tmp."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (bin_dir / "busybox").write_bytes(busybox.read_bytes())
    (bin_dir / "busybox").chmod(0o755)
    applets = subprocess.run([str(busybox), "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in applets:
        link = bin_dir / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
