"""Attacks that used to get through (issue 21), reproduced against real subprocess daemons with
their default configs: each now ends in a counted refusal or a one-line error, costs bounded
memory and disk, and leaves the daemon serving."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import yaml

from semnet.client import request
from semnet.core.auth import REQUEST_REFUSALS
from semnet.errors import SemnetError
from semnet.testbed import (
    LocalTestbed,
    by_label,
    forged_frames,
    free_ports,
    metric_totals,
    stop_process,
)

pytestmark = pytest.mark.slow

RSS_TARGET = 768 * 2**20  # the receiver's bound under forged frames (docs/reliability.md)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[96:288, 128:384])


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """The default configs, no key: the case the attacks were found in."""
    with LocalTestbed(tmp_path_factory.mktemp("hostile"), seed=5) as b:
        yield b


def wait_for(predicate, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def dropped(bed: LocalTestbed) -> dict[str, int]:
    totals = metric_totals(bed.metrics("receiver"))
    return by_label(totals, "semnet_receiver_frames_dropped_total", "reason")


def test_forged_full_hd_frames_cost_a_counter_not_a_decode(bed, photo):
    """One 65 KB datagram claiming a 1920x1080 frame used to buy seconds of decoding, a
    gigabyte and a PNG; with no reference behind it, it is now counted and dropped."""
    assert "error" not in bed.send(photo, "before.png")
    saved = set((bed.workdir / "received").iterdir())
    before = dropped(bed).get("unannounced", 0)
    n = bed.inject("receiver", forged_frames(12, 1080, 1920))
    wait_for(lambda: dropped(bed).get("unannounced", 0) - before == n)
    assert set((bed.workdir / "received").iterdir()) == saved  # nothing written for them
    after = bed.send(photo, "after.png")
    assert "error" not in after and after["psnr_db"] is not None, after
    assert bed.memory("receiver")["hwm"] <= RSS_TARGET
    assert bed.accounting().closes


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("height", float("inf")),
        ("height", 2**64 - 1),
        ("count", 2**40),
        ("count", 0),
        ("width", True),
        ("image", b"short"),
        ("name", ["not", "a", "string"]),
    ],
)
def test_a_bad_reference_field_is_a_400(bed, field, value):
    body = {
        "stream": 1,
        "frame": 1,
        "name": "x",
        "height": 16,
        "width": 16,
        "image": bytes(16 * 16 * 3),
        "first_datagram": forged_frames(1, 16, 16, stream=1)[0],
        "count": 1,
        field: value,
    }
    with pytest.raises(SemnetError, match="400"):
        request(f"http://{bed.http['receiver']}/reference", msgpack.packb(body), "POST")
    assert bed.procs["receiver"].poll() is None


@pytest.mark.parametrize("daemon", ["sender", "receiver"])
def test_deeply_nested_bodies_are_a_400(bed, daemon):
    route = {"sender": "/send", "receiver": "/reference"}[daemon]
    body = b"\x91" * 100_000 + b"\xc0"  # a msgpack array in an array ... 100 000 deep
    with pytest.raises(SemnetError, match="400"):
        request(f"http://{bed.http[daemon]}{route}", body, "POST")
    assert bed.procs[daemon].poll() is None


def test_a_body_over_the_limit_is_refused_from_its_length(bed):
    """413 answered from Content-Length, before the 1 GiB the header promises is sent."""
    reply = raw_post(bed.http["sender"], "/send", {"Content-Length": str(2**30)}, b"x" * 4096)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_a_tiny_image_is_scored_not_a_traceback(bed):
    report = bed.send(np.full((5, 7, 3), 120, np.uint8), "tiny.png")
    assert "error" not in report and report["psnr_db"] is not None, report
    assert report["lpips"] is None  # below the perceptual models' smallest input
    assert "Traceback" not in bed.log("receiver")


def test_unsigned_bodies_are_refused_before_they_are_read(tmp_path):
    """With a key, a request without a signature is refused from its header: the 16 MiB its
    Content-Length promises (under the route's limit) are never read, so the sender does not
    grow; one over the limit is a 413 whoever sends it."""
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    http, data, receiver = (f"127.0.0.1:{p}" for p in free_ports(3))
    config = tmp_path / "sender.yaml"
    config.write_text(
        yaml.safe_dump(
            {"http": http, "data_to": data, "receiver_http": receiver, "auth_key_file": str(key)}
        )
    )
    proc = start_daemon("sender", config, http)
    try:
        before = resident(proc.pid)
        for _ in range(3):
            headers = {"Content-Length": str(16 * 2**20)}
            reply = raw_post(http, "/send", headers, b"x" * 2**20)
            assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
            assert b"missing" in reply
        reply = raw_post(http, "/send", {"Content-Length": str(250 * 2**20)}, b"x" * 2**20)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert resident(proc.pid) - before < 64 * 2**20
        rejected = by_label(
            metric_totals(request(f"http://{http}/metrics")),
            "semnet_http_auth_rejected_total",
            "reason",
        )
        assert rejected == {**dict.fromkeys(REQUEST_REFUSALS, 0), "missing": 3}
    finally:
        stop_process(proc)


def raw_post(address: str, path: str, headers: dict[str, str], part: bytes) -> bytes:
    """POST only ``part`` of the body the headers announce, then read what the server says."""
    host, port = address.rsplit(":", 1)
    head = f"POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/msgpack\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head.encode() + part)
        return s.recv(4096)


def start_daemon(name: str, config: Path, http: str):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "semnet", "--log-level", "warning", name, "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    end = time.monotonic() + 60
    while True:
        try:
            request(f"http://{http}/metrics", timeout=2.0)
            return proc
        except SemnetError:
            if proc.poll() is not None or time.monotonic() > end:
                stop_process(proc)
                raise
            time.sleep(0.1)


def resident(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    (line,) = (x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024
