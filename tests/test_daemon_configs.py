"""Daemon configs that used to start and fail later (or abort) are refused at start: one line
naming the key, exit code 2, no traceback, and never an unbounded value in the message."""

import socket
import subprocess
import sys

import pytest
import torch

# A YAML "billion laughs": nine levels of nine aliases. Loading it is cheap (aliases share one
# object); printing its repr is not (9**9 leaves).
ALIAS_BOMB = "\n".join(
    ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
)


def start(daemon: str, config: str | bytes, tmp_path, timeout: float = 120):
    path = tmp_path / f"{daemon}.yaml"
    if isinstance(config, str):
        config = config.encode()
    path.write_bytes(config)
    return subprocess.run(
        [sys.executable, "-m", "semnet", daemon, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def refused(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert expected in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) <= 3, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("daemon", "config", "expected"),
    [
        ("sender", "threads: 100000\n", "threads: 100000 must be in 0..1024"),
        ("receiver", "threads: -1\n", "threads: -1 must be in 0..1024"),
        ("sender", "device: bogus\n", "device: 'bogus' is not auto, cpu, cuda"),
        ("receiver", "device: bogus\n", "device: 'bogus' is not auto, cpu, cuda"),
        ("sender", "bits: 64\n", "bits: 64 must be in 1..16"),
        ("sender", "bits: 0\n", "bits: 0 must be in 1..16"),
        ("sender", "quant: foo\n", "quant: 'foo' is not a quantizer"),
        ("receiver", "deadline: .inf\n", "deadline: inf must be a finite number"),
        ("receiver", "deadline: 100000\n", "deadline: 100000.0 must be in (0, 3600]"),
        ("sender", "rate_mbps: .nan\n", "rate_mbps: nan must be a finite number"),
        ("sender", b"codec: caf\xe9\n", "not UTF-8 text"),
        ("proxy", "impair: 'loss random 200%'\n", "impair:"),
        ("receiver", f"{ALIAS_BOMB}\n", "unknown key"),
    ],
)
def test_a_bad_key_stops_the_daemon_at_start(tmp_path, daemon, config, expected):
    refused(start(daemon, config, tmp_path), expected)


def test_an_alias_bomb_under_a_known_key_gives_a_short_message(tmp_path):
    """The value's repr is bounded: the error is one short line, not gigabytes."""
    result = start("sender", "codec: " + _bomb_flow() + "\n", tmp_path)
    refused(result, "codec: must be str, got list")
    assert len(result.stderr) < 1000


def _bomb_flow() -> str:
    """The bomb as the value of one key, anchors defined inline."""
    value = "&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"
    for i in range(1, 9):
        value = f"&a{i} [{value}, {', '.join([f'*a{i - 1}'] * 8)}]"
    return value


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("daemon", ["sender", "receiver"])
def test_cuda_without_a_gpu_is_refused_at_start(tmp_path, daemon):
    refused(start(daemon, "device: cuda\n", tmp_path), "device: cuda is not available here")


@pytest.mark.parametrize("daemon", ["sender", "receiver", "proxy"])
def test_an_address_that_cannot_be_bound_is_one_line(tmp_path, daemon):
    refused(start(daemon, "http: 999.1.1.1:80\n", tmp_path), "http: cannot listen on 999.1.1.1:80")


@pytest.mark.parametrize(("daemon", "key"), [("receiver", "listen"), ("proxy", "http")])
def test_a_port_in_use_is_one_line(tmp_path, daemon, key):
    kind = socket.SOCK_DGRAM if key == "listen" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as busy:
        busy.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        result = start(daemon, f"{key}: {address}\n", tmp_path)
    refused(result, f"{key}: cannot listen on {address}")


def test_an_unknown_peer_host_is_one_line(tmp_path):
    refused(start("sender", "data_to: 999.1.1.1:7100\n", tmp_path), "data_to: cannot send to")
