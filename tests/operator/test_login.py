"""`runctl operator` with no cluster to talk to fails like a tool: one line on stderr, non-zero,
at once; and no other `runctl` failure prints a traceback."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.config import incluster_config

from runctl.devcluster import ControlPlane
from runctl.operator import login

RUNCTL = Path(sys.executable).with_name("runctl")
"""The installed command, as a person runs it."""
BOUND = 60
"""Seconds a failing `runctl` may take at most, start-up of the interpreter included."""


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(f"""\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "{server}", insecure-skip-tls-verify: true}}
users:
- name: u
  user: {{token: not-a-real-token}}
contexts:
- name: c
  context: {{cluster: c, user: u}}
current-context: c
""")
    return path


def runctl(*args: str, kubeconfig: Path | None = None,
           home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run(
        [str(RUNCTL), *args], env=env, capture_output=True, text=True,
        timeout=BOUND, check=False)


def operator(**kwargs: Path) -> subprocess.CompletedProcess[str]:
    return runctl("operator", "--metrics-port", "0", "--liveness", "", **kwargs)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"runctl {result.args[1]}: ")
    return lines[0]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


VERSION = json.dumps({
    "major": "1", "minor": "36", "gitVersion": "v1.36.3", "gitCommit": "0", "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25", "compiler": "gc",
    "platform": "linux/amd64"}).encode()


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 401

    def do_GET(self) -> None:
        body = VERSION if self.status == 200 and self.path.startswith("/version") else b""
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


class _Version(_Answer):
    status = 200


class _NotKubernetes(_Answer):
    status = 200

    def do_GET(self) -> None:
        body = b"<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def refusing_server() -> Iterator[str]:
    """A plain-HTTP server on loopback that answers every request 401."""
    yield from _serve(_Answer)


@pytest.fixture
def web_server() -> Iterator[str]:
    """A plain-HTTP server on loopback that answers every request with a web page."""
    yield from _serve(_NotKubernetes)


@pytest.fixture
def version_server() -> Iterator[str]:
    """A plain-HTTP server on loopback that answers `/version` like an API server."""
    yield from _serve(_Version)


def test_an_api_server_nobody_listens_for(tmp_path: Path, closed_port: int) -> None:
    path = kubeconfig(tmp_path / "kubeconfig", f"https://127.0.0.1:{closed_port}")
    line = one_line(operator(kubeconfig=path))
    assert line == (f"runctl operator: cannot reach the API server at "
                    f"https://127.0.0.1:{closed_port} (from $KUBECONFIG {path}): "
                    f"connection refused")


def test_an_api_server_that_never_answers(tmp_path: Path, silent_port: int) -> None:
    path = kubeconfig(tmp_path / "kubeconfig", f"https://127.0.0.1:{silent_port}")
    line = one_line(operator(kubeconfig=path))
    assert line.startswith(f"runctl operator: cannot reach the API server at "
                           f"https://127.0.0.1:{silent_port} (from $KUBECONFIG {path}): ")
    assert line.endswith("no answer within 5 s")


def test_an_api_server_that_refuses_the_credentials(tmp_path: Path,
                                                     refusing_server: str) -> None:
    path = kubeconfig(tmp_path / "kubeconfig", refusing_server)
    line = one_line(operator(kubeconfig=path))
    assert line == (f"runctl operator: the API server at {refusing_server} "
                    f"(from $KUBECONFIG {path}) refused the credentials: 401 Unauthorized")


def test_a_missing_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    line = one_line(operator(kubeconfig=path))
    assert line == (f"runctl operator: no cluster to log in to: not running in a pod, and no "
                    f"kubeconfig at $KUBECONFIG {path}")


def test_no_kubeconfig_at_all(tmp_path: Path) -> None:
    line = one_line(operator(home=tmp_path))
    assert line == (f"runctl operator: no cluster to log in to: not running in a pod, and no "
                    f"kubeconfig at {tmp_path / '.kube' / 'config'}")


@pytest.mark.parametrize("content", [
    pytest.param("clusters: [ {name: c\n  : ::\n", id="not-yaml"),
    pytest.param("", id="empty"),
    pytest.param("just a sentence\n", id="not-a-mapping"),
    pytest.param("apiVersion: v1\nkind: Config\n", id="no-context"),
])
def test_a_garbled_kubeconfig(tmp_path: Path, content: str) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(content)
    line = one_line(operator(kubeconfig=path))
    assert line.startswith(f"runctl operator: cannot read the kubeconfig $KUBECONFIG {path}: ")


def test_in_a_pod_the_service_account_is_named(tmp_path: Path, closed_port: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("not-a-real-token")
    (tmp_path / "ca.crt").write_text("not a certificate")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(closed_port))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(login.LoginFailed) as failed:
        login.check()
    assert str(failed.value) == (f"cannot reach the API server at https://127.0.0.1:{closed_port} "
                                 f"(from the in-cluster service account): connection refused")


def test_a_server_that_is_not_an_api_server(tmp_path: Path, web_server: str) -> None:
    path = kubeconfig(tmp_path / "kubeconfig", web_server)
    line = one_line(operator(kubeconfig=path))
    assert line == (f"runctl operator: the API server at {web_server} (from $KUBECONFIG {path}) "
                    f"answered /version, but not as a Kubernetes API server does")


def test_a_failure_after_the_login_is_one_line_too(tmp_path: Path, version_server: str,
                                                   silent_port: int) -> None:
    path = kubeconfig(tmp_path / "kubeconfig", version_server)
    result = runctl("operator", "--metrics-address", "127.0.0.1",
                    "--metrics-port", str(silent_port), "--liveness", "", kubeconfig=path)
    assert "Address already in use" in one_line(result)


def test_other_commands_fail_in_one_line_too(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    line = one_line(runctl("crds", "--write", str(blocked / "crds")))
    assert "Traceback" not in line
    assert str(blocked) in line


def test_the_check_passes_against_a_real_api_server(cluster: ControlPlane,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    assert login.check().source == f"$KUBECONFIG {cluster.kubeconfig}"
