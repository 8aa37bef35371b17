"""The local control plane's listening ports stay clear of the ports outgoing connections use."""

from __future__ import annotations

import socket

import pytest

from runctl.devcluster import ports


def test_a_free_port_is_below_the_ephemeral_range_and_free() -> None:
    low, _ = ports._ephemeral_ports()
    for _ in range(50):
        port = ports.free_port()
        assert 10000 <= port < low
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # nothing listens there


def test_a_port_something_listens_on_is_not_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken, socket.socket() as spare:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        spare.bind(("127.0.0.1", 0))
        busy, free = taken.getsockname()[1], spare.getsockname()[1]
        spare.close()
        monkeypatch.setattr(ports.random, "sample", lambda population, k: [busy, free])
        assert ports.free_port() == free
